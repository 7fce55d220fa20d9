"""Tissue masks: which parts of a slide hold tissue, so that glass is never sent to the network.

The mask is computed on a low-resolution thumbnail (:func:`slide_tissue_mask`) or read
from a user's file (:func:`load_mask`), and tiles are kept or skipped with
:func:`tiles_with_tissue`, which answers for thousands of tiles at once from a summed-area
table.

How tissue is told from glass (:func:`tissue_mask`)
---------------------------------------------------
Two per-pixel features, smoothed with a Gaussian of sigma 8 µm (noise and single nuclei
should not decide):

- **saturation** (HSV, ``(max - min) / max``): stained tissue is coloured, glass is grey;
  it also rejects dark but grey things (dust, pen, bubble rims);
- **optical density** ``-log10(mean intensity)``: glass transmits nearly all light
  (OD < 0.05); it rejects bright pixels with a colour cast.

A pixel is tissue when saturation exceeds a threshold **and** OD exceeds
:data:`OD_MIN`. With ``method="otsu"`` the saturation threshold is Otsu's on the
smoothed saturation (between glass and tissue), never below :data:`SAT_MIN`, so a
slide of glass alone (where Otsu splits noise) gives an empty mask. Otsu assumes both
glass and tissue are present: on a field that is all tissue it splits pale from dark
tissue; use ``method="fixed"`` (threshold :data:`SAT_FIXED`) there, or a mask file.

Then morphology: closing (radius 16 µm) bridges the gaps of loose stroma, holes under
(64 µm)² are filled, opening (radius 8 µm) removes threads, and objects under (64 µm)²
are dropped (dust, debris). Pixels beyond the image border count as copies of the edge,
so tissue cut by the border is not eroded. Sizes are in micrometres when the thumbnail's
pixel size is known; otherwise 8 µm stands for 1/1024 of its longer side (radii are at
least 1 pixel).

A slide without tissue gives an all-False mask; this module does not decide whether that
is an error (a blank slide) or fine (nothing to do): the caller does.

Scales and windows
------------------
``scale`` is mask pixels per pixel of the frame the windows are given in: mask pixel
``(r, c)`` covers window-frame pixels ``[r / scale, (r + 1) / scale) x [c / scale, (c + 1) /
scale)``. :func:`slide_tissue_mask` returns the scale relative to level 0; for windows at
level ``k`` pass ``scale * slide.level_downsamples[k]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nucleikit.errors import ConfigError, InputError
from nucleikit.infer.tiling import Tile
from nucleikit.windows import Window

__all__ = [
    "METHODS",
    "OD_MIN",
    "SAT_FIXED",
    "SAT_MIN",
    "tissue_mask",
    "slide_tissue_mask",
    "save_mask_png",
    "load_mask",
    "tissue_fractions",
    "tiles_with_tissue",
    "tile_has_tissue",
]

#: Ways to threshold saturation (see the module docstring).
METHODS = ("otsu", "fixed")
#: Lowest saturation threshold ``"otsu"`` may use; glass is below it.
SAT_MIN = 0.04
#: Saturation threshold of ``"fixed"``.
SAT_FIXED = 0.08
#: Optical density (log10) below which a pixel is glass whatever its colour.
OD_MIN = 0.05

# Morphology sizes in µm (module docstring); without a pixel size, 8 µm = 1/1024 of the side.
_UNIT_UM = 8.0
_SMOOTH_UNITS = 1.0
_CLOSE_UNITS = 2.0
_OPEN_UNITS = 1.0
_MIN_AREA_UNITS = 8.0  # side of the smallest kept object / largest filled hole


def tissue_mask(rgb: np.ndarray, *, method: str = "otsu", mpp: float | None = None) -> np.ndarray:
    """Which pixels of a low-resolution slide image show tissue.

    Parameters
    ----------
    rgb : (h, w, 3) float array
        RGB in [0, 1] (a thumbnail; values outside are clipped).
    method : {"otsu", "fixed"}
        How the saturation threshold is chosen (module docstring).
    mpp : float or None
        µm per pixel of ``rgb``; sets the morphology sizes in µm. None scales them to the
        image: one unit (8 µm at known mpp) is ``max(h, w) / 1024`` pixels.

    Returns
    -------
    (h, w) bool ndarray
        True on tissue. All False for an image without tissue (e.g. all white).

    Raises
    ------
    ValueError
        If ``rgb`` is not (h, w, 3) or ``method`` is unknown.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"rgb must be (h, w, 3), got shape {rgb.shape}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    unit = _unit_px(rgb.shape[:2], mpp)
    x = np.clip(rgb.astype(np.float32, copy=False), 0.0, 1.0)
    high, low = x.max(axis=2), x.min(axis=2)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    density = -np.log10(np.maximum(x.mean(axis=2), 1.0 / 255))
    sigma = _SMOOTH_UNITS * unit
    saturation = ndimage.gaussian_filter(saturation, sigma, mode="nearest")
    density = ndimage.gaussian_filter(density, sigma, mode="nearest")
    if method == "fixed":
        threshold = SAT_FIXED
    elif np.ptp(saturation) > 1e-6:
        threshold = max(float(threshold_otsu(saturation)), SAT_MIN)
    else:  # one value: Otsu is undefined; the floor decides all or nothing
        threshold = SAT_MIN
    mask = (saturation > threshold) & (density > OD_MIN)
    return _clean(mask, unit)


