"""Peaks and points: nucleus centres from a dense map, thresholds, tile ownership.

:func:`find_peaks` turns a probability (or proximity / density) map into
nucleus centres, :func:`relative_threshold` gives the threshold ``xi * max``
used by the detectors of Xing et al. 2019 and Alom et al. 2022,
:func:`peak_threshold` combines it with the absolute floor ``threshold_abs``
(the one rule every detection path applies: arrays, tiles, slides, tuning),
and :func:`points_in_window` / :func:`filter_points_in_window` apply the
ownership rule of tiled inference (each peak belongs to the one tile whose
core holds its pixel).

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
