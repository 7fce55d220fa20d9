"""Tests for nucleikit.metrics.classification (values worked out by hand)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nucleikit.metrics import (
    average_precision,
    binary_pr_curve,
    binary_roc_auc,
    binary_roc_curve,
    classification_report,
    confusion_matrix,
    evaluate_typed_points,
    typed_point_scores,
)

CLASSES = ["a", "b", "c"]
Y_TRUE = ["a", "a", "a", "b", "b", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c"]
# Columns a, b, c.
PROBA = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.8, 0.10, 0.10],
        [0.3, 0.60, 0.10],
        [0.2, 0.70, 0.10],
        [0.3, 0.30, 0.40],
        [0.1, 0.20, 0.70],
    ]
)


def test_confusion_matrix_rows_are_truth():
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, CLASSES), [[2, 1, 0], [0, 1, 1], [0, 0, 1]])


def test_report_by_hand():
    r = classification_report(Y_TRUE, Y_PRED, PROBA, CLASSES)
    assert r["classes"] == CLASSES and r["n"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (r["per_class"][k] for k in CLASSES)
    # a: P 2/2, R 2/3, F1 0.8; b: P 1/2, R 1/2, F1 1/2; c: P 1/2, R 1, F1 2/3.
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((0.5, 1.0, 2 / 3, 1))
    # Weighted by support: (3 * 0.8 + 2 * 0.5 + 1 * 2/3) / 6 = 61/90; macro: 59/90.
    assert r["weighted_f1"] == pytest.approx(61 / 90)
    assert r["macro_f1"] == pytest.approx(59 / 90)
    # ROC AUC, a: positives {0.9, 0.8, 0.3} vs negatives {0.2, 0.3, 0.1}: 8.5 of 9 pairs
    # (the 0.3 tie counts half). b: {0.7, 0.3} vs {0.05, 0.1, 0.6, 0.2}: 7 of 8. c: 1.
    assert a["roc_auc"] == pytest.approx(17 / 18)
    assert b["roc_auc"] == pytest.approx(7 / 8)
    assert c["roc_auc"] == 1.0
    assert r["macro_roc_auc"] == pytest.approx((17 / 18 + 7 / 8 + 1) / 3)
    # AP, a: 0.9 (P 1, R 1/3), 0.8 (P 1, R 2/3), tie 0.3 (P 3/4, R 1) -> 1/3 + 1/3 + 1/4.
    # b: 0.7 (P 1, R 1/2), 0.6 (R unchanged), 0.3 (P 2/3, R 1) -> 1/2 + 1/3.
    assert a["average_precision"] == pytest.approx(11 / 12)
    assert b["average_precision"] == pytest.approx(5 / 6)
    assert c["average_precision"] == 1.0
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_class_never_predicted_and_class_without_support():
    r = classification_report(["a", "a", "b"], ["a", "a", "a"], None, ["a", "b", "c"])
    # b is never predicted: precision 0 (zero_division = 0), recall 0; c has no support.
    assert r["per_class"]["b"]["precision"] == 0.0 and r["per_class"]["b"]["f1"] == 0.0
    assert r["per_class"]["c"]["support"] == 0 and r["per_class"]["c"]["recall"] == 0.0
    # a: P 2/3, R 1, F1 0.8; weighted F1 = 2 * 0.8 / 3; macro F1 = 0.8 / 3.
    assert r["weighted_f1"] == pytest.approx(1.6 / 3) and r["macro_f1"] == pytest.approx(0.8 / 3)
    assert r["per_class"]["a"]["roc_auc"] is None and r["macro_roc_auc"] is None


def test_auc_is_undefined_for_a_class_without_positives():
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    r = classification_report(["a", "a"], ["a", "b"], proba, ["a", "b"])
    assert r["per_class"]["b"]["roc_auc"] is None and r["per_class"]["b"]["average_precision"] is None
    assert r["per_class"]["a"]["roc_auc"] is None  # no negatives either
    assert r["per_class"]["a"]["average_precision"] == 1.0


def test_integer_class_ids_work():
    r = classification_report([0, 1, 1], [0, 1, 0], None, [0, 1])
    assert r["classes"] == ["0", "1"] and r["accuracy"] == pytest.approx(2 / 3)


def _slow_auc(scores, positive):
    pos = [s for s, y in zip(scores, positive) if y]
    neg = [s for s, y in zip(scores, positive) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def _slow_ap(scores, positive):
    n_pos = sum(positive)
    ap, last_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        kept = [y for s, y in zip(scores, positive) if s >= t]
        recall = sum(kept) / n_pos
        ap += (recall - last_recall) * sum(kept) / len(kept)
        last_recall = recall
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_ap_equal_slow_references(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=40) / 5.0  # many ties
    positive = rng.random(40) < 0.4
    assert binary_roc_auc(scores, positive) == pytest.approx(_slow_auc(scores, positive))
    assert average_precision(scores, positive) == pytest.approx(_slow_ap(scores.tolist(), positive.tolist()))


def test_roc_and_pr_curves_by_hand():
    # scores 0.9 (pos), 0.7 (neg), 0.7 (pos), 0.2 (neg): the tie at 0.7 enters at once
    scores, positive = [0.9, 0.7, 0.7, 0.2], [True, False, True, False]
    fpr, tpr = binary_roc_curve(scores, positive)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    recall, precision = binary_pr_curve(scores, positive)
    assert recall.tolist() == [0.5, 1.0, 1.0] and precision.tolist() == pytest.approx([1.0, 2 / 3, 0.5])


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_area_is_the_auc_and_pr_curve_gives_the_ap(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 8, size=60) / 7.0
    positive = rng.random(60) < 0.3
    fpr, tpr = binary_roc_curve(scores, positive)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and fpr[-1] == tpr[-1] == 1.0
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(binary_roc_auc(scores, positive))
    recall, precision = binary_pr_curve(scores, positive)
    assert float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) == pytest.approx(average_precision(scores, positive))


def test_curves_without_positives_and_of_unequal_lengths():
    fpr, tpr = binary_roc_curve([0.3, 0.1], [False, False])
    assert tpr.tolist() == [0.0, 0.0, 0.0] and fpr.tolist() == [0.0, 0.5, 1.0]
    recall, _ = binary_pr_curve([0.3, 0.1], [False, False])
    assert recall.tolist() == [0.0, 0.0]
    assert np.isnan(average_precision([0.3, 0.1], [False, False]))
    with pytest.raises(ValueError, match="differ in length"):
        binary_roc_curve([0.1, 0.2], [True])


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="y_pred holds 'd', which is not one of the classes"):
        classification_report(["a"], ["d"], None, ["a", "b"])


def test_proba_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"proba must have shape \(N, C\) = \(6, 3\), got \(6, 2\)"):
        classification_report(Y_TRUE, Y_PRED, PROBA[:, :2], CLASSES)


def test_duplicate_classes_are_refused():
    with pytest.raises(ValueError, match="classes must be distinct"):
        confusion_matrix(["a"], ["a"], ["a", "a"])


# --- typed points end to end ----------------------------------------------------------------

TRUTH_XY = np.array([(0.0, 0.0), (10.0, 0.0), (20.0, 0.0)])
TRUTH_CLS = ["x", "x", "y"]
PRED_XY = np.array([(1.0, 0.0), (10.0, 1.0), (20.0, 0.0), (50.0, 50.0)])
PRED_CLS = ["x", "y", "y", "x"]


def test_typed_points_by_hand():
    r = typed_point_scores(PRED_XY, PRED_CLS, TRUTH_XY, TRUTH_CLS, 3.0, ["x", "y"])
    # Detection: three pairs, one FP far away: F_d = 6/7.
    assert r["f_d"] == pytest.approx(6 / 7)
    assert (r["detection"]["tp"], r["detection"]["fp"], r["detection"]["fn"]) == (3, 1, 0)
    # Class x: preds (1, 0), (50, 50) vs truth (0, 0), (10, 0): TP 1, FP 1, FN 1 -> 1/2.
    # Class y: preds (10, 1), (20, 0) vs truth (20, 0): TP 1, FP 1 -> 2/3.
    assert r["per_class"]["x"]["f1"] == pytest.approx(0.5) and r["per_class"]["x"]["support"] == 2
    assert r["per_class"]["y"]["f1"] == pytest.approx(2 / 3) and r["per_class"]["y"]["support"] == 1
    assert r["weighted_f1_c"] == pytest.approx((2 * 0.5 + 1 * 2 / 3) / 3)
    # Types of the three detection pairs: x=x, y!=x, y=y.
    assert r["type_accuracy"] == pytest.approx(2 / 3) and r["n_type_correct"] == 2


def test_typed_points_pool_counts_over_images():
    # Second image: nothing predicted, one y nucleus missed.
    r = evaluate_typed_points(
        [PRED_XY, np.zeros((0, 2))], [PRED_CLS, []], [TRUTH_XY, [(5.0, 5.0)]], [TRUTH_CLS, ["y"]], 3.0, ["x", "y"]
    )
    assert r["n_images"] == 2
    # Detection TP 3, FP 1, FN 1 -> 6/8; class y TP 1, FP 1, FN 1 -> 1/2 (support 2).
    assert r["f_d"] == pytest.approx(0.75)
    assert r["per_class"]["y"]["f1"] == pytest.approx(0.5) and r["per_class"]["y"]["support"] == 2
    assert r["weighted_f1_c"] == pytest.approx(0.5)
    assert r["type_accuracy"] == pytest.approx(2 / 3)


def test_typed_points_without_any_pair():
    r = typed_point_scores(np.zeros((0, 2)), [], TRUTH_XY, TRUTH_CLS, 3.0, ["x", "y"])
    assert r["f_d"] == 0.0 and r["type_accuracy"] is None


def test_typed_points_need_one_class_per_point():
    with pytest.raises(ValueError, match="pred 4 points / 3 classes"):
        typed_point_scores(PRED_XY, PRED_CLS[:3], TRUTH_XY, TRUTH_CLS, 3.0, ["x", "y"])
