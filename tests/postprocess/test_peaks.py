"""nucleikit.postprocess.peaks: peak finding, thresholds, tile ownership."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.postprocess import (
    filter_points_in_window,
    find_peaks,
    peak_threshold,
    points_in_window,
    relative_threshold,
)

# -----------------------------------------------------------------------------
# find_peaks
# -----------------------------------------------------------------------------


def test_all_zero_map_has_no_peaks():
    points, scores = find_peaks(np.zeros((8, 8), np.float32), min_distance=2, threshold=0.0)
    assert points.shape == (0, 2) and points.dtype == np.float64
    assert scores.shape == (0,) and scores.dtype == np.float32


def test_zero_size_map_has_no_peaks():
    points, scores = find_peaks(np.zeros((0, 5), np.float32), min_distance=2, threshold=0.0)
    assert points.shape == (0, 2) and scores.shape == (0,)


def test_one_peak_is_returned_as_x_col_y_row():
    prob = np.zeros((7, 9), np.float32)
    prob[2, 6] = 0.8  # row 2, column 6 -> (x, y) = (6, 2)
    points, scores = find_peaks(prob, min_distance=2, threshold=0.1)
    assert points.tolist() == [[6.0, 2.0]]
    assert scores.tolist() == [pytest.approx(0.8)]


def test_peak_on_the_border_is_kept():
    prob = np.zeros((6, 6), np.float32)
    prob[0, 5] = 0.9  # top-right corner pixel
    prob[3, 0] = 0.7  # left edge
    points, _ = find_peaks(prob, min_distance=3, threshold=0.1)
    assert points.tolist() == [[5.0, 0.0], [0.0, 3.0]]


def test_exclude_border_drops_peaks_within_min_distance_of_edge():
    prob = np.zeros((10, 10), np.float32)
    prob[0, 5] = 0.9
    prob[5, 5] = 0.7
    points, _ = find_peaks(prob, min_distance=2, threshold=0.1, exclude_border=True)
    assert points.tolist() == [[5.0, 5.0]]


def test_two_peaks_closer_than_min_distance_keep_the_higher():
    prob = np.zeros((9, 9), np.float32)
    prob[4, 2] = 0.6
    prob[4, 5] = 0.9  # 3 px apart, min_distance 4
    points, scores = find_peaks(prob, min_distance=4, threshold=0.1)
    assert points.tolist() == [[5.0, 4.0]]
    assert scores.tolist() == [pytest.approx(0.9)]


def test_suppression_is_euclidean_not_chebyshev():
    # Diagonal offset (3, 3): Euclidean 4.24 > 4 keeps both; a square (Chebyshev)
    # window of half-size 4 would drop the lower one.
    prob = np.zeros((12, 12), np.float32)
    prob[2, 2] = 0.9
    prob[5, 5] = 0.6
    points, _ = find_peaks(prob, min_distance=4, threshold=0.1)
    assert points.tolist() == [[2.0, 2.0], [5.0, 5.0]]


def test_threshold_is_strict():
    prob = np.zeros((9, 9), np.float32)
    prob[1, 1] = 0.5
    prob[7, 7] = 0.75
    points, _ = find_peaks(prob, min_distance=2, threshold=0.5)
    assert points.tolist() == [[7.0, 7.0]]  # 0.5 is not > 0.5
    points, _ = find_peaks(prob, min_distance=2, threshold=0.49)
    assert points.tolist() == [[7.0, 7.0], [1.0, 1.0]]


def test_order_is_descending_score_then_y_then_x():
    prob = np.zeros((20, 20), np.float32)
    prob[10, 3] = 0.5   # (3, 10)
    prob[2, 15] = 0.5   # (15, 2)
    prob[2, 9] = 0.5    # (9, 2)
    prob[16, 16] = 0.9  # (16, 16)
    points, scores = find_peaks(prob, min_distance=2, threshold=0.1)
    assert points.tolist() == [[16.0, 16.0], [9.0, 2.0], [15.0, 2.0], [3.0, 10.0]]
    assert scores.tolist() == pytest.approx([0.9, 0.5, 0.5, 0.5])


def test_plateau_keeps_first_pixel_in_raster_order():
    # A 2x2 plateau is one nucleus: with min_distance 3 only its top-left pixel stays.
    prob = np.zeros((10, 10), np.float32)
    prob[4:6, 6:8] = 1.0
    for _ in range(2):  # and the same answer every time
        points, _ = find_peaks(prob, min_distance=3, threshold=0.5)
        assert points.tolist() == [[6.0, 4.0]]


def test_equal_peaks_far_apart_are_all_kept():
    prob = np.zeros((10, 20), np.float32)
    prob[5, 2] = prob[5, 10] = prob[5, 18] = 0.7
    points, _ = find_peaks(prob, min_distance=3, threshold=0.1)
    assert points.tolist() == [[2.0, 5.0], [10.0, 5.0], [18.0, 5.0]]


def test_integer_map_is_accepted():
    prob = np.zeros((5, 5), np.uint8)
    prob[2, 3] = 200
    points, scores = find_peaks(prob, min_distance=1, threshold=100)
    assert points.tolist() == [[3.0, 2.0]] and scores.tolist() == [200.0]


def test_float64_map_returns_float32_scores():
    prob = np.zeros((5, 5), np.float64)
    prob[1, 1] = 0.25
    _, scores = find_peaks(prob, min_distance=1, threshold=0.0)
    assert scores.dtype == np.float32 and scores.tolist() == [0.25]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_min_distance(bad):
    with pytest.raises(ValueError, match="min_distance"):
        find_peaks(np.zeros((4, 4)), min_distance=bad, threshold=0.1)


def test_integral_float_min_distance_is_accepted():
    prob = np.zeros((9, 9))
    prob[4, 2], prob[4, 5] = 0.6, 0.9
    points, _ = find_peaks(prob, min_distance=4.0, threshold=0.1)
    assert points.tolist() == [[5.0, 4.0]]


def test_three_dimensional_map_is_rejected():
    with pytest.raises(ValueError, match=r"\(H, W\).*\(2, 4, 4\)"):
        find_peaks(np.zeros((2, 4, 4)), min_distance=1, threshold=0.1)


def test_nan_in_map_is_rejected():
    prob = np.zeros((4, 4))
    prob[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_peaks(prob, min_distance=1, threshold=0.1)


def test_nan_threshold_is_rejected():
    with pytest.raises(ValueError, match="threshold"):
        find_peaks(np.zeros((4, 4)), min_distance=1, threshold=float("nan"))


def test_non_bool_exclude_border_is_rejected():
    with pytest.raises(ValueError, match="exclude_border"):
        find_peaks(np.zeros((4, 4)), min_distance=1, threshold=0.1, exclude_border=2)


def test_tile_with_halo_finds_the_same_core_peaks():
    # Smooth random map; two tiles (cores split at column 32) read with a
    # min_distance halo give exactly the untiled peaks.
    from scipy import ndimage

    rng = np.random.default_rng(0)
    prob = ndimage.gaussian_filter(rng.random((48, 64)), 2).astype(np.float32)
    md, thr = 3, float(np.quantile(prob, 0.5))
    whole, whole_scores = find_peaks(prob, min_distance=md, threshold=thr)
    parts, part_scores = [], []
    for x0, x1 in [(0, 32), (32, 64)]:
        rx0, rx1 = max(0, x0 - md), min(64, x1 + md)
        pts, sc = find_peaks(prob[:, rx0:rx1], min_distance=md, threshold=thr)
        pts = pts + [rx0, 0]
        keep = points_in_window(pts, (0, x0, 48, x1))
        parts.append(pts[keep])
        part_scores.append(sc[keep])
    tiled = np.concatenate(parts)
    order = np.lexsort((tiled[:, 0], tiled[:, 1], -np.concatenate(part_scores)))
    assert len(whole) > 5
    np.testing.assert_array_equal(tiled[order], whole)


# -----------------------------------------------------------------------------
# relative_threshold
# -----------------------------------------------------------------------------


def test_relative_threshold_is_xi_times_max():
    assert relative_threshold(0.8, 0.5) == pytest.approx(0.4)
    assert relative_threshold(2.0, 0.0) == 0.0


@pytest.mark.parametrize("xi", [-0.1, 1.5, float("nan")])
def test_relative_threshold_bad_xi(xi):
    with pytest.raises(ValueError, match="xi"):
        relative_threshold(1.0, xi)


def test_relative_threshold_bad_max():
    with pytest.raises(ValueError, match="prob_max"):
        relative_threshold(float("inf"), 0.5)


# -----------------------------------------------------------------------------
# peak_threshold: xi * max combined with the absolute floor
# -----------------------------------------------------------------------------


def _four_peaks() -> np.ndarray:
    """Isolated single-pixel peaks of 0.9, 0.5, 0.3, 0.1 on a zero 9 x 31 map (8 px apart)."""
    prob = np.zeros((9, 31), np.float32)
    for x, value in zip((3, 11, 19, 27), (0.9, 0.5, 0.3, 0.1)):
        prob[4, x] = value
    return prob


@pytest.mark.parametrize(
    ("xi", "floor", "threshold", "kept_x"),
    [
        (0.5, 0.0, 0.45, [3, 11]),  # the relative rule alone (old weights): 0.5 * 0.9
        (0.2, 0.0, 0.18, [3, 11, 19]),
        (0.2, 0.35, 0.35, [3, 11]),  # the floor is the stricter rule: 0.3 goes
        (0.5, 0.6, 0.6, [3]),
        (0.1, 0.1, 0.1, [3, 11, 19]),  # strictly above: 0.1 itself is not kept
        (0.5, 0.95, 0.95, []),  # a floor above the map's maximum: nothing
    ],
)
def test_peak_threshold_combines_xi_and_floor_on_a_hand_made_map(xi, floor, threshold, kept_x):
    prob = _four_peaks()
    thr = peak_threshold(float(prob.max()), xi=xi, threshold_abs=floor)
    assert thr == pytest.approx(threshold)
    points, _ = find_peaks(prob, min_distance=3, threshold=thr)
    assert sorted(points[:, 0].tolist()) == kept_x
    assert (points[:, 1] == 4).all()


def test_floor_removes_a_faint_map_that_xi_alone_keeps():
    # A background map: every value <= 0.05, so xi * max is tiny and keeps its ripples.
    prob = (0.05 * _four_peaks() / 0.9).astype(np.float32)
    relative_only, _ = find_peaks(prob, min_distance=3, threshold=peak_threshold(0.05, xi=0.5))
    assert len(relative_only) == 2  # 0.05 and 0.0278 are above 0.025
    floored, _ = find_peaks(prob, min_distance=3, threshold=peak_threshold(0.05, xi=0.5, threshold_abs=0.1))
    assert len(floored) == 0


def test_zero_floor_is_the_relative_rule_and_nowhere_positive_maps_have_no_nuclei():
    assert peak_threshold(0.8, xi=0.5) == relative_threshold(0.8, 0.5) == pytest.approx(0.4)
    assert peak_threshold(0.0, xi=0.5, threshold_abs=0.2) == float("inf")
    assert peak_threshold(-0.3, xi=0.0) == float("inf")
    assert peak_threshold(float("-inf"), xi=0.5) == float("inf")  # no tile run yet


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"map_max": 1.0, "xi": 0.5, "threshold_abs": -0.1}, "threshold_abs"),
        ({"map_max": 1.0, "xi": 0.5, "threshold_abs": float("nan")}, "threshold_abs"),
        ({"map_max": 1.0, "xi": 0.5, "threshold_abs": float("inf")}, "threshold_abs"),
        ({"map_max": float("nan"), "xi": 0.5}, "map_max"),
        ({"map_max": float("inf"), "xi": 0.5}, "map_max"),
        ({"map_max": 1.0, "xi": 1.5}, "xi"),
        ({"map_max": 0.0, "xi": -0.5}, "xi"),
    ],
)
def test_peak_threshold_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        peak_threshold(kwargs.pop("map_max"), **kwargs)


# -----------------------------------------------------------------------------
# points_in_window, filter_points_in_window
# -----------------------------------------------------------------------------


def test_window_is_half_open_in_y0_x0_y1_x1_order():
    # window rows 10..19, columns 0..4
    pts = np.array([(0.0, 10.0), (4.0, 19.0), (5.0, 10.0), (0.0, 20.0), (0.0, 9.0)])
    assert points_in_window(pts, (10, 0, 20, 5)).tolist() == [True, True, False, False, False]
    assert filter_points_in_window(pts, (10, 0, 20, 5)).tolist() == [[0.0, 10.0], [4.0, 19.0]]


def test_window_uses_rounded_pixel():
    # x = 4.49 is pixel 4 (inside), x = 4.5 is pixel 5 (outside); y = 9.5 is pixel 10 (inside)
    pts = np.array([(4.49, 12.0), (4.5, 12.0), (2.0, 9.5), (-0.5, 12.0), (-0.51, 12.0)])
    assert points_in_window(pts, (10, 0, 20, 5)).tolist() == [True, False, True, True, False]


def test_adjacent_windows_own_each_point_exactly_once():
    rng = np.random.default_rng(4)
    pts = rng.uniform(-0.49, 99.49, size=(500, 2))
    pts[:10, 0] = np.arange(10) * 10 - 0.5  # on pixel boundaries at the seams
    windows = [(y, x, y + 25, x + 20) for y in range(0, 100, 25) for x in range(0, 100, 20)]
    counts = sum(points_in_window(pts, w).astype(int) for w in windows)
    assert (counts == 1).all()


def test_empty_points_in_window():
    assert filter_points_in_window(np.empty((0, 2)), (0, 0, 5, 5)).shape == (0, 2)
    assert filter_points_in_window([], (0, 0, 5, 5)).shape == (0, 2)


def test_bad_window():
    with pytest.raises(ValueError, match="y0 <= y1"):
        points_in_window(np.zeros((1, 2)), (5, 0, 4, 3))


def test_bad_points_shape_in_window():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        points_in_window(np.zeros((2, 3)), (0, 0, 4, 4))


def test_higher_threshold_equals_filtering_lower_threshold_peaks():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    prob = ndimage.gaussian_filter(rng.random((40, 40)), 1.5).astype(np.float32)
    prob[10:12, 10:12] = prob.max()  # a plateau too
    low_pts, low_sc = find_peaks(prob, min_distance=2, threshold=float(prob.min()))
    for t in np.quantile(prob, [0.3, 0.6, 0.9]):
        pts, _ = find_peaks(prob, min_distance=2, threshold=float(t))
        np.testing.assert_array_equal(pts, low_pts[low_sc > t])
