"""Evaluation metrics, as defined in PROTOCOL.md.

Sections
--------
* **Detection** (points): :func:`match_points` pairs predicted and true nucleus
  centres one-to-one within a radius (the most pairs, then the least total
  distance); :func:`detection_scores`, :func:`evaluate_points` and
  :func:`precision_recall_curve` turn matchings into precision, recall, F1 and
  ED, pooled over images and per image.
* **Segmentation** (label images): :func:`label_overlap` (sparse contingency
  table of two label images), :func:`iou_matrix`, pixel :func:`dice` and
  :func:`iou`, :func:`dsb_score`, :func:`aji`, :func:`panoptic_quality`, all
  at once per image with :func:`segmentation_scores`, and
  :func:`evaluate_segmentation` (means over images, pooled pixel Dice/IoU).
* **Classification**: :func:`classification_report` (accuracy, per-class
  P/R/F1, weighted and macro F1, one-vs-rest ROC AUC and AP, confusion
  matrix), and typed points end to end with :func:`typed_point_scores` /
  :func:`evaluate_typed_points` (F_d, F1 per class, type accuracy).

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

__all__ = [
    "PointMatch",
    "match_points",
    "DetectionScores",
    "detection_scores",
    "DetectionReport",
    "evaluate_points",
    "precision_recall_curve",
    # segmentation
    "DSB_THRESHOLDS",
    "LabelOverlap",
    "SegmentationReport",
    "SegmentationScores",
    "aji",
    "dice",
    "dsb_score",
    "evaluate_segmentation",
    "iou",
    "iou_matrix",
    "label_overlap",
    "panoptic_quality",
    "segmentation_scores",
    # classification
    "average_precision",
    "binary_pr_curve",
    "binary_roc_auc",
    "binary_roc_curve",
    "classification_report",
    "confusion_matrix",
    "evaluate_typed_points",
    "typed_point_scores",
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


def _json_float(value: float) -> float | None:
    """``value`` as a JSON number; NaN (undefined, e.g. ED without TP) becomes None."""
    return None if math.isnan(value) else float(value)


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
            "ed": _json_float(self.ed),
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


def _check_same_length(name_a: str, a: Sequence[Any], name_b: str, b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must hold one entry per image, got {len(a)} and {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{name_a} and {name_b} are empty: there are no images to evaluate")


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


# =============================================================================
# Segmentation: label images
# =============================================================================
#
# Label images are (H, W) arrays of non-negative integers: 0 is background,
# every other value one instance (values need not be consecutive). Every
# instance score starts from one sparse contingency table of the two images
# (:func:`label_overlap`), built from the flattened label pairs with
# np.bincount, never from a loop over instances.

#: IoU thresholds of the DSB score: 0.50, 0.55, ..., 0.95.
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.50 + 0.05 * k, 2) for k in range(10))
# The same thresholds in percent, so that "IoU > t" is decided exactly in
# integers (100 * |G∩S| > p * |G∪S|) rather than on a rounded float ratio.
_DSB_PERCENT = tuple(50 + 5 * k for k in range(10))
# Largest dense table (T + 1) * (P + 1) bincount is used for; above, np.unique.
_DENSE_TABLE_MAX = 1 << 24


def _check_label_image(name: str, labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) label image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"{name} holds negative labels (down to {arr.min()})")
    return arr


def _check_label_pair(truth: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _check_label_image("truth", truth)
    p = _check_label_image("pred", pred)
    if t.shape != p.shape:
        raise ValueError(f"truth and pred must have the same shape, got truth {t.shape} and pred {p.shape}")
    return t, p


def _compact(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renumber labels 1..K in ascending order of value (0 stays 0).

    Returns the K label values, the renumbered image (intp) and the K areas.
    """
    top = int(flat.max()) if flat.size else 0
    if top <= max(_DENSE_TABLE_MAX, 4 * flat.size):
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
        present = np.flatnonzero(counts[1:]) + 1
        lookup = np.zeros(top + 1, dtype=np.intp)
        lookup[present] = np.arange(1, len(present) + 1)
        return present.astype(np.int64), lookup[flat], counts[present].astype(np.int64)
    values, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if values[0] == 0:
        return values[1:].astype(np.int64), inverse.astype(np.intp), counts[1:].astype(np.int64)
    return values.astype(np.int64), inverse.astype(np.intp) + 1, counts.astype(np.int64)


@dataclass(frozen=True, eq=False)
class LabelOverlap:
    """Sparse contingency table of a truth and a predicted label image.

    Attributes
    ----------
    truth_labels, pred_labels : (T,), (P,) int64 ndarray
        The instance labels present in each image, ascending (0 excluded).
    truth_area, pred_area : (T,), (P,) int64 ndarray
        Their areas in pixels.
    truth_index, pred_index : (E,) intp ndarray
        For every pair of instances that share at least one pixel, the row in
        ``truth_labels`` and in ``pred_labels``; sorted by truth, then pred.
    intersection : (E,) int64 ndarray
        Pixels shared by each pair.
    """

    truth_labels: np.ndarray
    pred_labels: np.ndarray
    truth_area: np.ndarray
    pred_area: np.ndarray
    truth_index: np.ndarray
    pred_index: np.ndarray
    intersection: np.ndarray

    @property
    def n_truth(self) -> int:
        return int(self.truth_labels.shape[0])

    @property
    def n_pred(self) -> int:
        return int(self.pred_labels.shape[0])

    @property
    def union(self) -> np.ndarray:
        """(E,) int64: pixels of the union of each overlapping pair."""
        return self.truth_area[self.truth_index] + self.pred_area[self.pred_index] - self.intersection

    @property
    def iou(self) -> np.ndarray:
        """(E,) float64: IoU of each overlapping pair (all > 0)."""
        return self.intersection / self.union

    def iou_matrix(self) -> np.ndarray:
        """(T, P) float64 dense IoU matrix (0 for pairs that do not overlap)."""
        matrix = np.zeros((self.n_truth, self.n_pred), dtype=np.float64)
        matrix[self.truth_index, self.pred_index] = self.iou
        return matrix


def label_overlap(truth: Any, pred: Any) -> LabelOverlap:
    """Contingency table of two label images (areas and pairwise intersections).

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background; a bool mask counts as one instance.

    Returns
    -------
    LabelOverlap

    Raises
    ------
    ValueError
        Not 2-D, not integer, negative labels, or different shapes (both given).

    Notes
    -----
    Cost O(H W) plus the table: each image is renumbered 1..K with a
    bincount lookup, and the pairs of pixels where both are foreground are
    counted with one bincount of ``t * (P + 1) + p`` (``np.unique`` when that
    table would exceed 2**24 cells).
    """
    t, p = _check_label_pair(truth, pred)
    t_labels, t_flat, t_area = _compact(t.ravel())
    p_labels, p_flat, p_area = _compact(p.ravel())
    width = len(p_labels) + 1
    both = (t_flat > 0) & (p_flat > 0)
    keys = t_flat[both].astype(np.int64) * width + p_flat[both]
    if (len(t_labels) + 1) * width <= _DENSE_TABLE_MAX:
        table = np.bincount(keys, minlength=(len(t_labels) + 1) * width)
        pair_keys = np.flatnonzero(table)
        counts = table[pair_keys]
    else:
        pair_keys, counts = np.unique(keys, return_counts=True)
    ti, pi = np.divmod(pair_keys, width)
    return LabelOverlap(
        truth_labels=t_labels,
        pred_labels=p_labels,
        truth_area=t_area,
        pred_area=p_area,
        truth_index=(ti - 1).astype(np.intp),
        pred_index=(pi - 1).astype(np.intp),
        intersection=counts.astype(np.int64),
    )


