"""Detection metrics on points, as defined in PROTOCOL.md "Detection matching".

:func:`match_points` pairs predicted and true nucleus centres one-to-one
within a radius (the most pairs, then the least total distance);
:func:`detection_scores`, :func:`evaluate_points` and
:func:`precision_recall_curve` turn matchings into precision, recall, F1 and
ED, pooled over images and per image.

Points are (N, 2) float64 arrays of (x, y), 0-based pixel centres, x to the
right, y down; distances are Euclidean, in pixels. This module never imports
torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ._common import _check_same_length, _nan_to_none

__all__ = [
    "PointMatch",
    "match_points",
    "DetectionScores",
    "detection_scores",
    "DetectionReport",
    "evaluate_points",
    "precision_recall_curve",
]


# =============================================================================
# Detection: point matching
# =============================================================================


@dataclass(frozen=True, eq=False)
class PointMatch:
    """One-to-one pairing of predicted and true points of one image.

    Attributes
    ----------
    pred_index : (K,) intp ndarray
        Row of each paired prediction in the ``pred`` array, ascending.
    truth_index : (K,) intp ndarray
        Row of the truth point paired with ``pred_index[k]``.
    distances : (K,) float64 ndarray
        Euclidean distance of each pair in pixels; every value is ``<= radius``.
    n_pred, n_truth : int
        Number of predicted and true points given to the matching (paired or not).

    Notes
    -----
    The arrays are read-only. Equality is identity (arrays do not compare as a
    single bool); compare the fields instead.
    """

    pred_index: np.ndarray
    truth_index: np.ndarray
    distances: np.ndarray
    n_pred: int
    n_truth: int

    @property
    def tp(self) -> int:
        """Paired predictions (true positives)."""
        return int(self.pred_index.shape[0])

    @property
    def fp(self) -> int:
        """Unpaired predictions (false positives)."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """Unpaired truth points (false negatives)."""
        return self.n_truth - self.tp


def _as_points(points: Any) -> np.ndarray:
    """(N, 2) float64 view of ``points``; an empty input of any shape becomes (0, 2).

    Shape errors are raised by the caller, which knows both arrays.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2)
    return pts


def _check_pair(pred: Any, truth: Any, radius: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Validate the inputs of :func:`match_points` once, at the boundary."""
    p, t = _as_points(pred), _as_points(truth)
    if p.ndim != 2 or p.shape[1] != 2 or t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(
            f"pred and truth must have shape (N, 2) and (M, 2), got pred {p.shape} and truth {t.shape}"
        )
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError(
            f"pred {p.shape} and truth {t.shape} must hold finite coordinates (found NaN or inf)"
        )
    r = float(radius)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"radius must be a positive finite number of pixels, got {radius!r}")
    return p, t, r


def _candidate_pairs(
    pred: np.ndarray, truth: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pred, truth) pairs at distance ``<= radius``.

    Returns
    -------
    i, j : (E,) intp ndarray
        Rows in ``pred`` and ``truth``.
    d : (E,) float64 ndarray
        Their distances, computed as ``np.hypot(dx, dy)`` so that the ``<= radius``
        test does not depend on the k-d tree's own rounding.
    """
    empty = (np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, np.float64))
    if len(pred) == 0 or len(truth) == 0:
        return empty
    # Query a hair wider than r, then apply the exact test below: a pair at
    # exactly r must not be lost to the tree's rounding.
    found = cKDTree(pred).sparse_distance_matrix(
        cKDTree(truth), radius * (1.0 + 1e-9), output_type="ndarray"
    )
    i = found["i"].astype(np.intp)
    j = found["j"].astype(np.intp)
    delta = pred[i] - truth[j]
    d = np.hypot(delta[:, 0], delta[:, 1])
    keep = d <= radius
    return i[keep], j[keep], d[keep]