def _unit_px(shape: tuple[int, int], mpp: float | None) -> float:
    if mpp is None:
        return max(shape) / 1024
    if not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number, got {mpp!r}")
    return _UNIT_UM / mpp


def _clean(mask: np.ndarray, unit: float) -> np.ndarray:
    """Closing, hole filling, opening, small-object removal; sizes in ``unit`` pixels."""
    from scipy import ndimage
    from skimage.morphology import disk

    if not mask.any():
        return mask
    close_r = max(1, round(_CLOSE_UNITS * unit))
    open_r = max(1, round(_OPEN_UNITS * unit))
    min_area = max(1, round((_MIN_AREA_UNITS * unit) ** 2))
    # Morphology sees the image continued by its edge pixels, so that erosion does not eat
    # tissue touching the border (scipy treats outside pixels as background).
    pad = max(close_r, open_r)
    inner = (slice(pad, -pad), slice(pad, -pad))
    mask = ndimage.binary_closing(np.pad(mask, pad, mode="edge"), structure=disk(close_r))[inner]
    mask = _fill_small_holes(mask, min_area)
    mask = ndimage.binary_opening(np.pad(mask, pad, mode="edge"), structure=disk(open_r))[inner]
    return _drop_small_objects(mask, min_area)


def _drop_small_objects(mask: np.ndarray, min_area: int) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]


def _fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fill background components smaller than ``max_area`` that do not touch the border."""
    from scipy import ndimage

    labels, n = ndimage.label(~mask)  # 4-connected background, the dual of 8-connected tissue
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    fill = sizes < max_area
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill[border] = False
    fill[0] = False
    return mask | fill[labels]


def slide_tissue_mask(
    slide: Any,
    *,
    target_mpp: float = 8.0,
    max_side: int = 2048,
    method: str = "otsu",
) -> tuple[np.ndarray, float]:
    """Tissue mask of a whole slide, computed on a thumbnail.

    Parameters
    ----------
    slide : SlideReader
        An open slide (:func:`nucleikit.io.slides.open_slide`).
    target_mpp : float
        Pixel size of the thumbnail in µm/px when the slide's is known (8 µm, about a
        nucleus, is plenty to find tissue). The thumbnail is never larger than
        ``max_side`` nor than level 0.
    max_side : int
        Longer side of the thumbnail when the pixel size is unknown, and its upper bound.
    method : {"otsu", "fixed"}
        See :func:`tissue_mask`.

    Returns
    -------
    mask : (h, w) bool ndarray
        True on tissue; all False if there is none (the caller decides what that means).
    scale : float
        Mask pixels per level-0 pixel (see the module docstring).
    """
    if not (isinstance(max_side, (int, np.integer)) and max_side >= 1):
        raise ConfigError(f"max_side must be a positive integer, got {max_side!r}")
    if not (math.isfinite(target_mpp) and target_mpp > 0):
        raise ConfigError(f"target_mpp must be a positive number of µm/px, got {target_mpp!r}")
    longest = max(slide.dimensions)
    side = int(max_side)
    if slide.mpp is not None:
        side = max(1, min(side, math.ceil(longest * slide.mpp / target_mpp)))
    thumb, scale = slide.thumbnail(side)
    mpp = slide.mpp / scale if slide.mpp is not None else None
    return tissue_mask(thumb, method=method, mpp=mpp), scale


def save_mask_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a mask as an 8-bit grey PNG (tissue 255, glass 0), atomically.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created.
    mask : (h, w) bool ndarray

    Returns
    -------
    Path
        ``path``.
    """
    from PIL import Image

    from nucleikit.export import atomic_path

    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} of shape {mask.shape}")
    final = Path(path)
    with atomic_path(final) as tmp:
        Image.fromarray(mask.astype(np.uint8) * np.uint8(255), mode="L").save(tmp, format="PNG")
    return final


