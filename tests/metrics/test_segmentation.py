"""Tests for nucleikit.metrics.segmentation.

Each case is a tiny label image whose scores are worked out by hand in the
comments (PROTOCOL.md section 2 definitions).
"""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.metrics import (
    DSB_THRESHOLDS,
    aji,
    dice,
    dsb_score,
    evaluate_segmentation,
    iou,
    iou_matrix,
    label_overlap,
    panoptic_quality,
    segmentation_scores,
)


def _image(*boxes, shape=(6, 10)):
    """Label image with label k+1 on rows r0:r1, columns c0:c1 of boxes[k] (later wins)."""
    labels = np.zeros(shape, np.int32)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        labels[r0:r1, c0:c1] = k + 1
    return labels


SQUARE = _image((0, 4, 0, 4))  # one 4 x 4 nucleus, 16 px


# --- the hand-computed cases --------------------------------------------------------------


def test_perfect_prediction_scores_one_everywhere():
    s = segmentation_scores(SQUARE, SQUARE * 7)  # label numbers do not matter
    assert (s.dice, s.iou, s.dsb, s.ap50, s.aji, s.pq, s.sq, s.rq) == (1, 1, 1, 1, 1, 1, 1, 1)


def test_split_nucleus():
    # Truth: one 16 px square. Prediction: columns 0-2 (12 px) and column 3 (4 px).
    pred = _image((0, 4, 0, 3), (0, 4, 3, 4))
    # Same foreground: pixel Dice = IoU = 1.
    assert dice(SQUARE, pred) == 1.0 and iou(SQUARE, pred) == 1.0
    # IoU(g, s1) = 12/16 = 0.75, IoU(g, s2) = 4/16. For t = 0.50..0.70 (5 thresholds):
    # TP 1, FP 1, FN 0 -> 1/2. At t = 0.75, 0.75 > 0.75 fails: 0. Mean = 2.5/10.
    result = dsb_score(SQUARE, pred)
    assert result["scores"] == [0.5] * 5 + [0.0] * 5
    assert result["score"] == pytest.approx(0.25) and result["ap50"] == 0.5
    assert result["tp"] == [1] * 5 + [0] * 5 and result["fp"] == [1] * 5 + [2] * 5
    assert result["fn"] == [0] * 5 + [1] * 5
    # AJI: g takes s1: C = 12, U = 16; s2 never taken: U += 4 -> 12/20.
    assert aji(SQUARE, pred) == pytest.approx(0.6)
    # PQ: one pair (0.75), FP 1: PQ = 0.75/1.5, SQ = 0.75, RQ = 1/1.5.
    assert panoptic_quality(SQUARE, pred) == pytest.approx((0.5, 0.75, 2 / 3))


def test_merged_pair():
    # Truth: g1 = columns 0-3 (16 px), g2 = columns 4-5 (8 px). Prediction: one 24 px blob.
    truth = _image((0, 4, 0, 4), (0, 4, 4, 6))
    pred = _image((0, 4, 0, 6))
    assert dice(truth, pred) == 1.0
    # IoU(g1, s) = 16/24 = 2/3, IoU(g2, s) = 1/3. For t = 0.50..0.65 (4 thresholds):
    # TP 1, FP 0, FN 1 -> 1/2; above: 0. Mean 2/10.
    result = dsb_score(truth, pred)
    assert result["scores"] == [0.5] * 4 + [0.0] * 6
    assert result["score"] == pytest.approx(0.2)
    # AJI: both truths take s. C = 16 + 8, U = 24 + 24 (s counted twice) -> 1/2.
    assert aji(truth, pred) == pytest.approx(0.5)
    # PQ: one pair (2/3), FN 1: PQ = (2/3)/1.5 = 4/9, SQ = 2/3, RQ = 2/3.
    assert panoptic_quality(truth, pred) == pytest.approx((4 / 9, 2 / 3, 2 / 3))


