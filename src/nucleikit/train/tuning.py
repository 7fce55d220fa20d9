"""Choosing the detection threshold xi, the peak distance and the absolute floor on validation images.

Two steps, both on the validation images' maps:

1. **xi and the peak distance**: the grid pair of highest pooled F1 (as before the floor
   existed; ties towards the smaller xi, then the smaller distance).
2. **The absolute floor** ``threshold_abs`` (map units): the largest grid value that costs
   at most ``tolerance`` of (a) the F1 at the chosen xi and distance and (b) the recall at
   the **lowest xi of the grid**, i.e. of every nucleus the map can find at all.

Why not the floor of highest F1, or a joint grid? On the validation images the relative
rule already decides; a floor only stops a map without nuclei (a blank tile, whose maximum
is itself background) from filling with detections. The F1 at the tuned xi is blind to
everything below ``xi * max``, so on CRCHisto it lets the floor climb to about half the map
maximum, where it drops the fainter nuclei of other organs and labs (measured on MoNuSeg:
MicroNet F1 0.752 -> 0.699 at a floor of 0.35, and a lower xi, which transfers better, can no
longer help). Criterion (b) keeps every nucleus any xi of the grid could keep, so a user who
lowers xi for fainter staining still finds them.

The maps are computed once; for each peak distance the peaks are found once at the lowest
threshold of the grid, and each (xi, floor) then only filters them by score (peaks above a
higher threshold are a subset of the peaks above a lower one, since non-maximum suppression
only ever removes a peak in favour of a higher one;
:func:`~nucleikit.postprocess.find_peaks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..metrics import match_points
from ..postprocess import find_peaks, peak_threshold

__all__ = ["FLOOR_GRID", "FLOOR_TOLERANCE", "FloorResult", "TuningResult", "prf_from_counts", "score_grid",
           "tune_floor", "tune_peaks"]

#: Absolute floors tried (map units): 0, then 1e-3 to 1 in steps of 12 % (3 significant
#: digits), fine enough at the small values where density maps put background.
FLOOR_GRID: tuple[float, ...] = (0.0, *(float(f"{v:.3g}") for v in np.geomspace(1e-3, 1.0, 61)))

#: Largest loss of validation F1 (at the tuned xi) and of recall (at the lowest xi) a floor may cost.
FLOOR_TOLERANCE = 0.002


@dataclass(frozen=True)
class TuningResult:
    """Best post-processing values and the tables they were picked from.

    Attributes
    ----------
    threshold_rel, min_distance : float
        Best xi and peak distance (model pixels).
    f1, precision, recall : float
        Pooled validation figures at the chosen xi, distance and floor.
    table : list of dict
        One row per (min_distance, xi), floor 0, with pooled tp, fp, fn, precision, recall, f1.
    threshold_abs : float
        Chosen absolute floor (map units); 0 when the floor grid is ``(0,)``.
    floor_table : list of dict
        One row per floor tried at the chosen xi and distance: ``threshold_abs``, the pooled
        figures there (``f1`` ...), and ``recall_lowest_xi``, the recall at the grid's lowest xi.
    """

    threshold_rel: float
    min_distance: float
    f1: float
    precision: float
    recall: float
    table: list[dict]
    threshold_abs: float = 0.0
    floor_table: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class FloorResult:
    """The absolute floor chosen for a given xi and peak distance (step 2).

    Attributes
    ----------
    threshold_abs : float
        The largest floor within the tolerance (map units).
    f1, precision, recall : float
        Pooled validation figures at the given xi and distance with that floor.
    table : list of dict
        One row per floor tried (see :attr:`TuningResult.floor_table`).
    """

    threshold_abs: float
    f1: float
    precision: float
    recall: float
    table: list[dict]


def tune_floor(
    maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    *,
    radius: float,
    xi: float,
    min_distance: float,
    lowest_xi: float,
    threshold_abs_grid: Sequence[float] = FLOOR_GRID,
    tolerance: float = FLOOR_TOLERANCE,
) -> FloorResult:
    """Step 2 alone: the absolute floor for an xi and a peak distance already chosen.

    For weights whose xi must stay as it is (e.g. adding a floor to shipped weights).

    Parameters
    ----------
    maps, truths, radius
        As :func:`tune_peaks`.
    xi, min_distance : float
        The tuned relative threshold and peak distance.
    lowest_xi : float
        The lowest xi of the grid xi was chosen from (criterion (b)); <= ``xi``.
    threshold_abs_grid : sequence of float
        Candidate floors (map units, >= 0); 0 is always tried.
    tolerance : float
        Largest loss of F1 (at ``xi``) and of recall (at ``lowest_xi``).

    Returns
    -------
    FloorResult
    """
    if not 0.0 <= lowest_xi <= xi:
        raise ValueError(f"lowest_xi must lie in [0, xi = {xi}], got {lowest_xi}")
    floors = _check_floors(threshold_abs_grid)
    candidates = _candidates(maps, min_distance, lowest_xi)
    _, _, f1_at_zero = prf_from_counts(*_counts(candidates, truths, radius, xi, 0.0))
    floor, (p, r, f), rows = _tune_floor(candidates, truths, radius, xi, lowest_xi, sorted({0.0, *floors}),
                                         tolerance, f1_at_zero)
    return FloorResult(threshold_abs=floor, f1=f, precision=p, recall=r, table=rows)


def score_grid(
    maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    *,
    radius: float,
    min_distance_grid: Sequence[float],
    xi_grid: Sequence[float],
    threshold_abs_grid: Sequence[float] = (0.0,),
) -> list[dict]:
    """Pooled figures of every (peak distance, xi, floor) of the grids, peaks found once per distance.

    The raw table behind a threshold rule: e.g. the relative rule alone (floors ``(0,)``),
    an absolute threshold alone (xis ``(0,)``), or both; used to ask which rule, tuned on
    some data sets, transfers to another.

    Parameters
    ----------
    maps, truths, radius
        As :func:`tune_peaks`.
    min_distance_grid, xi_grid : sequences of float
        Peak distances (model pixels) and relative thresholds in [0, 1].
    threshold_abs_grid : sequence of float
        Absolute floors (map units, >= 0).

    Returns
    -------
    list of dict
        One row per combination: ``min_distance``, ``threshold_rel``, ``threshold_abs``,
        pooled ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``.
    """
    xis = sorted(float(x) for x in xi_grid)
    mds = sorted(float(m) for m in min_distance_grid)
    floors = _check_floors(threshold_abs_grid)
    if not xis or not mds:
        raise ValueError("xi_grid and min_distance_grid must not be empty")
    rows = []
    for md in mds:
        candidates = _candidates(maps, md, xis[0])
        for xi in xis:
            for floor in floors:
                tp, fp, fn = _counts(candidates, truths, radius, xi, floor)
                p, r, f = prf_from_counts(tp, fp, fn)
                rows.append({"min_distance": md, "threshold_rel": xi, "threshold_abs": floor, "tp": tp, "fp": fp,
                             "fn": fn, "precision": p, "recall": r, "f1": f})
    return rows


def _check_floors(grid: Sequence[float]) -> list[float]:
    floors = sorted(float(t) for t in grid)
    if not floors:
        raise ValueError("threshold_abs_grid must not be empty")
    if not all(np.isfinite(t) and t >= 0 for t in floors):
        raise ValueError(f"threshold_abs_grid must hold finite numbers >= 0, got {floors}")
    return floors


def prf_from_counts(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of pooled counts; 1 where nothing was to find and nothing was found."""
    p = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    r = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


