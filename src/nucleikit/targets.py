"""Training targets built from point annotations.

Two dense targets are used by the detectors of the two papers:

* :func:`proximity_map` (Xing et al. 2019): every pixel within distance ``d`` of
  an annotated centre gets ``(exp(alpha * (1 - D / d)) - 1) / (exp(alpha) - 1)``
  where ``D`` is its distance to the *nearest* centre; the map is 1 on a centre,
  falls off quickly and is 0 beyond ``d``.
* :func:`gaussian_density_map` (Alom et al. 2022, UD-Net): each centre is
  dilated with a 5x5 square and the binary map is smoothed with a Gaussian.

Instance-aware segmentation heads learn three maps from an instance label
image (:func:`instance_targets`): foreground, the one-pixel inner boundary of
every nucleus (the third class of the DSB2018 winning solutions) and the
distance to the nucleus border normalised to 1 at each nucleus's centre; a
marker-controlled watershed (:func:`nucleikit.postprocess.instances_from_maps`)
turns them back into instances.

The classifiers (DenseNet, DCRN; Alom et al. 2022) are trained on square
patches centred on annotated nuclei, cut by :func:`extract_patches`.

Coordinates are (x, y) 0-based pixel centres, x to the right, y down; maps are
(H, W) float32. Both functions are vectorised (a k-d tree query and an
``ndimage`` filter), never a Python loop over pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "XING_D_MICRONS",
    "proximity_radius_px",
    "proximity_map",
    "gaussian_density_map",
    "point_raster",
    "extract_patches",
    "INSTANCE_CHANNELS",
    "instance_targets",
]

#: Channels of :func:`instance_targets` (and of an instance-aware head's output).
INSTANCE_CHANNELS = ("foreground", "boundary", "distance")

#: Xing et al. use d = 15 px at 40x (0.25 um/px), i.e. 3.75 um. The radius is a
#: physical length so it is scaled with the resolution (6.8 px at 0.55 um/px).
XING_D_MICRONS = 15 * 0.25


def proximity_radius_px(mpp: float, d_microns: float = XING_D_MICRONS) -> float:
    """Radius ``d`` of the proximity map in pixels at resolution ``mpp`` (um/px)."""
    if mpp <= 0:
        raise ValueError(f"mpp must be positive, got {mpp}")
    return d_microns / mpp


def _check_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    return pts


def proximity_map(
    points: np.ndarray,
    shape: tuple[int, int],
    *,
    d: float,
    alpha: float = 3.0,
) -> np.ndarray:
    """Xing et al.'s proximity map.

    Parameters
    ----------
    points : (N, 2) array_like of float
        Nucleus centres as (x, y), 0-based pixel centres. Points outside the
        image still shape the map inside it.
    shape : (H, W)
        Size of the map.
    d : float
        Radius in pixels beyond which the map is 0 (see :func:`proximity_radius_px`).
    alpha : float
        Decay; larger values make the peak sharper. Xing et al. use 3.

    Returns
    -------
    (H, W) float32 ndarray
        Values in [0, 1]: 1 exactly on a centre (when it falls on a pixel
        centre), 0 where the nearest centre is farther than ``d``.
    """
    pts = _check_points(points)
    h, w = int(shape[0]), int(shape[1])
    if d <= 0:
        raise ValueError(f"d must be positive, got {d}")
    out = np.zeros((h, w), dtype=np.float32)
    if len(pts) == 0 or h == 0 or w == 0:
        return out
    # distance_upper_bound makes the tree give up early on background pixels,
    # so the cost grows with the area near nuclei, not with N * H * W.
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)
    dist, _ = cKDTree(pts).query(grid, k=1, distance_upper_bound=d)
    dist = dist.reshape(h, w)
    inside = np.isfinite(dist) & (dist <= d)
    value = np.expm1(alpha * (1.0 - dist[inside] / d)) / np.expm1(alpha)
    out[inside] = value.astype(np.float32)
    return out


def point_raster(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary (H, W) image with True at the pixel under each point.

    Points are rounded half up (``floor(v + 0.5)``) and clipped into the image,
    so annotations a fraction of a pixel outside (as in CRCHisto) still count.
    """
    pts = _check_points(points)
    h, w = int(shape[0]), int(shape[1])
    raster = np.zeros((h, w), dtype=bool)
    if len(pts) == 0 or h == 0 or w == 0:
        return raster
    cols = np.clip(np.floor(pts[:, 0] + 0.5).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(pts[:, 1] + 0.5).astype(np.int64), 0, h - 1)
    raster[rows, cols] = True
    return raster


def gaussian_density_map(
    points: np.ndarray,
    shape: tuple[int, int],
    *,
    sigma: float = 2.0,
    dilation: int = 5,
) -> np.ndarray:
    """Alom et al.'s Gaussian density target (UD-Net).

    Each centre is marked on a binary raster, dilated with a ``dilation`` x
    ``dilation`` square (5x5 in the paper) and smoothed with a Gaussian of
    standard deviation ``sigma`` pixels. The result is divided by the value an
    isolated centre reaches, so every isolated nucleus peaks at exactly 1 and
    touching ones may exceed it slightly before clipping to [0, 1].

    Parameters
    ----------
    points : (N, 2) array_like of float
        Centres as (x, y), 0-based pixel centres.
    shape : (H, W)
    sigma : float
        Gaussian standard deviation in pixels.
    dilation : int
        Side of the square structuring element (odd).

    Returns
    -------
    (H, W) float32 ndarray in [0, 1].
    """
    if dilation < 1 or dilation % 2 == 0:
        raise ValueError(f"dilation must be a positive odd integer, got {dilation}")
    raster = point_raster(points, shape)
    if not raster.any():
        return np.zeros(raster.shape, dtype=np.float32)
    square = np.ones((dilation, dilation), dtype=bool)
    blob = ndimage.binary_dilation(raster, structure=square).astype(np.float32)
    density = ndimage.gaussian_filter(blob, sigma=sigma, mode="constant")
    # Peak of one isolated dilated centre: normalising by it makes the target's
    # scale independent of sigma and of the dilation size.
    size = dilation + 2 * int(np.ceil(4 * sigma)) + 2
    single = np.zeros((size, size), dtype=np.float32)
    c = size // 2
    r = dilation // 2
    single[c - r : c + r + 1, c - r : c + r + 1] = 1.0
    peak = float(ndimage.gaussian_filter(single, sigma=sigma, mode="constant")[c, c])
    return np.clip(density / peak, 0.0, 1.0).astype(np.float32)