def test_shifted_nucleus_hits_a_threshold_exactly():
    # Prediction shifted one column: |G∩S| = 12, |G∪S| = 20, IoU = 0.6 exactly.
    pred = _image((0, 4, 1, 5))
    assert dice(SQUARE, pred) == pytest.approx(24 / 32) and iou(SQUARE, pred) == pytest.approx(0.6)
    # IoU > t only for t = 0.50, 0.55 (0.6 > 0.6 is false): 2/10.
    assert dsb_score(SQUARE, pred)["scores"] == [1.0, 1.0] + [0.0] * 8
    assert aji(SQUARE, pred) == pytest.approx(0.6)
    assert panoptic_quality(SQUARE, pred) == pytest.approx((0.6, 0.6, 1.0))


def test_iou_of_exactly_055_does_not_count_at_055():
    truth = _image((0, 4, 0, 5))  # 20 px
    pred = np.zeros_like(truth)
    pred[0:2, 0:5] = 1
    pred[2, 0] = 1  # 11 px, all inside the truth: IoU = 11/20 = 0.55
    assert dsb_score(truth, pred)["scores"][:2] == [1.0, 0.0]


def test_empty_prediction():
    s = segmentation_scores(SQUARE, np.zeros_like(SQUARE))
    assert (s.dice, s.iou, s.dsb, s.ap50, s.aji, s.pq, s.sq, s.rq) == (0, 0, 0, 0, 0, 0, 0, 0)
    assert dsb_score(SQUARE, np.zeros_like(SQUARE))["fn"] == [1] * 10


def test_empty_truth_with_a_prediction_scores_zero():
    s = segmentation_scores(np.zeros_like(SQUARE), SQUARE)
    assert (s.dice, s.iou, s.dsb, s.aji, s.pq) == (0, 0, 0, 0, 0)


def test_both_empty_score_one():
    empty = np.zeros((5, 5), np.int32)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dsb_score(empty, empty)["score"] == 1.0
    assert aji(empty, empty) == 1.0
    assert panoptic_quality(empty, empty) == (1.0, 1.0, 1.0)


def test_missed_nucleus_and_false_positive():
    # Truth: the square and a 2 x 2 nucleus (4 px) that is missed; prediction: the
    # square and a 2 x 2 false positive elsewhere.
    truth = _image((0, 4, 0, 4), (4, 6, 8, 10))
    pred = _image((0, 4, 0, 4), (0, 2, 8, 10))
    # Dice = 2*16/(20+20), IoU = 16/24. DSB: TP 1, FP 1, FN 1 -> 1/3 at every t.
    assert dice(truth, pred) == pytest.approx(0.8) and iou(truth, pred) == pytest.approx(2 / 3)
    assert dsb_score(truth, pred)["score"] == pytest.approx(1 / 3)
    # AJI: C = 16; U = 16 + 4 (missed truth) + 4 (unused prediction) = 24.
    assert aji(truth, pred) == pytest.approx(16 / 24)
    # PQ = 1/(1 + 0.5 + 0.5) = 0.5, SQ = 1, RQ = 0.5.
    assert panoptic_quality(truth, pred) == pytest.approx((0.5, 1.0, 0.5))


def test_aji_pairs_by_highest_iou_not_largest_intersection():
    # g: rows 0-1, columns 0-4 (10 px). s1: columns 2-4 of g (6 px) plus rows 2-5
    # (40 px), 46 px, IoU 6/50. s2: columns 0-1 of g, 4 px, IoU 4/10: g takes s2.
    truth = _image((0, 2, 0, 5))
    pred = np.zeros_like(truth)
    pred[2:6, :] = 1
    pred[0:2, 2:5] = 1
    pred[0:2, 0:2] = 2
    # C = 4, U = 10 + 46 (s1 never taken) = 56. (Largest intersection would give 6/54.)
    assert aji(truth, pred) == pytest.approx(4 / 56)


# --- the contingency table ------------------------------------------------------------------