def _solve_component(
    i: np.ndarray, j: np.ndarray, d: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Most pairs, then least total distance, among the feasible edges (i, j, d)."""
    rows, local_i = np.unique(i, return_inverse=True)
    cols, local_j = np.unique(j, return_inverse=True)
    k = min(len(rows), len(cols))
    # A forbidden pair costs more than any set of k feasible pairs (each <= r),
    # so the assignment first minimises the number of forbidden pairs (i.e.
    # maximises feasible ones), then the total feasible distance.
    forbidden = 2.0 * radius * k + 1.0
    cost = np.full((len(rows), len(cols)), forbidden)
    cost[local_i, local_j] = d
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < forbidden
    return rows[r[ok]], cols[c[ok]], cost[r[ok], c[ok]]


def _solve_matching(
    i: np.ndarray, j: np.ndarray, d: np.ndarray, n_pred: int, n_truth: int, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal matching over the feasible edges, one connected component at a time.

    Components of the bipartite graph of feasible pairs are independent, so the
    optimum over the whole graph is the union of the optima of the components.
    Solving them apart keeps each assignment small (whole slides have many
    thousands of points but components of a handful).
    """
    if len(i) == 0:
        return i, j, d
    graph = coo_matrix(
        (np.ones(len(i), dtype=np.int8), (i, j + n_pred)), shape=(n_pred + n_truth,) * 2
    )
    _, label = connected_components(graph, directed=False)
    comp = label[i]
    order = np.argsort(comp, kind="stable")
    comp_sorted = comp[order]
    starts = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])
    counts = np.diff(np.r_[starts, len(comp_sorted)])

    # A component with one edge is one pair: take all of them at once.
    single = order[starts[counts == 1]]
    out_i, out_j, out_d = [i[single]], [j[single]], [d[single]]
    for start, count in zip(starts[counts > 1], counts[counts > 1]):
        edges = order[start : start + count]
        ci, cj, cd = _solve_component(i[edges], j[edges], d[edges], radius)
        out_i.append(ci)
        out_j.append(cj)
        out_d.append(cd)
    pi, ti, dist = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)
    by_pred = np.argsort(pi, kind="stable")
    return pi[by_pred], ti[by_pred], dist[by_pred]


def _make_match(
    pi: np.ndarray, ti: np.ndarray, dist: np.ndarray, n_pred: int, n_truth: int
) -> PointMatch:
    arrays = [np.asarray(pi, np.intp), np.asarray(ti, np.intp), np.asarray(dist, np.float64)]
    for a in arrays:
        a.setflags(write=False)
    return PointMatch(*arrays, n_pred=int(n_pred), n_truth=int(n_truth))


def match_points(pred: Any, truth: Any, radius: float) -> PointMatch:
    """Pair predicted with true points one-to-one, as PROTOCOL.md "Detection matching".

    A prediction and a truth point may pair when their Euclidean distance is
    ``<= radius``. Among all one-to-one pairings the result has the **most
    pairs** and, among those, the **least total distance**.

    Parameters
    ----------
    pred : (N, 2) array_like of float
        Predicted centres (x, y), 0-based pixel centres. An empty input (``[]``,
        shape (0,) or (0, 2)) means no predictions.
    truth : (M, 2) array_like of float
        True centres, same convention.
    radius : float
        Matching radius in pixels, > 0.

    Returns
    -------
    PointMatch
        Pairs sorted by prediction index. ``tp``, ``fp`` and ``fn`` follow.

    Raises
    ------
    ValueError
        If a shape is not (N, 2) (the message gives both shapes), a coordinate is
        not finite, or ``radius`` is not a positive finite number.

    Notes
    -----
    Implemented as a linear assignment (``scipy.optimize.linear_sum_assignment``)
    whose pairs longer than ``radius`` cost more than any feasible total; those
    pairs are discarded afterwards. (Hungarian assignment on raw distances
    followed by dropping long pairs can lose pairs and is wrong.) The graph of
    feasible pairs is split into connected components, each solved apart: the
    same optimum, at a fraction of the cost on large images.

    When several matchings are optimal (exact ties), one of them is returned;
    which one is deterministic for a given input but otherwise unspecified.
    Duplicated points are ordinary points: two predictions on one truth point
    give one TP and one FP.

    Examples
    --------
    >>> m = match_points([(6.37, 2.70), (0.41, 0.17)], [(8.13, 9.13), (6.07, 7.29)], 5)
    >>> m.tp, m.fp, m.fn
    (1, 1, 1)
    """
    p, t, r = _check_pair(pred, truth, radius)
    i, j, d = _candidate_pairs(p, t, r)
    pi, ti, dist = _solve_matching(i, j, d, len(p), len(t), r)
    return _make_match(pi, ti, dist, len(p), len(t))


# =============================================================================
# Detection: scores
# =============================================================================


