"""From dense model outputs to objects: peak finding for point detection, instances.

:func:`find_peaks` turns a probability (or proximity / density) map into
nucleus centres, :func:`relative_threshold` gives the threshold ``xi * max``
used by the detectors of Xing et al. 2019 and Alom et al. 2022,
:func:`peak_threshold` combines it with the absolute floor ``threshold_abs``
(the one rule every detection path applies: arrays, tiles, slides, tuning),
and :func:`points_in_window` / :func:`filter_points_in_window` apply the
ownership rule of tiled inference (each peak belongs to the one tile whose
core holds its pixel).

Instances: :func:`instances_from_probability` turns a foreground probability
map into a label image (threshold, connected components, seeded watershed),
:func:`label_outlines` gives each instance's outline as an (x, y) polygon and
:func:`label_measurements` its centroid, area and mean intensity.

Conventions: maps are (H, W) float arrays indexed [row, col]; points are
(N, 2) float64 arrays of (x, y) = (col, row), 0-based pixel centres, x to the
right, y down. skimage's (row, col) is converted to (x, y) in one place,
:func:`find_peaks`. This module never imports torch.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from skimage.feature import peak_local_max
from skimage.morphology import disk

__all__ = [
    "find_peaks",
    "relative_threshold",
    "peak_threshold",
    "points_in_window",
    "filter_points_in_window",
    "instances_from_probability",
    "instances_from_maps",
    "MARKER_KINDS",
    "label_outlines",
    "label_measurements",
]


# =============================================================================
# Peak finding
# =============================================================================


def _check_min_distance(min_distance: Any) -> int:
    """``min_distance`` as an int >= 1 (integral floats such as 3.0 are accepted)."""
    if isinstance(min_distance, bool):
        raise ValueError(f"min_distance must be an integer >= 1, got {min_distance!r}")
    try:
        value = operator.index(min_distance)
    except TypeError:
        if isinstance(min_distance, float) and min_distance.is_integer():
            value = int(min_distance)
        else:
            raise ValueError(f"min_distance must be an integer >= 1, got {min_distance!r}") from None
    if value < 1:
        raise ValueError(f"min_distance must be an integer >= 1, got {min_distance!r}")
    return value


def _check_prob(prob: Any) -> np.ndarray:
    arr = np.asarray(prob)
    if arr.ndim != 2:
        raise ValueError(f"prob must be a (H, W) map, got shape {arr.shape}")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)  # exact for every integer map we meet
    elif arr.dtype.kind != "f":
        raise ValueError(f"prob must be a real-valued map, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"prob {arr.shape} contains NaN or inf")
    return arr


def find_peaks(
    prob: Any,
    *,
    min_distance: int,
    threshold: float,
    exclude_border: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a map, as nucleus centres.

    Parameters
    ----------
    prob : (H, W) array_like of float
        Probability, proximity or density map, indexed [row, col]. Integer maps
        are converted to float64.
    min_distance : int
        Suppression radius in pixels, >= 1 (Euclidean).
    threshold : float
        A peak's value must be **strictly greater** than ``threshold`` (so a
        threshold of 0 finds nothing on an all-zero map). Use
        :func:`relative_threshold` for the ``xi * max`` rule.
    exclude_border : bool
        If True, peaks closer than ``min_distance`` pixels to the image edge are
        dropped. The default False keeps peaks on the border, which is what
        tiled inference needs (tiles are trimmed to their cores afterwards).

    Returns
    -------
    points : (N, 2) float64 ndarray
        Peak positions as (x, y) = (col, row), integer-valued pixel centres.
    scores : (N,) float32 ndarray
        ``prob`` at each peak.

        Both are sorted by descending score, then by ascending y, then x, so
        the output does not depend on skimage's internal order.

    Raises
    ------
    ValueError
        If ``prob`` is not 2-D, not real or not finite, ``min_distance`` is not
        an integer >= 1, ``threshold`` is NaN or ``exclude_border`` not a bool.

    Notes
    -----
    ``skimage.feature.peak_local_max`` is called with every argument given, so
    that skimage's defaults (square footprint, Chebyshev distance, border
    exclusion, all of which skimage 2 changes) never decide for us:

    * A pixel is a candidate when it equals the maximum of the pixels within
      Euclidean distance ``min_distance`` of it (``footprint=disk(min_distance)``;
      outside the image the nearest edge pixel is repeated, so pixels on the
      border can be peaks) and is ``> threshold``. A map whose pixels are all
      equal has no peaks (skimage's rule).
    * Candidates are taken by descending value, ties in raster order (row,
      then column); a candidate closer than ``min_distance`` (Euclidean,
      ``p_norm=2``, strictly) to an already kept peak is dropped. With distinct
      values two candidates are always more than ``min_distance`` apart, so this
      step only acts on ties.
    * Plateaus (equal neighbouring values, e.g. a saturated sigmoid): each
      plateau pixel is a candidate, so a plateau keeps its first pixel in
      raster order plus any pixel at least ``min_distance`` from the kept
      ones. skimage skips the spacing step when ``min_distance == 1``: then
      every pixel of a plateau is returned.

    Raising the threshold only removes peaks: the peaks at threshold ``t2 > t1``
    are exactly the peaks at ``t1`` whose score is ``> t2`` (candidacy does not
    depend on the threshold, and higher candidates are decided first). So a
    threshold sweep may find peaks once at the lowest threshold and filter by
    ``scores > t``.

    Because candidacy only looks ``min_distance`` pixels around a pixel, a
    tile read with a halo of at least ``min_distance`` pixels finds the same
    peaks in its core as the whole image (ties apart).
    """
    arr = _check_prob(prob)
    md = _check_min_distance(min_distance)
    thr = float(threshold)
    if math.isnan(thr):
        raise ValueError("threshold must be a number, got NaN")
    if not isinstance(exclude_border, (bool, np.bool_)):
        raise ValueError(f"exclude_border must be True or False, got {exclude_border!r}")
    if arr.size == 0:
        return np.empty((0, 2), np.float64), np.empty(0, np.float32)

    rc = peak_local_max(
        arr,
        min_distance=md,
        threshold_abs=thr,
        threshold_rel=None,
        exclude_border=bool(exclude_border),
        num_peaks=np.inf,
        footprint=disk(md),
        labels=None,
        num_peaks_per_label=np.inf,
        p_norm=2,
    )
    rows, cols = rc[:, 0], rc[:, 1]
    scores = arr[rows, cols].astype(np.float32)
    order = np.lexsort((cols, rows, -scores))
    points = np.stack([cols[order], rows[order]], axis=1).astype(np.float64).reshape(-1, 2)
    return points, scores[order]


