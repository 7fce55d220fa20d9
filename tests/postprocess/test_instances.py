"""nucleikit.postprocess.instances: watershed instances from a probability map or an instance head's maps."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.postprocess import instances_from_probability

ROWS, COLS = np.mgrid[0:40, 0:64]


def _disc(x, y, r):
    return (COLS - x) ** 2 + (ROWS - y) ** 2 <= r**2


# Two discs of radius 10 whose centres are 16 px apart: one touching blob.
LEFT, RIGHT = _disc(20, 20, 10), _disc(36, 20, 10)
TOUCHING = (LEFT | RIGHT).astype(np.float32)


# --- instances_from_probability ---------------------------------------------------------------


def test_touching_discs_are_split_by_the_watershed():
    labels = instances_from_probability(TOUCHING, min_distance=5)
    assert labels.dtype == np.int32 and labels.shape == TOUCHING.shape
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    # Each instance holds one disc's centre, and the foreground is kept whole.
    assert labels[20, 20] != labels[20, 36] and labels[20, 20] > 0 and labels[20, 36] > 0
    np.testing.assert_array_equal(labels > 0, TOUCHING > 0.5)
    # The cut runs through the neck, near x = 28: no pixel strays far to the wrong side.
    left = labels == labels[20, 20]
    assert COLS[left].max() <= 29 and COLS[~left & (labels > 0)].min() >= 27


def test_without_the_watershed_touching_discs_stay_one():
    labels = instances_from_probability(TOUCHING, watershed=False)
    assert sorted(np.unique(labels).tolist()) == [0, 1]


def test_a_large_min_distance_keeps_one_marker():
    labels = instances_from_probability(TOUCHING, min_distance=20)
    assert sorted(np.unique(labels).tolist()) == [0, 1]


def test_seed_points_choose_the_instances():
    two = instances_from_probability(TOUCHING, seeds=[(20.0, 20.0), (36.2, 19.8)])
    assert sorted(np.unique(two).tolist()) == [0, 1, 2] and two[20, 20] != two[20, 36]
    one = instances_from_probability(TOUCHING, seeds=[(20.0, 20.0)])
    assert sorted(np.unique(one).tolist()) == [0, 1]


def test_seeds_on_background_are_ignored_and_unseeded_components_kept():
    prob = (_disc(12, 12, 6) | _disc(50, 30, 6)).astype(np.float32)
    # One seed on the first disc, one on background: the second disc has no seed
    # but stays one instance rather than vanishing.
    labels = instances_from_probability(prob, seeds=[(12.0, 12.0), (40.0, 5.0)])
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(labels > 0, prob > 0.5)


def test_seed_outside_the_map_is_refused():
    with pytest.raises(ValueError, match=r"1 seeds lie outside the 64 x 40 map, e.g. \(64.6, 3\)"):
        instances_from_probability(TOUCHING, seeds=[(64.6, 3.0)])


def test_small_objects_are_removed():
    prob = _disc(20, 20, 8).astype(np.float32)
    prob[35:37, 55:57] = 1.0  # a 4 px speck
    labels = instances_from_probability(prob, min_size=10)
    assert sorted(np.unique(labels).tolist()) == [0, 1]
    assert not labels[35:37, 55:57].any()
    assert (instances_from_probability(prob, min_size=0)[35:37, 55:57] > 0).all()


def test_a_plateau_of_the_distance_map_is_one_marker():
    # A 5 px wide bar: its distance map is a ridge of equal maxima along the middle
    # row, where peak_local_max keeps pixels min_distance apart; they are one nucleus.
    prob = np.zeros((12, 40), np.float32)
    prob[4:9, 3:37] = 1.0
    labels = instances_from_probability(prob, min_distance=3)
    assert sorted(np.unique(labels).tolist()) == [0, 1]
    line = np.zeros((10, 30), np.float32)
    line[5, 3:25] = 1.0  # one pixel wide: the distance map is flat
    assert sorted(np.unique(instances_from_probability(line, min_size=5)).tolist()) == [0, 1]


def test_threshold_is_strict():
    prob = np.zeros((20, 20), np.float32)
    prob[5:15, 5:15] = 0.5
    assert not instances_from_probability(prob, threshold=0.5).any()
    assert instances_from_probability(prob, threshold=0.49).max() == 1


def test_instances_are_numbered_in_raster_order():
    prob = (_disc(50, 8, 5) | _disc(10, 30, 5)).astype(np.float32)
    labels = instances_from_probability(prob)
    assert labels[8, 50] == 1 and labels[30, 10] == 2  # the upper disc comes first


def test_empty_map_gives_no_instances():
    labels = instances_from_probability(np.zeros((8, 8), np.float32))
    assert labels.shape == (8, 8) and not labels.any()


def test_bad_min_size_is_refused():
    with pytest.raises(ValueError, match="min_size must be an integer >= 0"):
        instances_from_probability(TOUCHING, min_size=-1)


# --- instances_from_maps ----------------------------------------------------------------------


def _instance_maps(labels):
    from nucleikit.targets import instance_targets

    return np.moveaxis(instance_targets(labels), -1, 0)


def _touching_labels():
    labels = np.zeros(TOUCHING.shape, np.int32)
    labels[LEFT] = 1
    labels[RIGHT & ~LEFT] = 2
    return labels


@pytest.mark.parametrize("markers", ["distance", "boundary"])
def test_marker_watershed_splits_two_touching_discs(markers):
    from nucleikit.postprocess import instances_from_maps

    truth = _touching_labels()
    maps = _instance_maps(truth)
    labels = instances_from_maps(maps, threshold=0.5, marker_threshold=0.5, markers=markers, min_size=5)
    assert labels.dtype == np.int32 and labels.shape == truth.shape
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert np.array_equal(labels > 0, truth > 0)  # the foreground is kept whole
    # each instance is one disc, up to the seam pixels the flooding may give either side
    for k in (1, 2):
        inst = labels == truth[20, 20 if k == 1 else 36]
        disc = truth == k
        assert (inst & disc).sum() / (inst | disc).sum() > 0.95


def test_marker_watershed_keeps_unmarked_components_and_drops_small_ones():
    from nucleikit.postprocess import instances_from_maps

    maps = np.zeros((3, 20, 30), np.float32)
    maps[0, 2:8, 2:8] = 0.9  # a blob whose distance map never rises above the marker threshold
    maps[2, 2:8, 2:8] = 0.2
    maps[0, 15, 25] = 0.9  # one-pixel speck
    maps[2, 15, 25] = 0.9
    labels = instances_from_maps(maps, threshold=0.5, marker_threshold=0.5, min_size=4)
    assert sorted(np.unique(labels).tolist()) == [0, 1]
    assert (labels == 1).sum() == 36 and labels[15, 25] == 0
    kept = instances_from_maps(maps, threshold=0.5, marker_threshold=0.5, min_size=1)
    assert kept[15, 25] > 0 and kept.max() == 2


def test_marker_watershed_bad_input():
    from nucleikit.postprocess import instances_from_maps

    good = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="3, H, W"):
        instances_from_maps(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="markers"):
        instances_from_maps(good, markers="peaks")
    with pytest.raises(ValueError, match="finite"):
        bad = good.copy()
        bad[0, 0, 0] = np.nan
        instances_from_maps(bad)
    with pytest.raises(ValueError, match="NaN"):
        instances_from_maps(good, threshold=float("nan"))
    assert not instances_from_maps(good).any()


def test_raster_order_equals_the_unique_based_reference():
    from nucleikit.postprocess.instances import _raster_order

    def reference(labels):
        values, first = np.unique(labels.ravel(), return_index=True)
        values, first = values[values != 0], first[values != 0]
        lookup = np.zeros(int(values.max(initial=0)) + 1, np.int32)
        lookup[values[np.argsort(first)]] = np.arange(1, values.size + 1, dtype=np.int32)
        return lookup[labels]

    rng = np.random.default_rng(3)
    cases = [np.zeros((4, 5), np.int32), np.array([[0, 7], [3, 7]], np.int32), np.array([[5]], np.int32)]
    cases += [rng.integers(0, int(rng.integers(1, 30)), (int(rng.integers(1, 40)), int(rng.integers(1, 40))))
              .astype(np.int32) for _ in range(20)]
    for labels in cases:
        got = _raster_order(labels)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, reference(labels))