def _slow_iou_matrix(truth, pred):
    t_ids = [v for v in np.unique(truth) if v]
    p_ids = [v for v in np.unique(pred) if v]
    m = np.zeros((len(t_ids), len(p_ids)))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            g, s = truth == a, pred == b
            m[i, j] = (g & s).sum() / (g | s).sum()
    return m, t_ids, p_ids


def test_iou_matrix_rows_and_columns_follow_the_label_values():
    truth = _image((0, 4, 0, 4), (0, 4, 6, 8)) * np.int32(5)  # labels 5, 10
    pred = _image((0, 4, 1, 5), shape=(6, 10)) * np.int32(2)  # label 2
    m, t_ids, p_ids = iou_matrix(truth, pred)
    assert t_ids.tolist() == [5, 10] and p_ids.tolist() == [2]
    np.testing.assert_allclose(m, [[0.6], [0.0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_matrix_equals_a_slow_reference(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, size=(12, 15))
    pred = rng.integers(0, 9, size=(12, 15)) * 1000  # sparse, large label values
    m, t_ids, p_ids = iou_matrix(truth, pred)
    ref, rt, rp = _slow_iou_matrix(truth, pred)
    assert t_ids.tolist() == rt and p_ids.tolist() == rp
    np.testing.assert_allclose(m, ref, rtol=0, atol=1e-15)


def test_huge_label_values_and_many_instances_use_the_sparse_path():
    # 2**40 as a label forces np.unique renumbering; 10,000 instances a side
    # give a table of 10**8 cells, which must never be made dense.
    rng = np.random.default_rng(3)
    truth = rng.permutation(10_000).reshape(100, 100).astype(np.int64) + 2**40
    overlap = label_overlap(truth, truth)
    assert overlap.n_truth == 10_000 and overlap.intersection.size == 10_000
    assert dsb_score(truth, truth)["score"] == 1.0


def test_bool_masks_are_one_instance_each():
    assert dice(SQUARE > 0, _image((0, 4, 1, 5)) > 0) == pytest.approx(0.75)


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"truth \(6, 10\) and pred \(6, 9\)"):
        dice(SQUARE, SQUARE[:, :9])


def test_float_labels_are_refused():
    with pytest.raises(ValueError, match="pred must hold integer labels"):
        dsb_score(SQUARE, SQUARE.astype(float))


def test_negative_labels_are_refused():
    with pytest.raises(ValueError, match="truth holds negative labels"):
        aji(-SQUARE, SQUARE)


def test_dsb_thresholds():
    assert DSB_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


# --- several images -------------------------------------------------------------------------


def test_evaluate_segmentation_means_and_pools():
    shifted = _image((0, 4, 1, 5))
    report = evaluate_segmentation([SQUARE, SQUARE], [shifted, np.zeros_like(SQUARE)])
    # Means: Dice (0.75 + 0)/2, IoU (0.6 + 0)/2, DSB (0.2 + 0)/2.
    assert report.dice == pytest.approx(0.375) and report.iou == pytest.approx(0.3)
    assert report.dsb == pytest.approx(0.1) and report.ap50 == pytest.approx(0.5)
    # Pooled: |G∩S| = 12, |G| + |S| = 32 + 16 -> Dice 24/48, IoU 12/36.
    assert report.pooled_dice == pytest.approx(0.5) and report.pooled_iou == pytest.approx(1 / 3)
    d = report.to_dict()
    assert d["n_images"] == 2 and d["mean"]["aji"] == pytest.approx(0.3)
    assert d["pooled"] == {"dice": pytest.approx(0.5), "iou": pytest.approx(1 / 3)}
    assert d["per_image"][0]["n_truth"] == 1 and d["per_image"][1]["n_pred"] == 0


def test_evaluate_segmentation_needs_matching_lengths():
    with pytest.raises(ValueError, match="one entry per image, got 2 and 1"):
        evaluate_segmentation([SQUARE, SQUARE], [SQUARE])
