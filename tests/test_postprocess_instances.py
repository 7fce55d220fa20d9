"""Tests for the instance section of nucleikit.postprocess (watershed, outlines, measurements)."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.io.labels import polygons_to_labels
from nucleikit.postprocess import instances_from_probability, label_measurements, label_outlines

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


# --- label_outlines -----------------------------------------------------------------------------


def _blobs():
    labels = np.zeros((30, 40), np.int32)
    labels[_disc(10, 10, 6)[:30, :40]] = 3
    labels[2:8, 25:37] = 7  # rectangle
    labels[20, 20] = 9  # single pixel
    labels[_disc(0, 29, 5)[:30, :40]] = 12  # disc cut by the bottom-left corner
    return labels


def test_one_outline_per_label_in_ascending_order():
    labels = _blobs()
    outlines = label_outlines(labels)
    assert len(outlines) == 4
    assert outlines[2].shape == (4, 2)  # the single pixel: a diamond
    np.testing.assert_allclose(sorted(map(tuple, outlines[2])), [(19.5, 20), (20, 19.5), (20, 20.5), (20.5, 20)])


def test_outlines_are_closed_rings():
    for ring in label_outlines(_blobs()):
        steps = np.diff(np.vstack([ring, ring[:1]]), axis=0)  # including last -> first
        # Steps are 1 along a straight edge, sqrt(1/2) across a corner.
        assert set(np.round(np.hypot(*steps.T), 6)) <= {1.0, round(np.sqrt(0.5), 6)}
        assert not np.array_equal(ring[0], ring[-1])  # closing vertex not repeated


def test_outline_vertices_lie_between_an_inside_and_an_outside_pixel():
    labels = _blobs()
    padded = np.pad(labels, 1)  # outside the image counts as outside
    for value, ring in zip([3, 7, 9, 12], label_outlines(labels)):
        for x, y in ring:
            # One coordinate is a pixel centre, the other half-way between two centres.
            if x == np.floor(x):
                a, b = (int(np.floor(y)), int(x)), (int(np.ceil(y)), int(x))
            else:
                a, b = (int(y), int(np.floor(x))), (int(y), int(np.ceil(x)))
            inside = [padded[r + 1, c + 1] == value for r, c in (a, b)]
            assert sorted(inside) == [False, True], (value, x, y)


def test_outlines_rasterise_back_to_the_labels():
    labels = _blobs()
    back = polygons_to_labels(label_outlines(labels), labels.shape)
    values = np.unique(labels)[1:]
    # Outline k (ascending label order) becomes label k + 1.
    np.testing.assert_array_equal(back, (np.searchsorted(values, labels) + 1) * (labels > 0))


def test_no_labels_no_outlines():
    assert label_outlines(np.zeros((5, 5), np.int32)) == []


# --- label_measurements -------------------------------------------------------------------------


def test_measurements_of_a_rectangle():
    labels = np.zeros((10, 12), np.int32)
    labels[2:4, 3:9] = 5  # rows 2-3, columns 3-8
    image = np.zeros((10, 12))
    image[2, 3:9] = 1.0
    m = label_measurements(labels, image)
    assert m["label"].tolist() == [5] and m["area"].tolist() == [12]
    assert m["x"].tolist() == [5.5] and m["y"].tolist() == [2.5]  # x = column, y = row
    assert m["mean_intensity"].tolist() == [0.5]


def test_measurements_with_a_colour_image():
    labels = np.array([[1, 1, 0], [0, 2, 2]], np.int32)
    image = np.stack([np.ones((2, 3)), np.zeros((2, 3)) + 0.25, np.arange(6.0).reshape(2, 3)], axis=-1)
    m = label_measurements(labels, image)
    assert m["mean_intensity"].shape == (2, 3)
    np.testing.assert_allclose(m["mean_intensity"], [[1.0, 0.25, 0.5], [1.0, 0.25, 4.5]])
    assert "mean_intensity" not in label_measurements(labels)


def test_measurements_refuse_an_image_of_another_size():
    with pytest.raises(ValueError, match="image must be"):
        label_measurements(np.zeros((4, 4), np.int32), np.zeros((4, 5)))


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
