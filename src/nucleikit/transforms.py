"""Array transforms shared by training and inference (pure NumPy/SciPy).

Resolution changes follow the pixel-centre convention of PROTOCOL.md: pixel
``i`` covers ``[i - 0.5, i + 0.5)``, so scaling an image by ``s`` maps a
coordinate ``v`` to ``(v + 0.5) * s - 0.5``.

Place in the layout: a top-level module beside :mod:`nucleikit.targets`,
below ``train``, ``infer`` and ``experiments``, which all use it, so that
training and inference resample and normalise with the same code. It
depends on NumPy and scikit-image only (never on ``torch``, ``io`` or
``models``); it is imported as ``nucleikit.transforms`` by users' scripts,
tools and benchmarks, so it stays there rather than under ``train/`` or
``infer/``.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

__all__ = [
    "scale_factor",
    "resample",
    "scale_points",
    "resize_labels",
    "standardise",
    "channel_stats",
    "percentile_normalise",
    "lab_moments",
    "reinhard_normalise",
    "jitter_stains",
]

#: Resolutions closer than this (relative) are treated as equal: resampling a
#: 0.499 um/px image to 0.5 um/px would blur it for a 0.2% size change.
MPP_TOLERANCE = 0.02


def scale_factor(mpp_from: float | None, mpp_to: float | None) -> float:
    """Factor by which an image at ``mpp_from`` um/px must be resized to reach ``mpp_to``.

    Returns 1.0 when either resolution is unknown or they agree within
    :data:`MPP_TOLERANCE`.
    """
    if mpp_from is None or mpp_to is None:
        return 1.0
    if mpp_from <= 0 or mpp_to <= 0:
        raise ValueError(f"resolutions must be positive, got {mpp_from} and {mpp_to}")
    s = mpp_from / mpp_to
    return 1.0 if abs(s - 1.0) <= MPP_TOLERANCE else s


def resample(image: np.ndarray, factor: float, *, order: int = 1) -> np.ndarray:
    """Resize an (H, W[, C]) image by ``factor`` (anti-aliased when shrinking).

    The output has ``round(H * factor)`` x ``round(W * factor)`` pixels (at
    least 1) and the input's dtype for floats.
    """
    if factor == 1.0:
        return image
    h, w = image.shape[:2]
    out_shape = (max(1, int(round(h * factor))), max(1, int(round(w * factor)))) + image.shape[2:]
    out = resize(
        image,
        out_shape,
        order=order,
        mode="reflect",
        anti_aliasing=factor < 1.0,
        preserve_range=True,
    )
    return out.astype(image.dtype if image.dtype.kind == "f" else np.float32, copy=False)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (h, w) label image to ``shape`` = (H, W).

    Pixel centres map as ``x_small = (x + 0.5) * w / W - 0.5`` (the convention
    of :func:`~nucleikit.transforms.scale_points`); labels are never blended.
    """
    h, w = labels.shape
    if (h, w) == tuple(shape):
        return labels
    rows = np.clip(np.floor((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.intp), 0, h - 1)
    cols = np.clip(np.floor((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.intp), 0, w - 1)
    return labels[np.ix_(rows, cols)]


def scale_points(points: np.ndarray, factor: float) -> np.ndarray:
    """Map (N, 2) (x, y) pixel-centre coordinates through a resize by ``factor``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if factor == 1.0:
        return pts.copy()
    return (pts + 0.5) * factor - 0.5


def channel_stats(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over (H, W, C) float images."""
    if not images:
        raise ValueError("no images to compute channel statistics from")
    c = images[0].shape[-1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    count = 0
    for im in images:
        flat = im.reshape(-1, c).astype(np.float64)
        total += flat.sum(0)
        total_sq += (flat**2).sum(0)
        count += flat.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def standardise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(H, W, C) float image minus per-channel ``mean``, divided by ``std`` (float32)."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if image.shape[-1] != mean.shape[0]:
        raise ValueError(f"image has {image.shape[-1]} channels, statistics have {mean.shape[0]}")
    return (image.astype(np.float32, copy=False) - mean) / std


def percentile_normalise(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Stretch an image so that its ``low`` and ``high`` percentiles map to 0 and 1.

    One pair of percentiles over all pixels and channels (so colours keep their
    balance), as StarDist and Cellpose normalise fluorescence images: the DSB2018
    collection mixes bright-field tiles with fluorescence whose nuclei reach only
    a few percent of the 8-bit range, and one data-set-wide standardisation
    leaves the dim ones almost black.

    Parameters
    ----------
    image : (H, W) or (H, W, C) float array
    low, high : float
        Percentiles in [0, 100], ``low < high``.

    Returns
    -------
    float32 array of the same shape; not clipped (values outside [0, 1] are the
    pixels beyond the percentiles). A constant image gives zeros.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"need 0 <= low < high <= 100, got {low}, {high}")
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, [low, high])
    span = float(hi - lo)
    if span <= 1e-12:
        return np.zeros_like(image)
    return (image - np.float32(lo)) / np.float32(span)


def _as_unit_rgb(pixels: np.ndarray) -> np.ndarray:
    a = np.asarray(pixels)
    if a.ndim < 1 or a.shape[-1] != 3:
        raise ValueError(f"need RGB pixels (..., 3), got shape {a.shape}")
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32, copy=False)


def lab_moments(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the CIE L*a*b* channels of RGB pixels.

    Parameters
    ----------
    pixels : (..., 3) ndarray
        uint8, or float in [0, 1]: an image, or a stack of patches.

    Returns
    -------
    mean, std : (3,) float64 ndarray
        Over every pixel, in L*a*b* units (L* in [0, 100]); each std at
        least 1e-6.
    """
    from skimage.color import rgb2lab

    lab = rgb2lab(_as_unit_rgb(pixels)).reshape(-1, 3).astype(np.float64)
    if len(lab) == 0:
        raise ValueError("no pixel to take L*a*b* moments of")
    return lab.mean(axis=0), np.maximum(lab.std(axis=0), 1e-6)


def reinhard_normalise(
    pixels: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
    *,
    source: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Match the L*a*b* moments of RGB pixels to a target's (Reinhard et al. 2001).

    Each L*a*b* channel is standardised with the source moments and rescaled
    to the target's, then converted back to RGB: a stain and scanner change
    that is roughly a per-channel gain and offset in L*a*b* is undone.

    Parameters
    ----------
    pixels : (..., 3) ndarray
        uint8, or float in [0, 1].
    target_mean, target_std : (3,) array_like
        L*a*b* moments to reach (e.g. :func:`lab_moments` of training data).
    source : (mean, std) or None
        Moments of the pixels' own stain; None computes them from ``pixels``
        (pass them to normalise many tiles of one slide alike).

    Returns
    -------
    ndarray
        Same shape and dtype as ``pixels`` (uint8 rounded, float clipped to
        [0, 1]).
    """
    from skimage.color import lab2rgb, rgb2lab

    given = np.asarray(pixels)
    unit = _as_unit_rgb(given)
    src_mean, src_std = lab_moments(unit) if source is None else source
    t_mean = np.asarray(target_mean, np.float64)
    t_std = np.asarray(target_std, np.float64)
    lab = (rgb2lab(unit) - np.asarray(src_mean)) / np.maximum(np.asarray(src_std, np.float64), 1e-6) * t_std + t_mean
    rgb = np.clip(lab2rgb(lab), 0.0, 1.0)
    if given.dtype == np.uint8:
        return np.rint(rgb * 255.0).astype(np.uint8)
    return rgb.astype(given.dtype if given.dtype.kind == "f" else np.float32)


def jitter_stains(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Scale and shift the H, E, DAB optical densities of RGB images in [0, 1].

    ``x`` is (..., H, W, 3); ``scale`` and ``shift`` broadcast against it
    (e.g. (B, 1, 1, 3) for a batch, (3,) for one image): each stain's optical
    density (natural log) becomes ``od * scale + shift``.

    The colour deconvolution matrices are scikit-image's (Ruifrok and
    Johnston). Unlike ``rgb2hed``/``hed2rgb`` nothing is clipped in stain
    space, so ``scale = 1, shift = 0`` returns the input up to rounding, and
    background and grey pixels outside the H-E-DAB cone are not recoloured.
    """
    from skimage.color import hed_from_rgb, rgb_from_hed

    # Floor at one grey level: a zero channel would otherwise carry an optical
    # density of 14 whose jitter leaks into the other channels.
    od = -np.log(np.maximum(x, 1.0 / 255.0))
    stains = od @ hed_from_rgb
    od = (stains * scale + shift) @ rgb_from_hed
    return np.clip(np.exp(-od), 0.0, 1.0).astype(np.float32)