def relative_threshold(prob_max: float, xi: float) -> float:
    """Detection threshold ``xi * prob_max``.

    Parameters
    ----------
    prob_max : float
        Maximum of the probability map over the **whole image or slide**, not
        over one tile: a per-tile maximum would give each tile its own
        threshold (and a tile of background a very low one), breaking "tiled
        equals untiled". The pipeline computes the global maximum and passes it.
    xi : float
        Fraction in [0, 1], tuned on the validation images and stored with the
        weights.

    Returns
    -------
    float
        Pass it as ``threshold`` to :func:`find_peaks` (peaks must exceed it).

    Raises
    ------
    ValueError
        If ``xi`` is outside [0, 1] or either value is not finite.
    """
    pm, x = float(prob_max), float(xi)
    if not math.isfinite(pm):
        raise ValueError(f"prob_max must be finite, got {prob_max!r}")
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        raise ValueError(f"xi must lie in [0, 1], got {xi!r}")
    return x * pm


def peak_threshold(map_max: float, *, xi: float, threshold_abs: float = 0.0) -> float:
    """The value a detection peak must exceed: ``max(xi * map_max, threshold_abs)``.

    A peak is a nucleus when its map value is **strictly greater** than both
    the relative threshold ``xi * map_max`` (Xing et al.: it follows the
    image's own contrast) and the absolute floor ``threshold_abs`` (it stops a
    map without nuclei, whose maximum is itself background, from filling with
    detections: a blank tile has a small ``map_max``, so ``xi * map_max`` alone
    keeps its noise). Pass the result as ``threshold`` to :func:`find_peaks`.

    Parameters
    ----------
    map_max : float
        Maximum of the map over the **whole image or slide** (see
        :func:`relative_threshold`); ``-inf`` stands for "no map" (no tile run).
    xi : float
        Relative threshold in [0, 1].
    threshold_abs : float
        Absolute floor, >= 0, in map units (the scale of the training target:
        proximity 1 at a nucleus centre, or the Gaussian density's value). It
        is the same number on every tile and on the whole image, so it needs no
        global pass; 0 (weights tuned before the floor existed) gives exactly
        the relative rule.

    Returns
    -------
    float
        ``max(xi * map_max, threshold_abs)``, or ``inf`` when ``map_max <= 0``:
        a map that is nowhere positive has no nuclei, whatever ``xi``.

    Raises
    ------
    ValueError
        ``map_max`` is NaN or ``+inf``, ``xi`` outside [0, 1], ``threshold_abs``
        negative or not finite.

    Notes
    -----
    Raising either threshold only removes peaks (see :func:`find_peaks`), so a
    pass that stores peaks above a lower value (a slide's running maximum
    ``M_t <= M``) and filters them at the end gives the same nuclei.
    """
    ta = float(threshold_abs)
    if not (math.isfinite(ta) and ta >= 0.0):
        raise ValueError(f"threshold_abs must be a finite number >= 0, got {threshold_abs!r}")
    pm = float(map_max)
    if math.isnan(pm) or pm == math.inf:
        raise ValueError(f"map_max must be finite or -inf, got {map_max!r}")
    if pm <= 0.0:
        relative_threshold(0.0, xi)  # still refuse a bad xi
        return math.inf
    return max(relative_threshold(pm, xi), ta)


