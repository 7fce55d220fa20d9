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
