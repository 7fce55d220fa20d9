"""Choosing the detection threshold xi and the peak distance on validation images.

The maps are computed once; for each peak distance the peaks are found once at
the lowest threshold of the grid, and each xi then only filters them by score
(peaks above xi * max are a subset of the peaks above a lower threshold, since
non-maximum suppression only ever removes a peak in favour of a higher one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..metrics import match_points
from ..postprocess import find_peaks

__all__ = ["TuningResult", "tune_peaks"]


@dataclass(frozen=True)
class TuningResult:
    """Best post-processing values and the F1 table they were picked from.

    Attributes
    ----------
    threshold_rel, min_distance : float
        Best xi and peak distance (model pixels).
    f1, precision, recall : float
        Pooled validation figures at the best values.
    table : list of dict
        One row per (min_distance, xi) with pooled tp, fp, fn, precision, recall, f1.
    """

    threshold_rel: float
    min_distance: float
    f1: float
    precision: float
    recall: float
    table: list[dict]


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    r = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def tune_peaks(
    maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    *,
    radius: float,
    xi_grid: Sequence[float],
    min_distance_grid: Sequence[float],
) -> TuningResult:
    """Grid search of (xi, min_distance) maximising pooled F1.

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

    Returns
    -------
    TuningResult
        Ties are broken towards the smaller xi and then the smaller distance
        (the grids are scanned in ascending order and only a strictly better F1
        replaces the best).
    """
    xis = sorted(float(x) for x in xi_grid)
    table: list[dict] = []
    best: tuple[float, float, float, float, float] | None = None
    for md in sorted(float(m) for m in min_distance_grid):
        candidates = []
        for prob in maps:
            pmax = float(prob.max()) if prob.size else 0.0
            if pmax <= 0:
                candidates.append((np.zeros((0, 2)), np.zeros(0), pmax))
                continue
            xy, sc = find_peaks(prob, min_distance=md, threshold=xis[0] * pmax)
            candidates.append((xy, sc, pmax))
        for xi in xis:
            tp = fp = fn = 0
            for (xy, sc, pmax), truth in zip(candidates, truths):
                keep = sc > xi * pmax if pmax > 0 else np.zeros(len(sc), bool)
                m = match_points(xy[keep], truth, radius)
                tp += m.tp
                fp += m.fp
                fn += m.fn
            p, r, f = _prf(tp, fp, fn)
            table.append(
                {"min_distance": md, "threshold_rel": xi, "tp": tp, "fp": fp, "fn": fn,
                 "precision": p, "recall": r, "f1": f}
            )
            if best is None or f > best[0]:
                best = (f, p, r, xi, md)
    assert best is not None, "xi_grid and min_distance_grid must not be empty"
    f, p, r, xi, md = best
    return TuningResult(threshold_rel=xi, min_distance=md, f1=f, precision=p, recall=r, table=table)
