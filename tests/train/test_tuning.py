import numpy as np
import pytest

from nucleikit.train.tuning import tune_peaks


def _blob_map(centres, shape, heights):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    m = np.zeros(shape, np.float32)
    for (x, y), h in zip(centres, heights):
        m = np.maximum(m, h * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0))
    return m


def test_tuning_picks_threshold_that_drops_the_false_peak():
    # Two true nuclei with strong peaks and one spurious weak peak (0.3 of max).
    centres = [(10, 10), (30, 10), (20, 30)]
    m = _blob_map(centres, (40, 40), [1.0, 0.9, 0.3])
    truth = np.array([[10.0, 10.0], [30.0, 10.0]])
    res = tune_peaks([m], [truth], radius=3, xi_grid=[0.1, 0.2, 0.5], min_distance_grid=[2, 4])
    assert res.f1 == pytest.approx(1.0)
    assert res.threshold_rel == 0.5  # 0.1 and 0.2 keep the spurious peak
    assert res.min_distance == 2  # ties go to the smaller distance
    assert len(res.table) == 6
    low = [r for r in res.table if r["threshold_rel"] == 0.1 and r["min_distance"] == 2][0]
    assert (low["tp"], low["fp"], low["fn"]) == (2, 1, 0)


def test_tuning_min_distance_merges_close_peaks():
    # Two peaks 5 px apart but only one nucleus: a larger distance removes the extra.
    m = _blob_map([(10, 10), (15, 10)], (20, 30), [1.0, 0.95])
    truth = np.array([[10.0, 10.0]])
    res = tune_peaks([m], [truth], radius=2, xi_grid=[0.5], min_distance_grid=[2, 6])
    assert res.min_distance == 6 and res.f1 == pytest.approx(1.0)


def test_tuning_empty_map():
    res = tune_peaks([np.zeros((5, 5))], [np.array([[2.0, 2.0]])], radius=2, xi_grid=[0.5], min_distance_grid=[2])
    assert res.f1 == 0.0 and res.recall == 0.0


# --- the absolute floor ---------------------------------------------------------------------

# Image A: true nuclei at 0.8, 0.7, 0.6 and a faint true one at 0.3; three spurious peaks at
# 0.32-0.34 (no nucleus). Image B: no nucleus, background ripples at 0.05 and 0.04.
_A_TRUE = [(5, 5, 0.8), (15, 5, 0.7), (25, 5, 0.6), (35, 5, 0.3)]
_A_SPURIOUS = [(5, 15, 0.32), (15, 15, 0.33), (25, 15, 0.34)]
_B_BACKGROUND = [(5, 5, 0.05), (15, 5, 0.04)]


def _point_map(peaks, shape=(20, 40)):
    m = np.zeros(shape, np.float32)
    for x, y, v in peaks:
        m[y, x] = v
    return m


def _floor_case():
    maps = [_point_map(_A_TRUE + _A_SPURIOUS), _point_map(_B_BACKGROUND)]
    truths = [np.array([[x, y] for x, y, _ in _A_TRUE], float), np.zeros((0, 2))]
    return maps, truths


def test_tuning_picks_the_largest_floor_that_keeps_every_nucleus_the_lowest_xi_finds():
    # Step 1 (floor 0), hand-computed: xi 0.1 keeps all 9 peaks (tp 4, fp 5, F1 8/13);
    # xi 0.5 keeps 0.8, 0.7, 0.6 in A (B's threshold is 0.025: both ripples) -> tp 3, fp 2,
    # fn 1, F1 2/3: xi = 0.5.
    # Step 2: a floor above 0.05 removes B's ripples (F1 6/7); up to 0.3 the lowest xi still
    # finds all 4 nuclei; 0.31 loses the faint one (recall at xi 0.1: 3/4), so the scan stops
    # there and 0.5, where F1 at xi 0.5 is still 6/7, is never taken.
    maps, truths = _floor_case()
    res = tune_peaks(maps, truths, radius=2, xi_grid=[0.1, 0.5], min_distance_grid=[3],
                     threshold_abs_grid=[0.03, 0.045, 0.06, 0.2, 0.31, 0.5], tolerance=0.002)
    assert res.threshold_rel == 0.5
    assert res.threshold_abs == 0.2
    assert (res.precision, res.recall) == (1.0, 0.75) and res.f1 == pytest.approx(6 / 7)
    rows = {row["threshold_abs"]: row for row in res.floor_table}
    assert list(rows) == [0.0, 0.03, 0.045, 0.06, 0.2, 0.31]  # 0 always tried; stops at the first loss
    assert rows[0.0]["f1"] == pytest.approx(2 / 3) and rows[0.045]["fp"] == 1 and rows[0.06]["fp"] == 0
    assert rows[0.2]["recall_lowest_xi"] == 1.0 and rows[0.31]["recall_lowest_xi"] == 0.75


def test_default_grid_tunes_no_floor_and_bad_floors_are_refused():
    maps, truths = _floor_case()
    res = tune_peaks(maps, truths, radius=2, xi_grid=[0.5], min_distance_grid=[3])
    assert res.threshold_abs == 0.0 and res.floor_table == []
    assert res.f1 == pytest.approx(2 / 3)  # the relative rule alone, as before the floor existed
    for bad in ([-0.1], [float("nan")], []):
        with pytest.raises(ValueError, match="threshold_abs_grid"):
            tune_peaks(maps, truths, radius=2, xi_grid=[0.5], min_distance_grid=[3], threshold_abs_grid=bad)


def test_tune_floor_keeps_a_given_xi_and_agrees_with_the_joint_search():
    from nucleikit.train.tuning import tune_floor

    maps, truths = _floor_case()
    grid = [0.03, 0.045, 0.06, 0.2, 0.31, 0.5]
    res = tune_floor(maps, truths, radius=2, xi=0.5, min_distance=3, lowest_xi=0.1, threshold_abs_grid=grid)
    joint = tune_peaks(maps, truths, radius=2, xi_grid=[0.1, 0.5], min_distance_grid=[3], threshold_abs_grid=grid)
    assert res.threshold_abs == joint.threshold_abs == 0.2
    assert res.f1 == joint.f1 and res.table == joint.floor_table
    only_zero = tune_floor(maps, truths, radius=2, xi=0.5, min_distance=3, lowest_xi=0.1, threshold_abs_grid=[0])
    assert only_zero.threshold_abs == 0.0 and only_zero.f1 == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="lowest_xi"):
        tune_floor(maps, truths, radius=2, xi=0.5, min_distance=3, lowest_xi=0.6)
