"""nucleikit.postprocess.regions: outlines and measurements of a label image, against the
``regionprops`` implementation they replaced (kept here as the slow reference)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nucleikit.io.labels import polygons_to_labels
from nucleikit.postprocess import label_measurements, label_outlines

ROWS, COLS = np.mgrid[0:40, 0:64]


def _disc(x, y, r):
    return (COLS - x) ** 2 + (ROWS - y) ** 2 <= r**2


# --- the slow reference: one regionprops object per instance ------------------------------------


def _reference_outlines(labels):
    from skimage.measure import find_contours, regionprops

    def enclosed(ring):
        y, x = ring[:, 0], ring[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    out = []
    for region in regionprops(np.asarray(labels)):
        row0, col0 = region.bbox[0], region.bbox[1]
        ring = max(find_contours(np.pad(region.image, 1).astype(np.float64), 0.5, fully_connected="high"),
                   key=enclosed)
        if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
            ring = ring[:-1]
        out.append(np.column_stack([ring[:, 1] + (col0 - 1), ring[:, 0] + (row0 - 1)]))
    return out


def _reference_measurements(labels, image=None):
    from skimage.measure import regionprops_table

    props = ["label", "centroid", "area"] + (["intensity_mean"] if image is not None else [])
    intensity = None if image is None else np.asarray(image, np.float64)
    t = regionprops_table(np.asarray(labels), intensity_image=intensity, properties=props)
    out = {"label": t["label"].astype(np.int32), "x": t["centroid-1"].astype(np.float64),
           "y": t["centroid-0"].astype(np.float64), "area": t["area"].astype(np.int64)}
    if intensity is not None:
        if intensity.ndim == 2:
            out["mean_intensity"] = t["intensity_mean"].astype(np.float64)
        else:
            cols = [t[f"intensity_mean-{c}"] for c in range(intensity.shape[2])]
            out["mean_intensity"] = np.column_stack(cols).astype(np.float64).reshape(-1, intensity.shape[2])
    return out


def _assert_same_outlines(labels):
    got, want = label_outlines(labels), _reference_outlines(labels)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.float64
        np.testing.assert_array_equal(g, w)  # same vertices, same start, same direction


def _assert_same_measurements(labels, image=None):
    got, want = label_measurements(labels, image), _reference_measurements(labels, image)
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _eight_bit_luminance(shape, seed):
    """BT.601 luminance of a random 8-bit RGB image, in float32 as the pipelines compute it."""
    rgb = (np.random.default_rng(seed).integers(0, 256, (*shape, 3)) / 255).astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _hand_built():
    """Label images with the cases that matter: name -> (H, W) int label image."""
    cases = {}
    touching = np.zeros((12, 14), np.int32)
    touching[2:9, 2:7] = 1
    touching[2:9, 7:12] = 2  # shares a whole edge with 1
    touching[9, 6:8] = 3  # and a third touching both, diagonally too
    cases["touching"] = touching
    holes = np.zeros((14, 14), np.int32)
    holes[2:12, 2:12] = 5
    holes[5:8, 5:8] = 0  # a hole
    holes[10, 9] = 0  # a notch on the edge
    holes[5:8, 5:8][1, 1] = 6  # an island in the hole
    cases["holes"] = holes
    border = np.zeros((10, 11), np.uint16)
    border[0:3, 0:4] = 1  # top-left corner
    border[4:7, 8:11] = 2  # right edge
    border[8:10, :] = 3  # the whole bottom row band
    border[0, 10] = 4  # a single pixel in the top-right corner
    cases["border"] = border
    cases["empty"] = np.zeros((7, 9), np.int32)
    single = np.zeros((5, 5), np.int64)
    single[2, 3] = 42
    cases["single_pixel"] = single
    cases["single_pixel_image"] = np.array([[1]], np.int32)
    pieces = np.zeros((9, 12), np.int32)
    pieces[1:3, 1:3] = 8
    pieces[4:8, 6:11] = 8  # one label in two pieces: the larger one is outlined
    pieces[5, 1] = 2
    cases["pieces"] = pieces
    cases["blobs"] = _blobs()
    cases["whole_image"] = np.full((6, 5), 3, np.int32)
    return cases


@pytest.mark.parametrize("name", ["touching", "holes", "border", "empty", "single_pixel", "single_pixel_image",
                                  "pieces", "blobs", "whole_image"])
def test_outlines_and_measurements_equal_the_regionprops_reference(name):
    labels = _hand_built()[name]
    _assert_same_outlines(labels)
    _assert_same_measurements(labels)
    _assert_same_measurements(labels, _eight_bit_luminance(labels.shape, 1))
    rgb = (np.random.default_rng(2).integers(0, 256, (*labels.shape, 3)) / 255).astype(np.float32)
    _assert_same_measurements(labels, rgb)


@pytest.mark.parametrize("seed", range(6))
def test_random_label_images_equal_the_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 60, 2)
    components = ndimage.label(ndimage.gaussian_filter(rng.random((h, w)), 1.5) > 0.5)[0]
    noisy = rng.integers(0, 6, (h, w)) * (rng.random((h, w)) < 0.7)  # speckled, unconnected labels
    for labels in (components.astype(np.int32), noisy.astype(np.int32)):
        _assert_same_outlines(labels)
        _assert_same_measurements(labels, _eight_bit_luminance(labels.shape, seed))
        # Arbitrary floats are summed in another order than numpy.mean's: equal to 1e-15.
        image = rng.random((h, w))
        got, want = label_measurements(labels, image), _reference_measurements(labels, image)
        np.testing.assert_allclose(got["mean_intensity"], want["mean_intensity"], rtol=1e-14, atol=0)


def test_hand_checked_measurements():
    labels = np.array([[0, 2, 2, 0],
                       [0, 2, 0, 0],
                       [5, 0, 0, 5]], np.int32)
    image = np.array([[9.0, 0.25, 0.5, 9.0],
                      [9.0, 0.75, 9.0, 9.0],
                      [1.0, 9.0, 9.0, 3.0]])
    m = label_measurements(labels, image)
    assert m["label"].tolist() == [2, 5]
    assert m["area"].tolist() == [3, 2]
    # label 2: pixels (row, col) (0, 1), (0, 2), (1, 1); label 5: (2, 0), (2, 3), two pieces
    assert m["x"].tolist() == [4 / 3, 1.5] and m["y"].tolist() == [1 / 3, 2.0]
    assert m["mean_intensity"].tolist() == [0.5, 2.0]
    assert [m[k].dtype for k in ("label", "x", "y", "area", "mean_intensity")] == [
        np.int32, np.float64, np.float64, np.int64, np.float64]


def test_empty_label_image_gives_empty_columns():
    m = label_measurements(np.zeros((4, 6), np.int32), np.zeros((4, 6, 3)))
    assert all(len(v) == 0 for v in m.values()) and m["mean_intensity"].shape == (0, 3)
    assert label_outlines(np.zeros((0, 0), np.int32)) == []


def test_sparse_huge_labels_are_measured_and_outlined():
    labels = np.zeros((6, 7), np.int64)
    labels[1:3, 1:4] = 10**12
    labels[4, 5] = 7
    m = label_measurements(labels)
    assert m["area"].tolist() == [1, 6] and m["x"].tolist() == [5.0, 2.0]
    small = np.where(labels == 7, 1, np.where(labels > 0, 2, 0)).astype(np.int32)  # same shapes, small labels
    for got, want in zip(label_outlines(labels), label_outlines(small)):
        np.testing.assert_array_equal(got, want)


def test_outlines_of_some_labels():
    labels = _blobs()
    every = dict(zip([3, 7, 9, 12], label_outlines(labels)))
    some = label_outlines(labels, np.array([12, 3, 12]))  # any order, repeats: ascending, once
    assert len(some) == 2
    np.testing.assert_array_equal(some[0], every[3])
    np.testing.assert_array_equal(some[1], every[12])
    assert label_outlines(labels, []) == []
    with pytest.raises(ValueError, match=r"labels \[5\] are not in the label image"):
        label_outlines(labels, [3, 5])


def test_bad_label_images_are_refused():
    with pytest.raises(ValueError, match="integers"):
        label_measurements(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=">= 0"):
        label_outlines(-np.ones((3, 3), np.int32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        label_outlines(np.zeros((2, 3, 3), np.int32))


# --- label_outlines: the geometry -----------------------------------------------------------------------------


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