_GREY_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "F")


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a user's tissue mask and resize it to ``shape`` by nearest neighbour.

    Parameters
    ----------
    path : str or Path
        A single-channel image (PNG; TIFF and BMP also work) covering the whole slide: any
        non-zero pixel is tissue. Grey stored as RGB(A) with equal channels is accepted;
        a palette image counts by its colours' luminance.
    shape : (int, int)
        (H, W) wanted, e.g. the slide's level-0 size or a thumbnail's.

    Returns
    -------
    (H, W) bool ndarray

    Raises
    ------
    InputError
        Missing or undecodable file, a colour image (probably not a mask), or an aspect
        ratio that does not match ``shape`` (a mask of another slide).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    height, width = (int(v) for v in shape)
    if height < 1 or width < 1:
        raise ValueError(f"shape must be positive (H, W), got {shape}")
    if not path.is_file():
        raise InputError(path, "mask file not found")
    try:
        with Image.open(path, formats=("PNG", "TIFF", "BMP")) as image:
            image.load()
            values = _mask_values(path, image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(path, f"cannot be read as a mask image (PNG, TIFF or BMP): {exc}") from exc
    h, w = values.shape
    expected_h = w * height / width
    if abs(h - expected_h) > max(1.0, 0.05 * expected_h):
        raise InputError(path, f"mask of {w}x{h} px does not have the slide's aspect ratio ({width}x{height} px)")
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return values[np.ix_(rows, cols)] != 0


def _mask_values(path: Path, image: Any) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        return np.asarray(image.convert("L"))
    if mode in _GREY_MODES:
        return np.asarray(image)
    if mode in ("RGB", "RGBA", "LA"):
        array = np.asarray(image)
        colour = array[:, :, :1] if mode == "LA" else array[:, :, :3]
        if np.any(colour != colour[:, :, :1]):
            reason = f"is a colour ({mode}) image, not a mask; save the mask as 8-bit grey, tissue non-zero"
            raise InputError(path, reason)
        return colour[:, :, 0]
    raise InputError(path, f"unsupported mask pixel mode {mode!r}; save the mask as 8-bit grey, tissue non-zero")


def _window_arrays(tiles: Iterable[Window | Tile]) -> np.ndarray:
    boxes = [(t.core if isinstance(t, Tile) else t) for t in tiles]
    if not boxes:
        return np.zeros((0, 4), dtype=np.float64)
    return np.array([(b.y0, b.x0, b.y1, b.x1) for b in boxes], dtype=np.float64)


def tissue_fractions(mask: np.ndarray, scale: float, tiles: Iterable[Window | Tile]) -> np.ndarray:
    """Fraction of each tile's area that is tissue, from a summed-area table.

    Parameters
    ----------
    mask : (h, w) bool ndarray
    scale : float
        Mask pixels per pixel of the tiles' frame (module docstring).
    tiles : iterable of Window or Tile
        Windows ``[y0, y1) x [x0, x1)``; for a :class:`Tile` its ``core`` (the pixels it writes).

    Returns
    -------
    (n,) float64 ndarray
        Tissue pixels / pixels of the mask block a window covers: the mask pixels from
        ``floor(y0 * scale)`` to ``ceil(y1 * scale)`` (and likewise in x), clipped to the
        mask. 0 for a window entirely outside the mask.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    boxes = _window_arrays(tiles)
    h, w = mask.shape
    # Summed-area table with a zero first row and column: the sum over [r0, r1) x [c0, c1) is
    # four look-ups, whatever the window size.
    table = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.cumsum(np.cumsum(mask != 0, axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
    eps = 1e-9  # y * scale that should be an integer k must not floor to k - 1
    r0 = np.clip(np.floor(boxes[:, 0] * scale + eps), 0, h).astype(np.int64)
    c0 = np.clip(np.floor(boxes[:, 1] * scale + eps), 0, w).astype(np.int64)
    r1 = np.clip(np.ceil(boxes[:, 2] * scale - eps), 0, h).astype(np.int64)
    c1 = np.clip(np.ceil(boxes[:, 3] * scale - eps), 0, w).astype(np.int64)
    r1, c1 = np.maximum(r1, r0), np.maximum(c1, c0)
    counts = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    areas = (r1 - r0) * (c1 - c0)
    return np.divide(counts, areas, out=np.zeros(len(boxes)), where=areas > 0)


def tiles_with_tissue(
    mask: np.ndarray, scale: float, tiles: Iterable[Window | Tile], *, min_fraction: float = 0.05
) -> np.ndarray:
    """Which tiles hold enough tissue to be worth running.

    Parameters
    ----------
    mask, scale, tiles
        See :func:`tissue_fractions`.
    min_fraction : float
        In [0, 1]. A tile is kept when its tissue fraction is at least this and above 0
        (so ``min_fraction=0`` keeps tiles with any tissue at all).

    Returns
    -------
    (n,) bool ndarray
    """
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction!r}")
    fractions = tissue_fractions(mask, scale, tiles)
    return (fractions > 0) & (fractions >= min_fraction)


def tile_has_tissue(mask: np.ndarray, scale: float, window: Window | Tile, *, min_fraction: float = 0.05) -> bool:
    """:func:`tiles_with_tissue` for one window."""
    return bool(tiles_with_tissue(mask, scale, [window], min_fraction=min_fraction)[0])