@dataclass(frozen=True)
class DetectionScores:
    """Detection counts and scores.

    Attributes
    ----------
    tp, fp, fn : int
        Paired predictions, unpaired predictions, unpaired truth points.
    precision, recall, f1 : float
        ``P = TP/(TP+FP)``, ``R = TP/(TP+FN)``, ``F1 = 2PR/(P+R)``. Where a
        ratio is 0/0: with no predictions, P is 1.0 if there is no truth either
        and 0.0 otherwise; with no truth, R is 1.0 if there are no predictions
        either and 0.0 otherwise; F1 is 0.0 when P + R = 0. So an image with
        nothing to find and nothing found scores P = R = F1 = 1.
    ed : float
        Mean distance of the TP pairs in pixels; NaN when there is no TP.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ed: float

    def to_dict(self) -> dict[str, int | float | None]:
        """Plain, JSON-serialisable dict (NaN ``ed`` becomes None)."""
        return {
            "tp": int(self.tp),
            "fp": int(self.fp),
            "fn": int(self.fn),
            "precision": float(self.precision),
            "recall": float(self.recall),
            "f1": float(self.f1),
            "ed": _nan_to_none(self.ed),
        }


def _scores_from_counts(tp: int, fp: int, fn: int, distance_sum: float) -> DetectionScores:
    """Apply the definitions (and the 0/0 rules) of :class:`DetectionScores`."""
    precision = tp / (tp + fp) if tp + fp > 0 else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn > 0 else (1.0 if fp == 0 else 0.0)
    # 2PR/(P+R) equals 2TP/(2TP+FP+FN) whenever TP > 0; the count form is one
    # rounding instead of four.
    if tp > 0:
        f1 = 2 * tp / (2 * tp + fp + fn)
    elif precision + recall > 0:  # only when there is nothing at all: P = R = 1
        f1 = 2 * precision * recall / (precision + recall)
    else:
        f1 = 0.0
    ed = distance_sum / tp if tp > 0 else math.nan
    return DetectionScores(
        tp=int(tp), fp=int(fp), fn=int(fn),
        precision=float(precision), recall=float(recall), f1=float(f1), ed=float(ed),
    )


def detection_scores(matches: Sequence[PointMatch]) -> DetectionScores:
    """Pooled scores of several images.

    Parameters
    ----------
    matches : sequence of PointMatch
        One matching per image (all with the same radius).

    Returns
    -------
    DetectionScores
        TP, FP and FN summed over the images first, then P, R and F1 from the
        sums; ED is the mean distance over all TP pairs of all images (not the
        mean of per-image EDs).

    Raises
    ------
    ValueError
        If ``matches`` is empty (scores of no images are undefined, and the 0/0
        rule would otherwise report a perfect F1).
    """
    if len(matches) == 0:
        raise ValueError("detection_scores needs at least one PointMatch, got none")
    tp = sum(m.tp for m in matches)
    fp = sum(m.fp for m in matches)
    fn = sum(m.fn for m in matches)
    distance_sum = float(sum(float(m.distances.sum()) for m in matches))
    return _scores_from_counts(tp, fp, fn, distance_sum)


@dataclass(frozen=True)
class DetectionReport:
    """Detection scores of a set of images.

    Attributes
    ----------
    radius : float
        Matching radius in pixels.
    pooled : DetectionScores
        Counts summed over images, then scored (PROTOCOL.md's headline figure).
    per_image : tuple of DetectionScores
        One entry per image, in input order.
    mean_f1 : float
        Mean of the per-image F1 (differs from ``pooled.f1`` in general).
    matches : tuple of PointMatch
        The matching of each image (e.g. for type accuracy over TP pairs);
        left out of :meth:`to_dict`.
    """

    radius: float
    pooled: DetectionScores
    per_image: tuple[DetectionScores, ...]
    mean_f1: float
    matches: tuple[PointMatch, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict: radius, n_images, pooled, mean_f1, per_image."""
        return {
            "radius": float(self.radius),
            "n_images": len(self.per_image),
            "pooled": self.pooled.to_dict(),
            "mean_f1": float(self.mean_f1),
            "per_image": [s.to_dict() for s in self.per_image],
        }


def evaluate_points(preds: Sequence[Any], truths: Sequence[Any], radius: float) -> DetectionReport:
    """Match and score the predictions of several images.

    Parameters
    ----------
    preds, truths : sequence of (N_i, 2) array_like of float
        Predicted and true centres (x, y) of each image, 0-based pixel centres.
    radius : float
        Matching radius in pixels (PROTOCOL.md: 6 px on CRCHisto, 16 px at 40x).

    Returns
    -------
    DetectionReport

    Raises
    ------
    ValueError
        If the sequences differ in length or are empty, or as :func:`match_points`.
    """
    _check_same_length("preds", preds, "truths", truths)
    matches = tuple(match_points(p, t, radius) for p, t in zip(preds, truths))
    per_image = tuple(detection_scores([m]) for m in matches)
    return DetectionReport(
        radius=float(radius),
        pooled=detection_scores(matches),
        per_image=per_image,
        mean_f1=float(np.mean([s.f1 for s in per_image])),
        matches=matches,
    )


# =============================================================================
# Detection: precision-recall curve
# =============================================================================


def precision_recall_curve(
    preds: Sequence[Any],
    scores: Sequence[Any],
    truths: Sequence[Any],
    radius: float,
    thresholds: Any,
) -> dict[str, np.ndarray]:
    """Pooled precision, recall and F1 as the score threshold sweeps.

    For each threshold ``t`` the predictions with ``score >= t`` are matched
    again (the optimal matching of a subset is not a subset of the optimal
    matching) and the counts are pooled over the images.

    Parameters
    ----------
    preds : sequence of (N_i, 2) array_like of float
        Predicted centres (x, y) per image, 0-based pixel centres.
    scores : sequence of (N_i,) array_like of float
        Score of each prediction (e.g. the probability at the peak).
    truths : sequence of (M_i, 2) array_like of float
        True centres per image.
    radius : float
        Matching radius in pixels.
    thresholds : (T,) array_like of float
        Score thresholds, in any order; they are sorted ascending.

    Returns
    -------
    dict of (T,) ndarray
        ``thresholds`` (float64, ascending), ``precision``, ``recall``, ``f1``
        (float64) and ``tp``, ``fp``, ``fn`` (int64), row k for
        ``thresholds[k]``. Scores follow :class:`DetectionScores` (including
        its 0/0 rules).

    Raises
    ------
    ValueError
        On mismatched lengths or shapes, NaN scores or thresholds, or as
        :func:`match_points`.

    Notes
    -----
    Candidate pairs (the k-d tree query) are computed once per image; each
    threshold only re-solves the assignment on the edges of the kept
    predictions, and a threshold that keeps the same predictions as the
    previous one reuses its result.
    """
    _check_same_length("preds", preds, "truths", truths)
    _check_same_length("preds", preds, "scores", scores)
    thr = np.sort(np.asarray(thresholds, dtype=np.float64).reshape(-1))
    if thr.size == 0 or np.isnan(thr).any():
        raise ValueError(f"thresholds must be a non-empty array without NaN, got {np.asarray(thresholds)!r}")

    tp = np.zeros(thr.size, np.int64)
    fp = np.zeros(thr.size, np.int64)
    fn = np.zeros(thr.size, np.int64)
    for pred, score, truth in zip(preds, scores, truths):
        p, t, r = _check_pair(pred, truth, radius)
        s = np.asarray(score, dtype=np.float64)
        if s.size == 0:
            s = s.reshape(0)
        if s.shape != (p.shape[0],):
            raise ValueError(f"scores must have shape (N,) matching pred {p.shape}, got scores {s.shape}")
        if np.isnan(s).any():
            raise ValueError("scores must not contain NaN")
        i, j, d = _candidate_pairs(p, t, r)
        # The kept set only shrinks as t grows: its size identifies it.
        n_kept = p.shape[0] - np.searchsorted(np.sort(s), thr, side="left")
        cached: dict[int, int] = {}
        for k, (t_k, n_k) in enumerate(zip(thr, n_kept)):
            if n_k not in cached:
                keep = s[i] >= t_k
                pi, _, _ = _solve_matching(i[keep], j[keep], d[keep], p.shape[0], t.shape[0], r)
                cached[n_k] = len(pi)
            tp[k] += cached[n_k]
            fp[k] += n_k - cached[n_k]
            fn[k] += t.shape[0] - cached[n_k]

    rows = [_scores_from_counts(int(a), int(b), int(c), 0.0) for a, b, c in zip(tp, fp, fn)]
    return {
        "thresholds": thr,
        "precision": np.array([s.precision for s in rows], dtype=np.float64),
        "recall": np.array([s.recall for s in rows], dtype=np.float64),
        "f1": np.array([s.f1 for s in rows], dtype=np.float64),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }
