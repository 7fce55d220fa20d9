"""Classification metrics: patches, and typed points end to end (PROTOCOL.md section 1).

:func:`classification_report` (accuracy, per-class P/R/F1, weighted and macro
F1, one-vs-rest ROC AUC and AP, confusion matrix) with its binary building
blocks (:func:`confusion_matrix`, :func:`binary_roc_auc`,
:func:`binary_roc_curve`, :func:`binary_pr_curve`, :func:`average_precision`),
and typed points with :func:`typed_point_scores` /
:func:`evaluate_typed_points` (F_d, F1 per class, type accuracy), which match
points as :mod:`nucleikit.metrics.points` does. This module never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import _check_same_length, _nan_to_none
from .points import _check_pair, _scores_from_counts, match_points

__all__ = [
    "average_precision",
    "binary_pr_curve",
    "binary_roc_auc",
    "binary_roc_curve",
    "classification_report",
    "confusion_matrix",
    "evaluate_typed_points",
    "typed_point_scores",
]


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