# (xy (N, 2), scores (N,) float32, map max) of one validation image
_Candidates = tuple[np.ndarray, np.ndarray, float]


def _candidates(maps: Sequence[np.ndarray], md: float, xi: float) -> list[_Candidates]:
    """Peaks of each map above ``xi * max`` (the lowest threshold any setting uses)."""
    out = []
    for prob in maps:
        pmax = float(prob.max()) if prob.size else 0.0
        if pmax <= 0:
            out.append((np.zeros((0, 2)), np.zeros(0, np.float32), pmax))
            continue
        xy, sc = find_peaks(prob, min_distance=md, threshold=xi * pmax)
        out.append((xy, sc, pmax))
    return out


def _counts(candidates: list[_Candidates], truths: Sequence[np.ndarray], radius: float, xi: float,
            floor: float) -> tuple[int, int, int]:
    """Pooled (tp, fp, fn) of the candidates kept by :func:`peak_threshold` (float32 comparison, as the map)."""
    tp = fp = fn = 0
    for (xy, sc, pmax), truth in zip(candidates, truths):
        keep = sc > np.float32(peak_threshold(pmax, xi=xi, threshold_abs=floor))
        m = match_points(xy[keep], truth, radius)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return tp, fp, fn


def tune_peaks(
    maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    *,
    radius: float,
    xi_grid: Sequence[float],
    min_distance_grid: Sequence[float],
    threshold_abs_grid: Sequence[float] = (0.0,),
    tolerance: float = FLOOR_TOLERANCE,
) -> TuningResult:
    """Grid search of (xi, min_distance) maximising pooled F1, then the absolute floor (module docstring).

    Parameters
    ----------
    maps : sequence of (H, W) float arrays
        Probability maps at the model's resolution, one per validation image.
    truths : sequence of (M, 2) float arrays
        True centres (x, y) in the same pixel coordinates as the maps.
    radius : float
        Matching radius in pixels of the maps.
    xi_grid, min_distance_grid : sequences of float
        Candidate relative thresholds and peak distances.
    threshold_abs_grid : sequence of float
        Candidate absolute floors (map units, >= 0). The default ``(0,)`` tunes no floor.
    tolerance : float
        Largest loss of F1 (at the chosen xi) and of recall (at the lowest xi) a floor may cost.

    Returns
    -------
    TuningResult
        Ties in step 1 are broken towards the smaller xi and then the smaller distance
        (the grids are scanned in ascending order and only a strictly better F1 replaces
        the best); step 2 takes the largest floor within the tolerance.

    Raises
    ------
    ValueError
        An empty grid, a negative or non-finite floor.
    """
    xis = sorted(float(x) for x in xi_grid)
    mds = sorted(float(m) for m in min_distance_grid)
    floors = _check_floors(threshold_abs_grid)
    if not xis or not mds:
        raise ValueError("xi_grid and min_distance_grid must not be empty")
    table: list[dict] = []
    best: tuple[float, float, float, float, float] | None = None
    per_md: dict[float, list[_Candidates]] = {}
    for md in mds:
        per_md[md] = candidates = _candidates(maps, md, xis[0])
        for xi in xis:
            tp, fp, fn = _counts(candidates, truths, radius, xi, 0.0)
            p, r, f = prf_from_counts(tp, fp, fn)
            table.append(
                {"min_distance": md, "threshold_rel": xi, "tp": tp, "fp": fp, "fn": fn,
                 "precision": p, "recall": r, "f1": f}
            )
            if best is None or f > best[0]:
                best = (f, p, r, xi, md)
    assert best is not None
    f, p, r, xi, md = best
    floor, floor_table = 0.0, []
    if floors != [0.0]:
        floor, (p, r, f), floor_table = _tune_floor(per_md[md], truths, radius, xi, xis[0], floors, tolerance, f)
    return TuningResult(threshold_rel=xi, min_distance=md, f1=f, precision=p, recall=r, table=table,
                        threshold_abs=floor, floor_table=floor_table)


