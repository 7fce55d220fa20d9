"""Tests for nucleikit.io.labels: label image files, masks, polygons, QuPath outlines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucleikit.errors import InputError
from nucleikit.export import qupath_features, write_geojson
from nucleikit.io.labels import (
    count_overlaps,
    labels_from_indices,
    masks_to_labels,
    polygons_to_labels,
    read_geojson_polygons,
    read_label_image,
    read_mask_folder,
)

# --- read_label_image -----------------------------------------------------------------


def test_uint8_png(tmp_path):
    path = tmp_path / "l.png"
    Image.fromarray(np.array([[0, 3], [200, 3]], np.uint8)).save(path)
    labels = read_label_image(path)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [[0, 3], [200, 3]])


def test_uint16_png_keeps_labels_above_255(tmp_path):
    path = tmp_path / "l16.png"
    Image.fromarray(np.array([[0, 300], [65535, 1]], np.uint16)).save(path)
    np.testing.assert_array_equal(read_label_image(path), [[0, 300], [65535, 1]])


def test_palette_png_gives_its_indices(tmp_path):
    path = tmp_path / "p.png"
    image = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    image.save(path)
    np.testing.assert_array_equal(read_label_image(path), [[0, 1], [2, 1]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32])
def test_tiff_integer_types(tmp_path, dtype):
    path = tmp_path / "l.tif"
    tifffile.imwrite(path, np.array([[0, 7], [70000 if np.dtype(dtype).itemsize == 4 else 70, 7]], dtype))
    labels = read_label_image(path)
    assert labels.dtype == np.int32 and labels.shape == (2, 2)
    assert labels[0, 1] == 7 and labels[1, 0] in (70, 70000)


def test_tiff_with_a_singleton_axis_is_squeezed(tmp_path):
    path = tmp_path / "l.tif"
    tifffile.imwrite(path, np.arange(6, dtype=np.uint16).reshape(1, 2, 3), photometric="minisblack")
    np.testing.assert_array_equal(read_label_image(path), [[0, 1, 2], [3, 4, 5]])


def test_rgb_png_is_refused(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
    with pytest.raises(InputError, match="one channel of integers, not Pillow mode 'RGB'"):
        read_label_image(path)


def test_float_tiff_is_refused(tmp_path):
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.zeros((2, 2), np.float32))
    with pytest.raises(InputError, match="float32 samples"):
        read_label_image(path)


def test_negative_labels_are_refused(tmp_path):
    path = tmp_path / "n.tif"
    tifffile.imwrite(path, np.array([[0, -1]], np.int32))
    with pytest.raises(InputError, match="negative labels"):
        read_label_image(path)


def test_uint32_beyond_int32_is_refused(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.array([[0, 2**31]], np.uint32))
    with pytest.raises(InputError, match="exceeds the int32 range"):
        read_label_image(path)


def test_multichannel_tiff_is_refused(tmp_path):
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputError, match="must be 2-D"):
        read_label_image(path)


def test_missing_label_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_label_image(tmp_path / "none.png")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "l.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported label image format '.jpg'"):
        read_label_image(tmp_path / "l.jpg")


def test_damaged_png(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot be decoded as a PNG"):
        read_label_image(tmp_path / "bad.png")


# --- masks -> labels ------------------------------------------------------------------


def _masks():
    a = np.zeros((3, 4), bool)
    a[0:2, 0:2] = True
    b = np.zeros((3, 4), bool)
    b[1:3, 1:3] = True  # overlaps a at pixel (1, 1)
    c = np.zeros((3, 4), np.uint8)
    c[0, 3] = 255
    return [a, b, c]


def test_masks_get_labels_in_order_and_the_later_mask_wins():
    labels = masks_to_labels(_masks())
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [[1, 1, 0, 3], [1, 2, 2, 0], [0, 2, 2, 0]])


def test_masks_may_come_from_a_generator():
    np.testing.assert_array_equal(masks_to_labels(m for m in _masks()), masks_to_labels(_masks()))


def test_overlapping_pixels_are_counted():
    assert count_overlaps(_masks()) == 1
    assert count_overlaps(_masks()[::2]) == 0


def test_labels_from_indices_later_wins():
    np.testing.assert_array_equal(labels_from_indices([[0, 1, 2], [2, 3]], (2, 2)), [[1, 1], [2, 2]])


def test_labels_from_indices_refuses_an_index_outside():
    # sizes as every message gives them: width x height (issue 16)
    with pytest.raises(ValueError, match=r"outside the 3 x 2 \(W x H\) image"):
        labels_from_indices([[6]], (2, 3))


def test_no_masks_with_a_shape_is_an_empty_label_image():
    labels = masks_to_labels([], shape=(2, 3))
    assert labels.shape == (2, 3) and not labels.any()


def test_no_masks_without_a_shape_is_an_error():
    with pytest.raises(InputError, match="^img7: no masks, and no shape"):
        masks_to_labels([], source="img7")


def test_empty_mask_is_an_error():
    with pytest.raises(InputError, match="^img7: mask 2 is empty"):
        masks_to_labels([np.ones((2, 2)), np.zeros((2, 2))], source="img7")


def test_masks_of_different_sizes_are_an_error():
    with pytest.raises(InputError, match=r"mask 2 is 3 x 2 \(W x H\), the image is 2 x 2"):
        masks_to_labels([np.ones((2, 2)), np.ones((2, 3))], source="img7")


# --- Kaggle masks/ folder ---------------------------------------------------------------


def _save_mask(path, mask):
    Image.fromarray((np.asarray(mask, bool) * 255).astype(np.uint8)).save(path)


def test_mask_folder_is_read_in_file_name_order(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    a, b, _ = _masks()
    _save_mask(masks / "b.png", a)  # named b: second
    _save_mask(masks / "a.png", b)  # named a: first
    (masks / "notes.txt").write_text("ignored")
    labels = read_mask_folder(masks, shape=(3, 4))
    # a.png (b) is label 1, b.png (a) is label 2 and wins the shared pixel (1, 1).
    np.testing.assert_array_equal(labels, [[2, 2, 0, 0], [2, 2, 1, 0], [0, 1, 1, 0]])


def test_empty_mask_folder_is_an_error(tmp_path):
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match="no mask images"):
        read_mask_folder(tmp_path / "masks")


def test_missing_mask_folder_is_an_error(tmp_path):
    with pytest.raises(InputError, match="mask folder not found"):
        read_mask_folder(tmp_path / "masks")


def test_mask_of_another_size_than_the_image_names_the_file(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    _save_mask(masks / "a.png", np.ones((3, 4)))
    _save_mask(masks / "b.png", np.ones((3, 5)))
    with pytest.raises(InputError, match=r"b\.png: mask is 5 x 3 \(W x H\), the image is 4 x 3"):
        read_mask_folder(masks, shape=(3, 4))


def test_mask_that_differs_from_the_first_without_a_shape(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    _save_mask(masks / "a.png", np.ones((3, 4)))
    _save_mask(masks / "b.png", np.ones((2, 4)))
    with pytest.raises(InputError, match=r"b\.png: mask is 4 x 2"):
        read_mask_folder(masks)


def test_empty_mask_file_names_the_file(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    _save_mask(masks / "a.png", np.zeros((3, 4)))
    with pytest.raises(InputError, match=r"a\.png: mask is empty"):
        read_mask_folder(masks)


# --- polygons ---------------------------------------------------------------------------


def test_polygon_fills_the_pixels_whose_centres_it_contains():
    # A square with corners on pixel centres (1, 1)..(3, 2) in (x, y): columns 1-3, rows 1-2.
    labels = polygons_to_labels([[(1, 1), (3, 1), (3, 2), (1, 2)]], (4, 5))
    expected = np.zeros((4, 5), np.int32)
    expected[1:3, 1:4] = 1
    np.testing.assert_array_equal(labels, expected)


def test_later_polygon_wins():
    labels = polygons_to_labels([[(0, 0), (2, 0), (2, 2), (0, 2)], [(2, 0), (3, 0), (3, 2), (2, 2)]], (3, 4))
    assert labels[:, 2].tolist() == [2, 2, 2]
    assert labels[:, 0].tolist() == [1, 1, 1]


def test_polygon_outside_the_image_is_clipped():
    labels = polygons_to_labels([[(-5, -5), (1, -5), (1, 0), (-5, 0)]], (3, 3))
    assert labels[0].tolist() == [1, 1, 0] and not labels[1:].any()


def test_polygon_with_two_vertices_is_refused():
    with pytest.raises(ValueError, match="polygon 1 must be"):
        polygons_to_labels([[(0, 0), (1, 1)]], (3, 3))


def test_geojson_round_trip_through_nucleikit_export(tmp_path):
    rings = [np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 3.0]]), np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])]
    path = write_geojson(tmp_path / "n.geojson", qupath_features(polygons=rings, seed=0))
    stored = json.loads(path.read_text())["features"][0]["geometry"]["coordinates"][0]
    assert stored[0] == [1.5, 1.5] and stored[-1] == stored[0]  # QuPath frame, closed ring
    back = read_geojson_polygons(path)
    assert len(back) == 2
    for got, want in zip(back, rings):
        np.testing.assert_allclose(got, want)


def _feature(geometry, properties=None):
    return {"type": "Feature", "geometry": geometry, "properties": properties or {}}


def test_geojson_cell_uses_its_nucleus_and_multipolygon_gives_each_part(tmp_path):
    nucleus = {"type": "Polygon", "coordinates": [[[1.5, 1.5], [3.5, 1.5], [3.5, 3.5], [1.5, 1.5]]]}
    cell = {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]}
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [0.5, 0.5]]],
            [[[5.5, 5.5], [6.5, 5.5], [6.5, 6.5], [5.5, 5.5]]],
        ],
    }
    data = {"type": "FeatureCollection", "features": [_feature(cell, {"nucleusGeometry": nucleus}), _feature(multi)]}
    path = tmp_path / "c.geojson"
    path.write_text(json.dumps(data))
    polygons = read_geojson_polygons(path)
    assert len(polygons) == 3
    np.testing.assert_allclose(polygons[0], [[1, 1], [3, 1], [3, 3]])
    np.testing.assert_allclose(polygons[2], [[5, 5], [6, 5], [6, 6]])


def test_geojson_point_feature_is_refused(tmp_path):
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps([_feature({"type": "Point", "coordinates": [1, 2]})]))
    with pytest.raises(InputError, match="feature 1 has geometry 'Point', not a Polygon"):
        read_geojson_polygons(path)


def test_geojson_degenerate_ring_is_refused(tmp_path):
    path = tmp_path / "d.geojson"
    path.write_text(json.dumps([_feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]})]))
    with pytest.raises(InputError, match="fewer than 3 distinct vertices"):
        read_geojson_polygons(path)


def test_geojson_without_features(tmp_path):
    path = tmp_path / "e.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert read_geojson_polygons(path, allow_empty=True) == []
    with pytest.raises(InputError, match="holds no polygons"):
        read_geojson_polygons(path)


def test_geojson_invalid_json(tmp_path):
    path = tmp_path / "bad.geojson"
    path.write_text("{")
    with pytest.raises(InputError, match="invalid JSON"):
        read_geojson_polygons(path)