def extract_patches(image: np.ndarray, points: np.ndarray, size: int = 32) -> np.ndarray:
    """Square patches of ``image`` centred on ``points``, reflected at the borders.

    Parameters
    ----------
    image : (H, W, C) or (H, W) ndarray
        Any dtype (uint8 patches stay uint8).
    points : (N, 2) array_like of float
        Centres as (x, y), 0-based pixel centres, x to the right, y down.
        Each is rounded half up to its pixel, ``col = floor(x + 0.5)``,
        ``row = floor(y + 0.5)`` (the rule of :func:`point_raster`), so it
        must lie in ``-0.5 <= x < W - 0.5`` and ``-0.5 <= y < H - 0.5``.
    size : int
        Side of the patches in pixels (>= 1).

    Returns
    -------
    (N, size, size, C) or (N, size, size) ndarray of ``image.dtype``
        Patch i covers rows ``row_i - size // 2 .. row_i - size // 2 + size - 1``
        and the same columns around ``col_i``: the point's pixel is at index
        ``[size // 2, size // 2]`` of its patch. For an odd size that is the
        exact centre; for an even size (32) there are ``size // 2`` pixels
        before it and ``size // 2 - 1`` after it along each axis. Pixels beyond
        the image are mirrored without repeating the edge pixel
        (``numpy.pad(mode="reflect")``: ... c b | a b c ... ). ``N = 0`` gives
        an empty array of that shape.

    Raises
    ------
    ValueError
        ``points`` is not (N, 2) or not finite, ``size`` is not a positive
        integer, ``image`` is not 2-D or 3-D, or some points lie outside the
        image (the message says how many, and the first of them).

    Notes
    -----
    The image is padded once by ``size // 2 + 1`` pixels on every side and
    all patches are gathered with one fancy-indexing operation over an
    (N, size, size) grid of indices: no Python loop over the points.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    pts = _check_points(points)
    if not np.all(np.isfinite(pts)):
        raise ValueError("points must be finite")
    h, w = image.shape[:2]
    cols = np.floor(pts[:, 0] + 0.5).astype(np.int64)
    rows = np.floor(pts[:, 1] + 0.5).astype(np.int64)
    outside = (cols < 0) | (cols >= w) | (rows < 0) | (rows >= h)
    if outside.any():
        first = pts[np.argmax(outside)]
        raise ValueError(
            f"{int(outside.sum())} of {len(pts)} points lie outside the {w} x {h} (W x H) image, "
            f"e.g. (x, y) = ({first[0]:g}, {first[1]:g})"
        )
    pad = size // 2 + 1
    widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, widths, mode="reflect")
    offsets = np.arange(size) - size // 2 + pad
    r = (rows[:, None] + offsets)[:, :, None]  # (N, size, 1)
    c = (cols[:, None] + offsets)[:, None, :]  # (N, 1, size)
    return padded[r, c]


def instance_targets(labels: np.ndarray) -> np.ndarray:
    """Foreground, boundary and normalised distance maps of an instance label image.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        0 = background, one positive integer per nucleus (labels need not be
        consecutive).

    Returns
    -------
    (H, W, 3) ndarray of float32, channels :data:`INSTANCE_CHANNELS`
        0. foreground: 1 on every labelled pixel;
        1. boundary: 1 on the pixels of a nucleus that touch (8-connected) a
           pixel of another label or of the background (the *inner* boundary,
           so touching nuclei are separated by two boundary pixels);
        2. distance: Euclidean distance (pixels) from each labelled pixel to
           the nearest pixel outside its own nucleus, divided by the largest
           such distance within that nucleus: 1 at the centre, about
           1/max at the rim, 0 on the background.

    Notes
    -----
    One distance transform serves all nuclei: the foreground with every
    nucleus's border pixels removed is a set of disjoint interiors, so the
    distance to the nearest removed/background pixel is the distance to the
    own nucleus's border (plus one pixel, the same for all nuclei).
    """
    from skimage.segmentation import find_boundaries

    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be an (H, W) integer label image, got {lab.dtype} {lab.shape}")
    fg = lab > 0
    boundary = find_boundaries(lab, connectivity=2, mode="inner") & fg
    dist = ndimage.distance_transform_edt(fg & ~boundary) + fg  # border pixels at 1, centre at max
    out = np.zeros(lab.shape + (3,), np.float32)
    out[..., 0] = fg
    out[..., 1] = boundary
    if fg.any():
        _, inverse = np.unique(lab, return_inverse=True)
        inverse = inverse.reshape(lab.shape)
        peak = ndimage.maximum(dist, inverse, index=np.arange(inverse.max() + 1))
        peak = np.asarray(peak, np.float64)
        peak[peak <= 0] = 1.0
        out[..., 2] = np.where(fg, dist / peak[inverse], 0.0)
    return out