def iou_matrix(truth: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense IoU of every truth instance with every predicted instance.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    ious : (T, P) float64 ndarray
        ``ious[i, j]`` = IoU of ``truth_labels[i]`` and ``pred_labels[j]``.
    truth_labels, pred_labels : (T,), (P,) int64 ndarray
        The labels of the rows and columns, ascending.
    """
    overlap = label_overlap(truth, pred)
    return overlap.iou_matrix(), overlap.truth_labels, overlap.pred_labels


def _ratio_or_one(numerator: float, denominator: float) -> float:
    """numerator / denominator; 1.0 for 0/0 (nothing to find, nothing found)."""
    return float(numerator / denominator) if denominator > 0 else 1.0


def _pixel_counts(overlap: LabelOverlap) -> tuple[int, int, int]:
    """|G ∩ S|, |G|, |S| of the foregrounds (instances are disjoint within an image)."""
    return int(overlap.intersection.sum()), int(overlap.truth_area.sum()), int(overlap.pred_area.sum())


def dice(truth: Any, pred: Any) -> float:
    """Pixel Dice of the foregrounds: 2|G∩S| / (|G| + |S|); both empty gives 1.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int or bool
        Label images or masks; foreground is any non-zero pixel.
    """
    inter, g, s = _pixel_counts(label_overlap(truth, pred))
    return _ratio_or_one(2 * inter, g + s)


def iou(truth: Any, pred: Any) -> float:
    """Pixel IoU (Jaccard) of the foregrounds: |G∩S| / |G∪S|; both empty gives 1.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int or bool
        Label images or masks; foreground is any non-zero pixel.
    """
    inter, g, s = _pixel_counts(label_overlap(truth, pred))
    return _ratio_or_one(inter, g + s - inter)


def _dsb_from_overlap(overlap: LabelOverlap) -> dict[str, Any]:
    # For t >= 0.5 every instance has at most one partner with IoU > t (two
    # disjoint predictions cannot each cover more than half of one union), so
    # the one-to-one pairs are simply the pairs above t: no assignment needed.
    inter, union = overlap.intersection, overlap.union
    tp = [int(np.count_nonzero(100 * inter > percent * union)) for percent in _DSB_PERCENT]
    fp = [overlap.n_pred - k for k in tp]
    fn = [overlap.n_truth - k for k in tp]
    scores = [_ratio_or_one(a, a + b + c) for a, b, c in zip(tp, fp, fn)]
    return {
        "score": float(np.mean(scores)),
        "ap50": scores[0],
        "thresholds": list(DSB_THRESHOLDS),
        "scores": scores,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_truth": overlap.n_truth,
        "n_pred": overlap.n_pred,
    }


def dsb_score(truth: Any, pred: Any) -> dict[str, Any]:
    """2018 Data Science Bowl score of one image (PROTOCOL.md section 2).

    For each t in 0.50, 0.55, ..., 0.95, instances pair one-to-one when their
    IoU is **strictly greater** than t; ``score_t = TP / (TP + FP + FN)``.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    dict
        ``score`` (mean of the ten ``score_t``), ``ap50`` (``score_t`` at
        0.5), ``thresholds``, ``scores``, ``tp``, ``fp``, ``fn`` (lists, one
        entry per threshold), ``n_truth``, ``n_pred``. An image with no truth
        and no prediction scores 1 at every t; with only one of them, 0.

    Notes
    -----
    "IoU > t" is decided in integers (``100 |G∩S| > 100 t |G∪S|``), so an
    IoU of exactly 0.55 never counts at t = 0.55 whatever the float rounding.
    """
    return _dsb_from_overlap(label_overlap(truth, pred))


def _aji_from_overlap(overlap: LabelOverlap) -> float:
    if overlap.n_truth == 0 and overlap.n_pred == 0:
        return 1.0
    ious = overlap.iou
    # Best prediction of each truth instance: highest IoU, ties to the lowest
    # predicted label (pairs are sorted by truth, then -IoU, then pred).
    order = np.lexsort((overlap.pred_index, -ious, overlap.truth_index))
    truth_sorted = overlap.truth_index[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = truth_sorted[1:] != truth_sorted[:-1]
    best = order[first]
    intersection = int(overlap.intersection[best].sum())
    union = int(overlap.union[best].sum())
    # A truth instance overlapping no prediction is paired with nothing: |G|.
    paired_truth = np.zeros(overlap.n_truth, dtype=bool)
    paired_truth[overlap.truth_index[best]] = True
    union += int(overlap.truth_area[~paired_truth].sum())
    taken = np.zeros(overlap.n_pred, dtype=bool)
    taken[overlap.pred_index[best]] = True
    union += int(overlap.pred_area[~taken].sum())
    return intersection / union


def aji(truth: Any, pred: Any) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017), as PROTOCOL.md section 2.

    Each truth instance G takes the prediction S of highest IoU with it;
    ``C += |G∩S|``, ``U += |G∪S|``. Afterwards ``U +=`` the area of every
    prediction never taken. AJI = C / U.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    float
        In [0, 1]. Both images empty gives 1; only one empty gives 0.

    Notes
    -----
    A truth instance that overlaps no prediction adds ``|G|`` to U (its best
    IoU is 0 and there is nothing to pair it with). Ties in IoU go to the
    lowest predicted label. A prediction taken by several truth instances is
    counted in each of their unions (Kumar's definition; AJI+ differs).
    """
    return _aji_from_overlap(label_overlap(truth, pred))


def _pq_from_overlap(overlap: LabelOverlap) -> tuple[float, float, float]:
    if overlap.n_truth == 0 and overlap.n_pred == 0:
        return 1.0, 1.0, 1.0
    matched = 2 * overlap.intersection > overlap.union  # IoU > 0.5: unique pairs
    tp = int(np.count_nonzero(matched))
    iou_sum = float(overlap.iou[matched].sum())
    fp, fn = overlap.n_pred - tp, overlap.n_truth - tp
    denominator = tp + 0.5 * fp + 0.5 * fn
    sq = iou_sum / tp if tp else 0.0
    return iou_sum / denominator, sq, tp / denominator


def panoptic_quality(truth: Any, pred: Any) -> tuple[float, float, float]:
    """Panoptic quality (Kirillov et al. 2019) of one image's nuclei.

    Instances pair when their IoU is strictly greater than 0.5 (such pairs
    are unique). ``PQ = Σ IoU(pairs) / (TP + FP/2 + FN/2) = SQ x RQ``.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    pq, sq, rq : float
        ``SQ`` = mean IoU of the pairs (0 when there is none),
        ``RQ = TP / (TP + FP/2 + FN/2)``. Both images empty gives (1, 1, 1).
    """
    return _pq_from_overlap(label_overlap(truth, pred))


@dataclass(frozen=True)
class SegmentationScores:
    """Segmentation scores of one image (PROTOCOL.md section 2).

    Attributes
    ----------
    dice, iou : float
        Pixel Dice and IoU of the foregrounds.
    dsb, ap50 : float
        DSB score (mean over the ten IoU thresholds) and its value at 0.5.
    aji : float
        Aggregated Jaccard Index.
    pq, sq, rq : float
        Panoptic, segmentation and recognition quality.
    n_truth, n_pred : int
        Instances in each image.
    intersection, truth_pixels, pred_pixels : int
        ``|G∩S|``, ``|G|``, ``|S|`` of the foregrounds, for pooling.
    """

    dice: float
    iou: float
    dsb: float
    ap50: float
    aji: float
    pq: float
    sq: float
    rq: float
    n_truth: int
    n_pred: int
    intersection: int
    truth_pixels: int
    pred_pixels: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain, JSON-serialisable dict of every field."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


_MEAN_FIELDS = ("dice", "iou", "dsb", "ap50", "aji", "pq", "sq", "rq")


def segmentation_scores(truth: Any, pred: Any) -> SegmentationScores:
    """All segmentation scores of one image, from one contingency table.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    SegmentationScores
        As :func:`dice`, :func:`iou`, :func:`dsb_score`, :func:`aji` and
        :func:`panoptic_quality` would give one by one.
    """
    overlap = label_overlap(truth, pred)
    inter, g, s = _pixel_counts(overlap)
    dsb = _dsb_from_overlap(overlap)
    pq, sq, rq = _pq_from_overlap(overlap)
    return SegmentationScores(
        dice=_ratio_or_one(2 * inter, g + s),
        iou=_ratio_or_one(inter, g + s - inter),
        dsb=dsb["score"],
        ap50=dsb["ap50"],
        aji=_aji_from_overlap(overlap),
        pq=pq,
        sq=sq,
        rq=rq,
        n_truth=overlap.n_truth,
        n_pred=overlap.n_pred,
        intersection=inter,
        truth_pixels=g,
        pred_pixels=s,
    )


@dataclass(frozen=True)
class SegmentationReport:
    """Segmentation scores of a set of images.

    Attributes
    ----------
    per_image : tuple of SegmentationScores
        One entry per image, in input order.
    dice, iou, dsb, ap50, aji, pq, sq, rq : float
        **Means over images** of the per-image scores (PROTOCOL.md's figures).
    pooled_dice, pooled_iou : float
        Dice and IoU over all pixels of all images (intersections and areas
        summed first); both 1 when no image has any foreground.
    """

    per_image: tuple[SegmentationScores, ...]
    dice: float
    iou: float
    dsb: float
    ap50: float
    aji: float
    pq: float
    sq: float
    rq: float
    pooled_dice: float
    pooled_iou: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict: n_images, mean, pooled, per_image."""
        return {
            "n_images": len(self.per_image),
            "mean": {name: float(getattr(self, name)) for name in _MEAN_FIELDS},
            "pooled": {"dice": float(self.pooled_dice), "iou": float(self.pooled_iou)},
            "per_image": [s.to_dict() for s in self.per_image],
        }


def evaluate_segmentation(truths: Sequence[Any], preds: Sequence[Any]) -> SegmentationReport:
    """Score the predicted label images of several images.

    Parameters
    ----------
    truths, preds : sequence of (H_i, W_i) array_like of int
        Truth and predicted label images of each image, 0 = background.

    Returns
    -------
    SegmentationReport
        Per-image scores, their means, and pooled pixel Dice/IoU.

    Raises
    ------
    ValueError
        Sequences of different lengths or empty, or as :func:`label_overlap`.
    """
    _check_same_length("truths", truths, "preds", preds)
    per_image = tuple(segmentation_scores(t, p) for t, p in zip(truths, preds))
    inter = sum(s.intersection for s in per_image)
    total = sum(s.truth_pixels + s.pred_pixels for s in per_image)
    means = {name: float(np.mean([getattr(s, name) for s in per_image])) for name in _MEAN_FIELDS}
    return SegmentationReport(
        per_image=per_image,
        pooled_dice=_ratio_or_one(2 * inter, total),
        pooled_iou=_ratio_or_one(inter, total - inter),
        **means,
    )


# =============================================================================
# Classification
# =============================================================================
#
# Patch classification (PROTOCOL.md section 1, "Classification") and typed
# points end to end ("Detection + classification end to end"). Plain NumPy;
# zero divisions follow scikit-learn's zero_division=0 so that figures stay
# comparable with the papers': a class never predicted has precision 0, a
# class without support recall 0, and F1 is 0 when P + R = 0.


def _class_indices(name: str, values: Any, classes: Sequence[Any]) -> np.ndarray:
    """(N,) intp positions of ``values`` in ``classes``; ValueError for an unknown value."""
    lookup = {c: k for k, c in enumerate(classes)}
    items = np.asarray(values).reshape(-1).tolist()
    index = np.fromiter((lookup.get(v, -1) for v in items), dtype=np.intp, count=len(items))
    if (index < 0).any():
        unknown = items[int(np.argmax(index < 0))]
        raise ValueError(f"{name} holds {unknown!r}, which is not one of the classes {list(classes)}")
    return index


def _check_classes(classes: Sequence[Any]) -> list[Any]:
    listed = np.asarray(classes).reshape(-1).tolist()
    if len(listed) == 0:
        raise ValueError("classes must name at least one class")
    if len(set(listed)) != len(listed):
        raise ValueError(f"classes must be distinct, got {listed}")
    return listed


def confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[Any]) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class, in ``classes`` order."""
    names = _check_classes(classes)
    t = _class_indices("y_true", y_true, names)
    p = _class_indices("y_pred", y_pred, names)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    c = len(names)
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


def binary_roc_auc(scores: Any, positive: Any) -> float:
    """Area under the ROC curve of one binary problem (NaN without both kinds).

    Parameters
    ----------
    scores : (N,) array_like of float
        Higher means more likely positive.
    positive : (N,) array_like of bool

    Returns
    -------
    float
        The Mann-Whitney statistic ``P(score_pos > score_neg) + P(=)/2``,
        which equals the trapezoidal area under the ROC curve with ties;
        NaN when there are no positives or no negatives.
    """
    from scipy.stats import rankdata

    s, y = _binary(scores, positive)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _binary(scores: Any, positive: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as bool, both flat and of one length."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(positive, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and positive differ in length: {s.size} and {y.size}")
    return s, y


def _tied_counts(scores: Any, positive: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Cumulative (true positives, samples taken) at each distinct score, highest first."""
    s, y = _binary(scores, positive)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.zeros(0, np.int64)
    return np.cumsum(y)[last_of_tie], last_of_tie + 1, int(y.sum())


def binary_roc_curve(scores: Any, positive: Any) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve of one binary problem, one point per distinct score.

    Parameters are those of :func:`binary_roc_auc`.

    Returns
    -------
    fpr, tpr : (K + 1,) ndarray of float
        False and true positive rates when every sample scoring at least the
        k-th highest distinct score is called positive, preceded by (0, 0).
        Tied scores enter together, so the trapezoidal area under the curve
        equals :func:`binary_roc_auc`. A rate with no sample of its kind
        stays 0.
    """
    tp, taken, n_pos = _tied_counts(scores, positive)
    fp = taken - tp
    n_neg = int(taken[-1]) - n_pos if taken.size else 0
    return np.r_[0.0, fp / max(n_neg, 1)], np.r_[0.0, tp / max(n_pos, 1)]


def binary_pr_curve(scores: Any, positive: Any) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall curve of one binary problem, one point per distinct score.

    Returns
    -------
    recall, precision : (K,) ndarray of float
        At the k-th highest distinct score (ties enter together); recall is 0
        throughout when there is no positive.
    """
    tp, taken, n_pos = _tied_counts(scores, positive)
    return tp / max(n_pos, 1), tp / np.maximum(taken, 1)


def average_precision(scores: Any, positive: Any) -> float:
    """Average precision of one binary problem, ``Σ (R_k - R_{k-1}) P_k`` (NaN without positives).

    The operating points are those of :func:`binary_pr_curve` (distinct score
    values from the highest; tied scores enter together). No interpolation
    (scikit-learn's ``average_precision_score``).
    """
    if not np.asarray(positive, dtype=bool).any():
        return math.nan
    recall, precision = binary_pr_curve(scores, positive)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def classification_report(
    y_true: Any,
    y_pred: Any,
    proba: Any,
    classes: Sequence[Any],
) -> dict[str, Any]:
    """Classification scores of PROTOCOL.md section 1 ("Classification").

    Parameters
    ----------
    y_true, y_pred : (N,) array_like
        True and predicted class of each sample; every value one of ``classes``.
    proba : (N, C) array_like of float, or None
        Score of each class per sample, columns in ``classes`` order (e.g.
        softmax outputs); needed for ROC AUC and average precision, which are
        None without it.
    classes : sequence
        The C class names (or ids), distinct, in report order.

    Returns
    -------
    dict
        JSON-serialisable:

        - ``classes`` (names as str), ``n``, ``accuracy``;
        - ``per_class``: name -> ``precision``, ``recall``, ``f1``, ``support``
          (true count), ``roc_auc`` (one-vs-rest) and ``average_precision``
          (None where undefined: no proba, or a class without positives or
          without negatives);
        - ``weighted_f1`` (class weights = truth support; the papers'
          headline), ``macro_f1`` (plain mean over classes),
          ``macro_roc_auc`` and ``macro_average_precision`` (means over the
          classes where defined, else None);
        - ``confusion_matrix``: C lists of C ints, row = truth, column = prediction.

    Raises
    ------
    ValueError
        No samples, lengths that differ, an unknown class, duplicate classes,
        or ``proba`` not (N, C) finite.
    """
    names = _check_classes(classes)
    cm = confusion_matrix(y_true, y_pred, names)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("classification_report needs at least one sample")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)

    auc = np.full(len(names), math.nan)
    ap = np.full(len(names), math.nan)
    if proba is not None:
        scores = np.asarray(proba, dtype=np.float64)
        if scores.shape != (n, len(names)):
            raise ValueError(f"proba must have shape (N, C) = ({n}, {len(names)}), got {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError("proba must hold finite values")
        truth = _class_indices("y_true", y_true, names)
        for k in range(len(names)):
            auc[k] = binary_roc_auc(scores[:, k], truth == k)
            ap[k] = average_precision(scores[:, k], truth == k)

    def mean_defined(values: np.ndarray) -> float | None:
        defined = values[~np.isnan(values)]
        return float(defined.mean()) if defined.size else None

    return {
        "classes": [str(c) for c in names],
        "n": n,
        "accuracy": float(tp.sum() / n),
        "per_class": {
            str(c): {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
                "roc_auc": _nan_to_none(auc[k]),
                "average_precision": _nan_to_none(ap[k]),
            }
            for k, c in enumerate(names)
        },
        "weighted_f1": float(np.sum(f1 * support) / n),
        "macro_f1": float(f1.mean()),
        "macro_roc_auc": mean_defined(auc),
        "macro_average_precision": mean_defined(ap),
        "confusion_matrix": cm.tolist(),
    }


@dataclass(frozen=True)
class _TypedCounts:
    detection: tuple[int, int, int, float]  # tp, fp, fn, distance sum
    per_class: tuple[tuple[int, int, int, float], ...]
    type_correct: int


def _typed_counts(
    pred_xy: Any, pred_cls: Any, truth_xy: Any, truth_cls: Any, radius: float, names: list[Any]
) -> _TypedCounts:
    p, t, _ = _check_pair(pred_xy, truth_xy, radius)
    pc = _class_indices("pred_cls", pred_cls, names)
    tc = _class_indices("truth_cls", truth_cls, names)
    if pc.shape[0] != p.shape[0] or tc.shape[0] != t.shape[0]:
        raise ValueError(
            f"one class per point: pred {p.shape[0]} points / {pc.shape[0]} classes, "
            f"truth {t.shape[0]} points / {tc.shape[0]} classes"
        )
    detection = match_points(p, t, radius)
    correct = int(np.count_nonzero(pc[detection.pred_index] == tc[detection.truth_index]))
    per_class = []
    for k in range(len(names)):
        m = match_points(p[pc == k], t[tc == k], radius)
        per_class.append((m.tp, m.fp, m.fn, float(m.distances.sum())))
    det = (detection.tp, detection.fp, detection.fn, float(detection.distances.sum()))
    return _TypedCounts(det, tuple(per_class), correct)


def _typed_report(counts: Sequence[_TypedCounts], radius: float, names: list[Any]) -> dict[str, Any]:
    det = _scores_from_counts(*(sum(c.detection[i] for c in counts) for i in range(4)))
    per_class = {}
    f1s, supports = [], []
    for k, name in enumerate(names):
        totals = [sum(c.per_class[k][i] for c in counts) for i in range(4)]
        scores = _scores_from_counts(*totals)
        support = totals[0] + totals[2]  # truth points of class k = TP + FN
        per_class[str(name)] = {**scores.to_dict(), "support": int(support)}
        f1s.append(scores.f1)
        supports.append(support)
    total_support = sum(supports)
    weighted = sum(f * s for f, s in zip(f1s, supports)) / total_support if total_support else math.nan
    correct = sum(c.type_correct for c in counts)
    return {
        "radius": float(radius),
        "f_d": float(det.f1),
        "detection": det.to_dict(),
        "per_class": per_class,
        "weighted_f1_c": _nan_to_none(weighted),
        "type_accuracy": float(correct / det.tp) if det.tp else None,
        "n_type_correct": int(correct),
    }


def typed_point_scores(
    pred_xy: Any,
    pred_cls: Any,
    truth_xy: Any,
    truth_cls: Any,
    radius: float,
    classes: Sequence[Any],
) -> dict[str, Any]:
    """Typed nuclei end to end, one image (PROTOCOL.md "Detection + classification end to end").

    Parameters
    ----------
    pred_xy : (N, 2) array_like of float
        Predicted centres (x, y), 0-based pixel centres.
    pred_cls : (N,) array_like
        Predicted class of each centre, one of ``classes``.
    truth_xy : (M, 2) array_like of float
        Classified truth centres.
    truth_cls : (M,) array_like
        Their classes.
    radius : float
        Matching radius in pixels (6 px on CRCHisto).
    classes : sequence
        Class names, in report order.

    Returns
    -------
    dict
        - ``f_d``: detection F1 of all predictions against all truth points
          (:func:`match_points`), with the full ``detection`` scores;
        - ``per_class``: name -> scores of the predictions of that class
          matched against the truth of that class (``f1`` is F1_c), plus
          ``support`` (truth points of the class);
        - ``weighted_f1_c``: the F1_c averaged with truth-support weights
          (None without truth points);
        - ``type_accuracy``: among the TP pairs of F_d, the share whose
          predicted class equals the truth class (None without TP), and
          ``n_type_correct``.

        Zero divisions follow :class:`DetectionScores`.

    Raises
    ------
    ValueError
        As :func:`match_points`, a class count that differs from the point
        count, or an unknown class.
    """
    names = _check_classes(classes)
    return _typed_report([_typed_counts(pred_xy, pred_cls, truth_xy, truth_cls, radius, names)], radius, names)


def evaluate_typed_points(
    preds_xy: Sequence[Any],
    preds_cls: Sequence[Any],
    truths_xy: Sequence[Any],
    truths_cls: Sequence[Any],
    radius: float,
    classes: Sequence[Any],
) -> dict[str, Any]:
    """:func:`typed_point_scores` pooled over images.

    Every image is matched on its own; TP, FP and FN (detection and per
    class) and the type-correct pairs are summed over the images before any
    score is computed, as PROTOCOL.md pools detection counts. Same keys as
    :func:`typed_point_scores`, plus ``n_images``.
    """
    _check_same_length("preds_xy", preds_xy, "truths_xy", truths_xy)
    _check_same_length("preds_xy", preds_xy, "preds_cls", preds_cls)
    _check_same_length("truths_xy", truths_xy, "truths_cls", truths_cls)
    names = _check_classes(classes)
    counts = [
        _typed_counts(p, pc, t, tc, radius, names)
        for p, pc, t, tc in zip(preds_xy, preds_cls, truths_xy, truths_cls)
    ]
    return {"n_images": len(counts), **_typed_report(counts, radius, names)}