def _tune_floor(candidates: list[_Candidates], truths: Sequence[np.ndarray], radius: float, xi: float,
                lowest_xi: float, floors: list[float], tolerance: float, f1_at_zero: float
                ) -> tuple[float, tuple[float, float, float], list[dict]]:
    """(floor, its (P, R, F1) at ``xi``, table): the largest floor within ``tolerance`` (step 2).

    Recall at a fixed xi never rises with the floor (a maximum matching of fewer predictions
    has no more pairs), so the scan stops at the first floor that breaks criterion (b).
    """
    _, base_recall, _ = prf_from_counts(*_counts(candidates, truths, radius, lowest_xi, 0.0))
    chosen, chosen_figures, rows = 0.0, (0.0, 0.0, 0.0), []
    for floor in sorted({0.0, *floors}):  # floor 0 costs nothing: it always qualifies
        _, low_recall, _ = prf_from_counts(*_counts(candidates, truths, radius, lowest_xi, floor))
        tp, fp, fn = _counts(candidates, truths, radius, xi, floor)
        p, r, f = prf_from_counts(tp, fp, fn)
        rows.append({"threshold_abs": floor, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f,
                     "recall_lowest_xi": low_recall})
        if low_recall < base_recall - tolerance:
            break
        if f >= f1_at_zero - tolerance:
            chosen, chosen_figures = floor, (p, r, f)
    return chosen, chosen_figures, rows
