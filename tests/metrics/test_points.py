"""Tests for nucleikit.metrics.points (detection)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from nucleikit.metrics import (
    DetectionReport,
    DetectionScores,
    PointMatch,
    detection_scores,
    evaluate_points,
    match_points,
    precision_recall_curve,
)

# -----------------------------------------------------------------------------
# Reference implementations (slow, obviously right)
# -----------------------------------------------------------------------------


def _brute_force(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[int, float]:
    """(most pairs, least total distance) over every one-to-one matching."""
    dist = cdist(pred, truth) if len(pred) and len(truth) else np.zeros((len(pred), len(truth)))
    best = (0, 0.0)
    truth_ids = range(len(truth))
    for k in range(1, min(len(pred), len(truth)) + 1):
        for ps in itertools.combinations(range(len(pred)), k):
            for ts in itertools.permutations(truth_ids, k):
                d = dist[list(ps), list(ts)]
                if (d <= radius).all() and (k > best[0] or d.sum() < best[1]):
                    best = (k, float(d.sum()))
    return best


def _global_assignment(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[int, float]:
    """One big assignment on forbidden-cost distances, without splitting into components."""
    if len(pred) == 0 or len(truth) == 0:
        return 0, 0.0
    dist = cdist(pred, truth)
    forbidden = radius * min(dist.shape) + 1.0
    cost = np.where(dist <= radius, dist, forbidden)
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] <= radius
    return int(ok.sum()), float(cost[r, c][ok].sum())


def _naive_hungarian_then_drop(pred: np.ndarray, truth: np.ndarray, radius: float) -> int:
    """The WRONG method (PROTOCOL.md): assign on raw distances, then drop long pairs."""
    dist = cdist(pred, truth)
    r, c = linear_sum_assignment(dist)
    return int((dist[r, c] <= radius).sum())


def _assert_valid(m: PointMatch, pred: np.ndarray, truth: np.ndarray, radius: float) -> None:
    assert len(set(m.pred_index.tolist())) == m.tp
    assert len(set(m.truth_index.tolist())) == m.tp
    expected = np.hypot(*(pred[m.pred_index] - truth[m.truth_index]).T) if m.tp else np.empty(0)
    np.testing.assert_allclose(m.distances, expected, rtol=0, atol=1e-12)
    assert (m.distances <= radius).all()
    assert np.all(np.diff(m.pred_index) > 0)


# -----------------------------------------------------------------------------
# match_points
# -----------------------------------------------------------------------------

PROTOCOL_PRED = np.array([(6.37, 2.70), (0.41, 0.17)])
PROTOCOL_TRUTH = np.array([(8.13, 9.13), (6.07, 7.29)])


def test_protocol_check_case_gives_one_pair():
    m = match_points(PROTOCOL_PRED, PROTOCOL_TRUTH, 5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert m.pred_index.tolist() == [0] and m.truth_index.tolist() == [1]
    assert m.distances[0] == pytest.approx(math.hypot(0.30, 4.59))


def test_protocol_check_case_defeats_naive_hungarian():
    # Proves the test above discriminates: the wrong method finds no pair.
    assert _naive_hungarian_then_drop(PROTOCOL_PRED, PROTOCOL_TRUTH, 5) == 0


def test_most_pairs_beats_least_distance_on_a_chain():
    # On a line: t0 = 0, p0 = 4, t1 = 5, p1 = 9 (r = 5). The closest pair p0-t1
    # (distance 1) would leave one pair; the optimum takes p0-t0 and p1-t1.
    pred = np.array([(4.0, 0.0), (9.0, 0.0)])
    truth = np.array([(0.0, 0.0), (5.0, 0.0)])
    m = match_points(pred, truth, 5)
    assert m.pred_index.tolist() == [0, 1]
    assert m.truth_index.tolist() == [0, 1]
    assert m.distances.tolist() == [4.0, 4.0]


def test_least_total_distance_among_equal_counts():
    # Both perfect matchings are feasible: {p0-t0, p1-t1} = 1 + 1, {p0-t1, p1-t0} = 3 + 1.
    pred = np.array([(0.0, 0.0), (2.0, 0.0)])
    truth = np.array([(1.0, 0.0), (3.0, 0.0)])
    m = match_points(pred, truth, 5)
    assert m.truth_index.tolist() == [0, 1]
    assert m.distances.sum() == 2.0


def test_distance_exactly_radius_pairs():
    m = match_points([(0.0, 0.0)], [(3.0, 4.0)], 5.0)
    assert m.tp == 1 and m.distances.tolist() == [5.0]
    assert match_points([(0.0, 0.0)], [(3.0, 4.0)], 4.999).tp == 0


def test_tie_between_two_optimal_matchings_is_deterministic():
    # A square: every pred is 2 px from every truth, both matchings total 4.
    pred = np.array([(0.0, 0.0), (2.0, 2.0)])
    truth = np.array([(2.0, 0.0), (0.0, 2.0)])
    m1 = match_points(pred, truth, 3)
    m2 = match_points(pred, truth, 3)
    assert m1.tp == 2 and m1.distances.sum() == 4.0
    assert sorted(m1.truth_index.tolist()) == [0, 1]
    assert m1.truth_index.tolist() == m2.truth_index.tolist()


def test_duplicate_predictions_give_one_tp_one_fp():
    m = match_points([(5.0, 5.0), (5.0, 5.0)], [(5.0, 5.0)], 6)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.distances.tolist() == [0.0]  # zero distances are not lost as sparse zeros


def test_duplicate_truth_gives_one_tp_one_fn():
    m = match_points([(5.0, 5.0)], [(5.0, 6.0), (5.0, 6.0)], 6)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert m.distances.tolist() == [1.0]


@pytest.mark.parametrize(
    ("pred", "truth", "counts"),
    [
        (np.empty((0, 2)), np.array([(1.0, 1.0), (2.0, 2.0)]), (0, 0, 2)),
        (np.array([(1.0, 1.0)]), np.empty((0, 2)), (0, 1, 0)),
        (np.empty((0, 2)), np.empty((0, 2)), (0, 0, 0)),
        ([], [(1.0, 1.0)], (0, 0, 1)),
    ],
)
def test_empty_sides(pred, truth, counts):
    m = match_points(pred, truth, 6)
    assert (m.tp, m.fp, m.fn) == counts
    assert m.pred_index.shape == (0,) and m.truth_index.shape == (0,) and m.distances.shape == (0,)


def test_no_pair_within_radius():
    m = match_points([(0.0, 0.0)], [(10.0, 0.0)], 6)
    assert (m.tp, m.fp, m.fn) == (0, 1, 1)


def test_result_arrays_are_read_only_and_typed():
    m = match_points([(0.0, 0.0)], [(1.0, 0.0)], 6)
    assert m.pred_index.dtype == np.intp and m.distances.dtype == np.float64
    with pytest.raises(ValueError):
        m.distances[0] = 3.0


def test_bad_pred_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(1, 2\)"):
        match_points(np.zeros(3), np.zeros((1, 2)), 5)


def test_bad_truth_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 2\).*\(2, 3\)"):
        match_points(np.zeros((1, 2)), np.zeros((2, 3)), 5)


@pytest.mark.parametrize("radius", [0, -1.0, float("nan"), float("inf")])
def test_bad_radius(radius):
    with pytest.raises(ValueError, match="radius"):
        match_points(np.zeros((1, 2)), np.zeros((1, 2)), radius)


def test_nan_coordinate():
    with pytest.raises(ValueError, match="finite"):
        match_points([(np.nan, 0.0)], [(0.0, 0.0)], 5)


def test_random_tiny_sets_match_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n, m = rng.integers(0, 5, size=2)
        # Integer grid coordinates make ties and exact-r distances common.
        pred = rng.integers(0, 8, size=(n, 2)).astype(float)
        truth = rng.integers(0, 8, size=(m, 2)).astype(float)
        radius = float(rng.choice([1.0, 2.0, 3.0, 5.0]))
        got = match_points(pred, truth, radius)
        _assert_valid(got, pred, truth, radius)
        count, total = _brute_force(pred, truth, radius)
        assert got.tp == count
        assert got.distances.sum() == pytest.approx(total, abs=1e-9)


def test_component_split_equals_one_global_assignment():
    rng = np.random.default_rng(2)
    pred = rng.uniform(0, 400, size=(1500, 2))
    truth = rng.uniform(0, 400, size=(1400, 2))
    got = match_points(pred, truth, 8)
    _assert_valid(got, pred, truth, 8)
    count, total = _global_assignment(pred, truth, 8)
    assert got.tp == count
    assert got.distances.sum() == pytest.approx(total, rel=1e-12)


# -----------------------------------------------------------------------------
# detection_scores, evaluate_points
# -----------------------------------------------------------------------------


def _three_images():
    """Hand-built case (r = 6).

    image 0: 4 truth, 4 preds each 1 px off      -> TP 4, FP 0, FN 0, F1 1
    image 1: 1 truth, 2 preds (one 2 px off, one far) -> TP 1, FP 1, FN 0, F1 2/3
    image 2: 5 truth, no preds                   -> TP 0, FP 0, FN 5, F1 0
    pooled: TP 5, FP 1, FN 5 -> P 5/6, R 1/2, F1 10/16, ED (4*1 + 2)/5 = 1.2
    mean of per-image F1 = (1 + 2/3 + 0)/3 = 5/9
    """
    t0 = np.array([(10.0, 10.0), (30.0, 10.0), (10.0, 30.0), (30.0, 30.0)])
    p0 = t0 + np.array([1.0, 0.0])
    t1 = np.array([(50.0, 50.0)])
    p1 = np.array([(50.0, 52.0), (90.0, 90.0)])
    t2 = np.array([(5.0, 5.0), (15.0, 5.0), (25.0, 5.0), (35.0, 5.0), (45.0, 5.0)])
    p2 = np.empty((0, 2))
    return [p0, p1, p2], [t0, t1, t2]


def test_three_images_pooled_and_per_image():
    preds, truths = _three_images()
    report = evaluate_points(preds, truths, 6)
    assert isinstance(report, DetectionReport)
    pooled = report.pooled
    assert (pooled.tp, pooled.fp, pooled.fn) == (5, 1, 5)
    assert pooled.precision == pytest.approx(5 / 6)
    assert pooled.recall == pytest.approx(0.5)
    assert pooled.f1 == pytest.approx(10 / 16)
    assert pooled.ed == pytest.approx(1.2)
    assert [s.f1 for s in report.per_image] == pytest.approx([1.0, 2 / 3, 0.0])
    assert report.per_image[1].ed == pytest.approx(2.0)
    assert math.isnan(report.per_image[2].ed)
    assert report.mean_f1 == pytest.approx(5 / 9)
    assert report.mean_f1 != pytest.approx(pooled.f1)  # pooled and mean differ here


def test_report_to_dict_is_strict_json():
    preds, truths = _three_images()
    d = evaluate_points(preds, truths, 6).to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN ED must not leak into JSON
    back = json.loads(text)
    assert back["n_images"] == 3
    assert back["pooled"]["tp"] == 5
    assert back["per_image"][2]["ed"] is None
    assert back["mean_f1"] == pytest.approx(5 / 9)


def test_pooled_ed_is_mean_over_pairs_not_over_images():
    # image a: two pairs at 1 px; image b: one pair at 4 px -> (1 + 1 + 4)/3 = 2, not (1 + 4)/2.
    ma = match_points([(0.0, 0.0), (10.0, 0.0)], [(1.0, 0.0), (11.0, 0.0)], 6)
    mb = match_points([(0.0, 0.0)], [(0.0, 4.0)], 6)
    assert detection_scores([ma, mb]).ed == pytest.approx(2.0)


def test_zero_over_zero_nothing_to_find_nothing_found():
    s = detection_scores([match_points([], [], 6)])
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    assert math.isnan(s.ed)


def test_zero_over_zero_no_predictions_but_truth():
    s = detection_scores([match_points([], [(1.0, 1.0)], 6)])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)


def test_zero_over_zero_predictions_but_no_truth():
    s = detection_scores([match_points([(1.0, 1.0)], [], 6)])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)


def test_detection_scores_of_no_images():
    with pytest.raises(ValueError, match="at least one"):
        detection_scores([])


def test_evaluate_points_length_mismatch():
    with pytest.raises(ValueError, match="1 and 2"):
        evaluate_points([np.zeros((1, 2))], [np.zeros((1, 2)), np.zeros((1, 2))], 6)


def test_detection_scores_to_dict_values():
    s = DetectionScores(tp=1, fp=2, fn=3, precision=1 / 3, recall=0.25, f1=2 / 7, ed=1.5)
    assert s.to_dict() == {"tp": 1, "fp": 2, "fn": 3, "precision": 1 / 3, "recall": 0.25, "f1": 2 / 7, "ed": 1.5}


# -----------------------------------------------------------------------------
# precision_recall_curve
# -----------------------------------------------------------------------------


def test_precision_recall_curve_by_hand():
    # truth at x = 0 and x = 10; preds: (1, 0) s = .9 [TP], (30, 30) s = .7 [FP], (10, 2) s = .5 [TP]
    truth = np.array([(0.0, 0.0), (10.0, 0.0)])
    pred = np.array([(1.0, 0.0), (30.0, 30.0), (10.0, 2.0)])
    score = np.array([0.9, 0.7, 0.5])
    curve = precision_recall_curve([pred], [score], [truth], 3, [0.8, 0.0, 0.9, 0.6, 1.0])
    assert curve["thresholds"].tolist() == [0.0, 0.6, 0.8, 0.9, 1.0]
    assert curve["tp"].tolist() == [2, 1, 1, 1, 0]
    assert curve["fp"].tolist() == [1, 1, 0, 0, 0]
    assert curve["fn"].tolist() == [0, 1, 1, 1, 2]
    np.testing.assert_allclose(curve["precision"], [2 / 3, 0.5, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(curve["recall"], [1.0, 0.5, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(curve["f1"], [0.8, 0.5, 2 / 3, 2 / 3, 0.0])


def test_precision_recall_curve_rematches_each_threshold():
    # With both preds, the optimum pairs the closer p1 with t0 and p0 is an FP.
    # At t = 0.5 only p0 is kept: re-matching pairs it (TP 1); restricting the
    # all-preds matching to the kept preds would wrongly give TP 0.
    truth = np.array([(0.0, 0.0)])
    pred = np.array([(2.0, 0.0), (0.0, 1.0)])
    curve = precision_recall_curve([pred], [np.array([0.9, 0.1])], [truth], 6, [0.0, 0.5])
    assert curve["tp"].tolist() == [1, 1]
    assert curve["fp"].tolist() == [1, 0]


def test_precision_recall_curve_equals_evaluate_points_on_kept_predictions():
    rng = np.random.default_rng(3)
    preds, scores, truths = [], [], []
    for _ in range(4):
        n, m = rng.integers(0, 40, size=2)
        preds.append(rng.uniform(0, 60, size=(n, 2)))
        scores.append(rng.choice([0.1, 0.3, 0.5, 0.7], size=n))
        truths.append(rng.uniform(0, 60, size=(m, 2)))
    thresholds = [0.7, 0.0, 0.3, 0.5, 0.4, 0.9]
    curve = precision_recall_curve(preds, scores, truths, 6, thresholds)
    for k, t in enumerate(curve["thresholds"]):
        kept = [p[s >= t] for p, s in zip(preds, scores)]
        pooled = evaluate_points(kept, truths, 6).pooled
        assert (curve["tp"][k], curve["fp"][k], curve["fn"][k]) == (pooled.tp, pooled.fp, pooled.fn)
        assert curve["f1"][k] == pytest.approx(pooled.f1)


def test_precision_recall_curve_score_shape_mismatch():
    with pytest.raises(ValueError, match="scores"):
        precision_recall_curve([np.zeros((2, 2))], [np.zeros(3)], [np.zeros((1, 2))], 6, [0.5])


def test_precision_recall_curve_nan_threshold():
    with pytest.raises(ValueError, match="thresholds"):
        precision_recall_curve([np.zeros((1, 2))], [np.zeros(1)], [np.zeros((1, 2))], 6, [np.nan])
