"""Instances: a foreground probability map or an instance head's maps -> a label image.

:func:`instances_from_probability` cuts a foreground probability map
(threshold, connected components, seeded watershed);
:func:`instances_from_maps` cuts the foreground / boundary / distance maps of
an instance-aware head (marker-controlled watershed). Both make one labelling
of the whole image and one flooding (``skimage.segmentation.watershed``); no
step loops over instances.

Label images are (H, W) int32 arrays, 0 = background, instances numbered
1..K in raster order of their first pixel. Connectivity is 8 (diagonal
neighbours touch) throughout: components, watershed flooding and outlines
(:mod:`nucleikit.postprocess.regions`) agree on what one object is. Points
are (x, y) = (col, row), 0-based pixel centres. This module never imports torch.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from skimage.feature import peak_local_max
from skimage.morphology import disk

from .peaks import _check_min_distance, _check_prob

__all__ = [
    "instances_from_probability",
    "instances_from_maps",
    "MARKER_KINDS",
]



def _check_min_size(min_size: Any) -> int:
    if isinstance(min_size, bool):
        raise ValueError(f"min_size must be an integer >= 0, got {min_size!r}")
    try:
        value = operator.index(min_size)
    except TypeError:
        raise ValueError(f"min_size must be an integer >= 0, got {min_size!r}") from None
    if value < 0:
        raise ValueError(f"min_size must be an integer >= 0, got {min_size!r}")
    return value


def _seed_pixels(seeds: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of each seed point's pixel, after checking they lie on the image."""
    pts = np.asarray(seeds, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"seeds must be (N, 2) (x, y) points, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("seeds must hold finite coordinates")
    # Pixel c covers [c - 0.5, c + 0.5), as in points_in_window.
    cols = np.floor(pts[:, 0] + 0.5).astype(np.intp)
    rows = np.floor(pts[:, 1] + 0.5).astype(np.intp)
    outside = (rows < 0) | (rows >= shape[0]) | (cols < 0) | (cols >= shape[1])
    if outside.any():
        x, y = pts[np.argmax(outside)]
        raise ValueError(
            f"{int(outside.sum())} seeds lie outside the {shape[1]} x {shape[0]} map, e.g. ({x:g}, {y:g})"
        )
    return rows, cols


def _distance_markers(distance: np.ndarray, components: np.ndarray, min_distance: int) -> np.ndarray:
    """Marker image from the maxima of the distance transform, one marker per plateau.

    ``peak_local_max`` (all arguments explicit) keeps maxima at least
    ``min_distance`` apart, but on a plateau (a ridge of equal distance, as
    in a nucleus of constant width) it keeps several pixels of the same
    maximum. Peaks are therefore grouped by the connected set of 3 x 3 local
    maxima they lie on, and each group is one marker.
    """
    from scipy import ndimage
    from skimage.measure import label

    rows, cols = _distance_peaks(distance, components, min_distance)
    plateaus = (distance > 0) & (distance >= ndimage.maximum_filter(distance, size=3, mode="nearest"))
    plateau_id = label(plateaus, connectivity=2).astype(np.int32, copy=False)
    markers = np.zeros(distance.shape, dtype=np.int32)
    markers[rows, cols] = plateau_id[rows, cols]  # every peak is a 3 x 3 local maximum
    return markers


def _distance_peaks(distance: np.ndarray, components: np.ndarray, min_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Maxima of the distance transform, per component (all arguments explicit)."""
    rc = peak_local_max(
        distance,
        min_distance=min_distance,
        threshold_abs=0.0,  # distance > 0: foreground only
        threshold_rel=None,
        exclude_border=False,  # nuclei cut by the image (or tile) edge keep their seed
        num_peaks=np.inf,
        footprint=disk(min_distance),
        labels=components,
        num_peaks_per_label=np.inf,
        p_norm=2,
    )
    return rc[:, 0], rc[:, 1]


def _flood(distance: np.ndarray, markers: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    from skimage.segmentation import watershed

    return watershed(
        -distance, markers, connectivity=2, mask=foreground, compactness=0.0, watershed_line=False
    ).astype(np.int32, copy=False)


def _raster_order(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 1..K in raster order of their first pixel (top row first).

    One pass over the foreground pixels: each label's first pixel is the
    smallest flat index holding it (``numpy.minimum.at``).
    """
    flat = labels.ravel()
    pixels = np.flatnonzero(flat)  # ascending: raster order
    values = flat[pixels]
    top = int(values.max()) if values.size else 0
    first = np.full(top + 1, flat.size, dtype=np.intp)
    np.minimum.at(first, values, pixels)
    present = np.flatnonzero(first < flat.size)
    lookup = np.zeros(top + 1, dtype=np.int32)
    lookup[present[np.argsort(first[present])]] = np.arange(1, present.size + 1, dtype=np.int32)
    return lookup[labels]


def instances_from_probability(
    prob: Any,
    *,
    threshold: float = 0.5,
    min_size: int = 10,
    seeds: Any = None,
    min_distance: int = 5,
    watershed: bool = True,
) -> np.ndarray:
    """Nucleus instances from a foreground probability map.

    Steps: foreground = ``prob > threshold``; connected components (8-connected)
    smaller than ``min_size`` pixels are dropped as noise; the watershed
    (``skimage.segmentation.watershed`` on the negated Euclidean distance
    transform of the foreground, flooding only the foreground) splits
    touching nuclei from one marker per nucleus; labels are renumbered.

    Parameters
    ----------
    prob : (H, W) array_like of float
        Foreground probability, indexed [row, col].
    threshold : float
        Foreground is strictly above it.
    min_size : int
        Smallest instance kept, in pixels (default 10: speckle, well below the
        smallest DSB2018 nucleus of 21 px). Tune it with the other parameters
        on validation images, at the resolution the map is computed at.
    seeds : (N, 2) array_like of float, optional
        Marker points (x, y), 0-based pixel centres, e.g. nucleikit's detected
        centres: one nucleus per seed whose pixel is foreground (seeds on
        background pixels are ignored; two seeds in one pixel are one).
        Default: the local maxima of the distance transform, at least
        ``min_distance`` apart, found per component with
        ``skimage.feature.peak_local_max`` (all arguments explicit: Euclidean
        disk footprint, no border exclusion), one marker per plateau (Notes).
    min_distance : int
        Smallest distance between distance-transform maxima, in pixels (>= 1);
        unused with ``seeds``. Larger values split less (roughly: nuclei
        whose centres are closer than this are not separated).
    watershed : bool
        False skips the splitting: every remaining connected component is one
        instance.

    Returns
    -------
    (H, W) ndarray of int32
        0 = background; instances numbered 1..K in raster order of their first
        pixel (top row first, then left to right).

    Raises
    ------
    ValueError
        ``prob`` not a finite 2-D real map; ``threshold`` NaN; ``min_size``
        not an integer >= 0; ``min_distance`` not an integer >= 1; seeds not
        (N, 2) finite, or outside the map.

    Notes
    -----
    - A component without any marker (e.g. no seed point on it) stays whole
      as one instance rather than vanishing.
    - A watershed region smaller than ``min_size`` is not dropped (that
      would punch a hole in a nucleus): its marker is removed and the
      watershed is run once more, so its pixels join the neighbouring nucleus.
    - Maxima on one plateau of the distance map (a ridge of equal distance:
      a nucleus of constant width, a line) form one marker, so such a nucleus
      is not cut into pieces ``min_distance`` apart. A ridge that rises and
      falls (a long nucleus with a waist) can still give several markers:
      raise ``min_distance`` or give seeds.
    """
    from scipy import ndimage
    from skimage.measure import label

    arr = _check_prob(prob)
    thr = float(threshold)
    if math.isnan(thr):
        raise ValueError("threshold must be a number, got NaN")
    size = _check_min_size(min_size)
    md = _check_min_distance(min_distance)
    seed_rc = _seed_pixels(seeds, arr.shape) if seeds is not None else None
    if not isinstance(watershed, (bool, np.bool_)):
        raise ValueError(f"watershed must be True or False, got {watershed!r}")

    foreground = arr > thr
    components = label(foreground, connectivity=2).astype(np.int32, copy=False)
    area = np.bincount(components.ravel())
    small = area < size
    small[0] = False
    if small.any():
        foreground &= ~small[components]
        components[~foreground] = 0
    if not watershed or not foreground.any():
        return _raster_order(components)

    distance = ndimage.distance_transform_edt(foreground)
    if seed_rc is None:
        markers = _distance_markers(distance, components, md)
    else:
        on = foreground[seed_rc]
        # One marker per distinct seed pixel, numbered in raster order.
        pixels = np.unique(seed_rc[0][on].astype(np.int64) * arr.shape[1] + seed_rc[1][on])
        markers = np.zeros(arr.shape, dtype=np.int32)
        markers.ravel()[pixels] = np.arange(1, pixels.size + 1, dtype=np.int32)

    regions = _flood(distance, markers, foreground)
    region_area = np.bincount(regions.ravel(), minlength=int(markers.max()) + 1)
    tiny = np.flatnonzero(region_area[1:] < size) + 1
    if tiny.size:
        markers[np.isin(markers, tiny)] = 0
        regions = _flood(distance, markers, foreground)

    unmarked = foreground & (regions == 0)
    regions[unmarked] = components[unmarked] + regions.max()
    return _raster_order(regions)


#: Marker sources of :func:`instances_from_maps`.
MARKER_KINDS = ("distance", "boundary")


def instances_from_maps(
    maps: Any,
    *,
    threshold: float = 0.5,
    marker_threshold: float = 0.5,
    markers: str = "distance",
    min_size: int = 10,
) -> np.ndarray:
    """Nucleus instances from an instance-aware head's maps (marker-controlled watershed).

    Parameters
    ----------
    maps : (3, H, W) array_like of float
        Foreground, boundary and normalised-distance probabilities
        (:data:`nucleikit.targets.INSTANCE_CHANNELS`), indexed [channel, row, col].
    threshold : float
        Foreground = ``maps[0] > threshold``.
    marker_threshold : float
        Markers are the connected components (8-connected) of the foreground
        pixels where ``maps[2] > marker_threshold`` (``markers="distance"``:
        the cores of the nuclei) or where ``maps[0] - maps[1] >
        marker_threshold`` (``markers="boundary"``: foreground minus boundary,
        as the DSB2018 winning solutions did).
    markers : {"distance", "boundary"}
    min_size : int
        Smallest instance kept, in pixels of the maps.

    Returns
    -------
    (H, W) ndarray of int32
        0 = background; instances 1..K in raster order of their first pixel.

    Notes
    -----
    The foreground is flooded from the markers by
    ``skimage.segmentation.watershed`` over the negated distance map (both
    kinds of marker: the distance map peaks inside each nucleus and dips on
    the borders between touching ones). A foreground component that holds
    no marker stays whole as one instance; an instance smaller than
    ``min_size`` is dropped.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    arr = np.asarray(maps, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"maps must be (3, H, W) foreground/boundary/distance maps, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("maps must hold finite values")
    thr, mthr = float(threshold), float(marker_threshold)
    if math.isnan(thr) or math.isnan(mthr):
        raise ValueError("threshold and marker_threshold must be numbers, got NaN")
    if markers not in MARKER_KINDS:
        raise ValueError(f"markers must be one of {', '.join(MARKER_KINDS)}, got {markers!r}")
    size = _check_min_size(min_size)

    foreground = arr[0] > thr
    core = arr[2] > mthr if markers == "distance" else (arr[0] - arr[1]) > mthr
    eight = np.ones((3, 3), bool)
    seeds, _ = ndimage.label(core & foreground, structure=eight)
    regions = watershed(-arr[2], seeds, connectivity=2, mask=foreground, watershed_line=False).astype(np.int32)
    unmarked = foreground & (regions == 0)
    if unmarked.any():
        rest, _ = ndimage.label(unmarked, structure=eight)
        regions[unmarked] = rest[unmarked] + regions.max()
    area = np.bincount(regions.ravel())
    small = area < size
    small[0] = False
    if small.any():
        regions[small[regions]] = 0
    return _raster_order(regions)