# =============================================================================
# Ownership of points in tiled inference
# =============================================================================


def points_in_window(points: Any, window: tuple[int, int, int, int]) -> np.ndarray:
    """Which points have their pixel inside a half-open window.

    Parameters
    ----------
    points : (N, 2) array_like of float
        (x, y) points, 0-based pixel centres, in the same frame as ``window``.
    window : (y0, x0, y1, x1) ints
        Rows ``y0 <= row < y1`` and columns ``x0 <= col < x1``.

    Returns
    -------
    (N,) bool ndarray
        True where the point's pixel ``(floor(x + 0.5), floor(y + 0.5))`` lies
        in the window. Pixel c covers [c - 0.5, c + 0.5), so cores that tile
        the image without overlap give every point to exactly one core (the
        ownership rule of tiled and whole-slide inference).

    Raises
    ------
    ValueError
        If ``points`` is not (N, 2) or ``window`` is not four integers with
        ``y0 <= y1`` and ``x0 <= x1``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    if len(window) != 4:
        raise ValueError(f"window must be (y0, x0, y1, x1), got {window!r}")
    try:
        y0, x0, y1, x1 = (operator.index(v) for v in window)
    except TypeError:
        raise ValueError(f"window must hold integers (y0, x0, y1, x1), got {window!r}") from None
    if y1 < y0 or x1 < x0:
        raise ValueError(f"window (y0, x0, y1, x1) must have y0 <= y1 and x0 <= x1, got {window!r}")
    col = np.floor(pts[:, 0] + 0.5)
    row = np.floor(pts[:, 1] + 0.5)
    return (row >= y0) & (row < y1) & (col >= x0) & (col < x1)


def filter_points_in_window(points: Any, window: tuple[int, int, int, int]) -> np.ndarray:
    """The points whose pixel lies in a half-open window (see :func:`points_in_window`).

    Parameters
    ----------
    points : (N, 2) array_like of float
        (x, y) points, 0-based pixel centres.
    window : (y0, x0, y1, x1) ints
        Half-open window in the same frame.

    Returns
    -------
    (K, 2) float64 ndarray
        The kept points, in input order. To filter scores or classes alike,
        index them with :func:`points_in_window`'s mask.
    """
    pts = np.asarray(points, dtype=np.float64)
    mask = points_in_window(pts, window)
    return pts.reshape(-1, 2)[mask]


# =============================================================================
# Instances: probability map -> label image, outlines, measurements
# =============================================================================
#
# Label images are (H, W) int32 arrays, 0 = background. Connectivity is 8
# (diagonal neighbours touch) throughout: components, watershed flooding and
# outlines agree on what one object is.


def _check_label_image(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be an (H, W) label image, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"labels must hold integers, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"labels must be >= 0, got {arr.min()}")
    return arr


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
    """Renumber labels 1..K in raster order of their first pixel (top row first)."""
    flat = labels.ravel()
    values, first = np.unique(flat, return_index=True)
    keep = values != 0
    values, first = values[keep], first[keep]
    lookup = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.int32)
    lookup[values[np.argsort(first)]] = np.arange(1, values.size + 1, dtype=np.int32)
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


def label_outlines(labels: Any) -> list[np.ndarray]:
    """Outline of every instance, as an (x, y) polygon.

    Parameters
    ----------
    labels : (H, W) array_like of int
        Label image, 0 = background.

    Returns
    -------
    list of (K, 2) ndarray of float64
        One polygon per label, in ascending label order (the order of
        :func:`label_measurements`). Vertices are (x, y) = (col, row), 0-based
        pixel centres, on the boundary between the instance's pixels and the
        rest (``skimage.measure.find_contours`` at level 0.5, so a vertex lies
        half a pixel from a boundary pixel's centre). The ring is closed
        implicitly: the last vertex is a neighbour of the first and is not
        repeated (:func:`nucleikit.export.qupath_features` closes it). Rasterising
        it again (:func:`nucleikit.io.labels.polygons_to_labels`) gives back
        the instance (for instances without holes).

    Notes
    -----
    Each region is traced inside its own bounding box (``regionprops``),
    padded by one background pixel so that outlines close at the image edge;
    no loop over labels touches the whole image. Foreground is taken
    8-connected (``fully_connected="high"``). An instance in several pieces
    gives the outline of its largest piece; holes are ignored.
    """
    from skimage.measure import find_contours, regionprops

    arr = _check_label_image(labels)
    outlines = []
    for region in regionprops(arr):
        row0, col0 = region.bbox[0], region.bbox[1]
        mask = np.pad(region.image, 1).astype(np.float64)
        contours = find_contours(mask, level=0.5, fully_connected="high")
        ring = max(contours, key=_enclosed_area)
        if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
            ring = ring[:-1]
        outlines.append(np.column_stack([ring[:, 1] + (col0 - 1), ring[:, 0] + (row0 - 1)]))
    return outlines


def _enclosed_area(ring: np.ndarray) -> float:
    """Area enclosed by a (K, 2) ring (shoelace formula), unsigned."""
    y, x = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def label_measurements(labels: Any, image: Any = None) -> dict[str, np.ndarray]:
    """Per-instance measurements (``skimage.measure.regionprops_table``).

    Parameters
    ----------
    labels : (H, W) array_like of int
        Label image, 0 = background.
    image : (H, W) or (H, W, C) array_like of float, optional
        Intensities for ``mean_intensity``.

    Returns
    -------
    dict of (N,) ndarray
        One entry per label, ascending label order:

        - ``label`` (int32);
        - ``x``, ``y`` (float64): centroid, 0-based pixel-centre coordinates
          (x = column, y = row);
        - ``area`` (int64): pixels;
        - ``mean_intensity`` (float64; (N, C) for a C-channel image): only
          when ``image`` is given.

    Raises
    ------
    ValueError
        ``labels`` not a 2-D non-negative integer image; ``image`` of another
        height and width.
    """
    from skimage.measure import regionprops_table

    arr = _check_label_image(labels)
    properties = ["label", "centroid", "area"]
    intensity = None
    if image is not None:
        intensity = np.asarray(image, dtype=np.float64)
        if intensity.ndim not in (2, 3) or intensity.shape[:2] != arr.shape:
            raise ValueError(f"image must be (H, W) or (H, W, C) with (H, W) = {arr.shape}, got {intensity.shape}")
        properties.append("intensity_mean")
    table = regionprops_table(arr, intensity_image=intensity, properties=properties)
    result = {
        "label": np.asarray(table["label"], dtype=np.int32),
        "x": np.asarray(table["centroid-1"], dtype=np.float64),
        "y": np.asarray(table["centroid-0"], dtype=np.float64),
        "area": np.asarray(table["area"], dtype=np.int64),
    }
    if intensity is not None:
        if intensity.ndim == 2:
            result["mean_intensity"] = np.asarray(table["intensity_mean"], dtype=np.float64)
        else:
            columns = [table[f"intensity_mean-{c}"] for c in range(intensity.shape[2])]
            result["mean_intensity"] = np.column_stack(columns).astype(np.float64).reshape(-1, intensity.shape[2])
    return result
