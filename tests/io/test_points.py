"""Tests for nucleikit.io.points: CSV, .mat and QuPath GeoJSON readers, and the bounds check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import savemat

from nucleikit.errors import InputError
from nucleikit.io.points import (
    QUPATH_PIXEL_OFFSET,
    PointSet,
    check_points_in_image,
    clip_points_to_image,
    read_points,
)


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def _geojson(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _feature(geometry, **properties):
    return {"type": "Feature", "geometry": geometry, "properties": properties}


SQUARE = {"type": "Polygon", "coordinates": [[[10, 20], [14, 20], [14, 24], [10, 24], [10, 20]]]}

# --- CSV ----------------------------------------------------------------------


def test_csv_xy_are_read_as_given(tmp_path):
    points = read_points(_write(tmp_path / "a.csv", "x,y\n1.5,2\n0,499\n"))
    assert points.xy.dtype == np.float64
    np.testing.assert_array_equal(points.xy, [[1.5, 2.0], [0.0, 499.0]])
    assert points.labels is None
    assert points.scores is None


def test_csv_columns_are_case_insensitive_and_extras_ignored(tmp_path):
    text = "id, Y ,area,X,Class,SCORE\n7,20,3.5,10,tumour,0.9\n8,21,4,11,,\n"
    points = read_points(_write(tmp_path / "a.csv", text))
    np.testing.assert_array_equal(points.xy, [[10.0, 20.0], [11.0, 21.0]])
    assert points.labels.tolist() == ["tumour", ""]  # blank class = unclassified
    assert points.scores[0] == 0.9
    assert np.isnan(points.scores[1])  # blank score = missing


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("x,y\n3,4\n".encode("utf-8-sig"))
    np.testing.assert_array_equal(read_points(path).xy, [[3.0, 4.0]])


def test_csv_without_xy_columns(tmp_path):
    with pytest.raises(InputError, match="no 'x' and 'y' columns \\(found: row, col\\)"):
        read_points(_write(tmp_path / "a.csv", "row,col\n1,2\n"))


def test_csv_non_numeric_value_names_its_line(tmp_path):
    with pytest.raises(InputError, match="line 3, column 'y': 'abc' is not a number"):
        read_points(_write(tmp_path / "a.csv", "x,y\n1,2\n3,abc\n"))


def test_csv_infinite_coordinate(tmp_path):
    with pytest.raises(InputError, match="not a finite number"):
        read_points(_write(tmp_path / "a.csv", "x,y\ninf,2\n"))


def test_csv_ragged_row(tmp_path):
    with pytest.raises(InputError, match="line 2 has 1 fields, the header has 2"):
        read_points(_write(tmp_path / "a.csv", "x,y\n1\n"))


def test_csv_duplicate_column(tmp_path):
    with pytest.raises(InputError, match="names column 'x' 2 times"):
        read_points(_write(tmp_path / "a.csv", "x,X,y\n1,2,3\n"))


def test_csv_header_only_is_empty(tmp_path):
    with pytest.raises(InputError, match="holds no points"):
        read_points(_write(tmp_path / "a.csv", "x,y\n"))


def test_csv_header_only_allowed_empty(tmp_path):
    points = read_points(_write(tmp_path / "a.csv", "x,y,class\n"), allow_empty=True)
    assert points.xy.shape == (0, 2)
    assert len(points) == 0


def test_zero_byte_file(tmp_path):
    path = tmp_path / "a.csv"
    path.touch()
    with pytest.raises(InputError, match=r"empty \(0 bytes\)"):
        read_points(path)


@pytest.mark.parametrize("name, holds", [("a.geojson", "an empty FeatureCollection"), ("a.csv", "its header line"),
                                         ("a.json", "an empty FeatureCollection"), ("a.mat", "an empty matrix")])
def test_zero_byte_file_is_refused_even_when_empty_is_allowed(tmp_path, name, holds):
    # not even a header: a failed export, not "no nuclei" (issue 16); the message says what such a file holds
    path = tmp_path / name
    path.touch()
    with pytest.raises(InputError, match=rf"empty \(0 bytes\): a file for an image without nuclei still holds {holds}"):
        read_points(path, allow_empty=True)


def test_a_symbolic_link_loop_is_named_as_such(tmp_path):
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    with pytest.raises(InputError, match=r"a\.csv: symbolic link loop$"):
        read_points(tmp_path / "a.csv")
    (tmp_path / "c.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(InputError, match=r"c\.csv: broken symbolic link"):
        read_points(tmp_path / "c.csv")


def test_binary_csv(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"x,y\n\xff\xfe\x00")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        read_points(path)


# --- .mat -----------------------------------------------------------------------


def test_mat_points_are_zero_based(tmp_path):
    savemat(tmp_path / "a.mat", {"detection": np.array([[1.0, 2.0]])})
    np.testing.assert_array_equal(read_points(tmp_path / "a.mat").xy, [[0.0, 1.0]])


def test_empty_mat_file_is_empty(tmp_path):
    savemat(tmp_path / "a.mat", {"detection": np.zeros((0, 2), np.uint8)})
    with pytest.raises(InputError, match="holds no points"):
        read_points(tmp_path / "a.mat")


# --- GeoJSON --------------------------------------------------------------------


def test_geojson_points_lose_qupaths_half_pixel(tmp_path):
    data = {"type": "FeatureCollection", "features": [_feature({"type": "Point", "coordinates": [0.5, 10.5]})]}
    points = read_points(_geojson(tmp_path / "a.geojson", data))
    assert QUPATH_PIXEL_OFFSET == 0.5
    np.testing.assert_array_equal(points.xy, [[0.0, 10.0]])


def test_polygon_centroid_is_exact_on_a_square(tmp_path):
    points = read_points(_geojson(tmp_path / "a.geojson", [_feature(SQUARE)]))
    np.testing.assert_array_equal(points.xy, [[11.5, 21.5]])  # centre (12, 22) minus 0.5


def test_multipolygon_gives_one_centroid(tmp_path):
    second = [[[20, 20], [24, 20], [24, 24], [20, 24], [20, 20]]]
    geometry = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"], second]}
    points = read_points(_geojson(tmp_path / "a.geojson", [_feature(geometry)]))
    np.testing.assert_array_equal(points.xy, [[16.5, 21.5]])


def test_multipoint_gives_each_point_with_the_feature_label(tmp_path):
    geometry = {"type": "MultiPoint", "coordinates": [[1.5, 2.5], [3.5, 4.5, 9.0]]}
    points = read_points(_geojson(tmp_path / "a.json", [_feature(geometry, classification="Tumor")]))
    np.testing.assert_array_equal(points.xy, [[1.0, 2.0], [3.0, 4.0]])
    assert points.labels.tolist() == ["Tumor", "Tumor"]


def test_single_feature_with_classification_object(tmp_path):
    feature = _feature(
        {"type": "Point", "coordinates": [5.5, 6.5]},
        objectType="detection",
        classification={"name": "epithelial", "color": [255, 0, 0]},
    )
    points = read_points(_geojson(tmp_path / "a.geojson", feature))
    assert points.labels.tolist() == ["epithelial"]


def test_unclassified_features_get_an_empty_label(tmp_path):
    features = [
        _feature({"type": "Point", "coordinates": [1, 1]}, classification={"name": "a"}),
        _feature({"type": "Point", "coordinates": [2, 2]}),
    ]
    assert read_points(_geojson(tmp_path / "a.geojson", features)).labels.tolist() == ["a", ""]


def test_scores_from_measurements(tmp_path):
    features = [
        _feature({"type": "Point", "coordinates": [1, 1]}, measurements={"micronet score": 0.75, "area": 3}),
        _feature({"type": "Point", "coordinates": [2, 2]}, measurements=[{"name": "Score", "value": 0.25}]),
        _feature({"type": "Point", "coordinates": [3, 3]}, measurements={"area": 3}),
    ]
    scores = read_points(_geojson(tmp_path / "a.geojson", features)).scores
    np.testing.assert_array_equal(scores[:2], [0.75, 0.25])
    assert np.isnan(scores[2])


def test_cell_gives_its_nucleus_centroid(tmp_path):
    cell = {"type": "Polygon", "coordinates": [[[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]]}
    feature = _feature(cell, objectType="cell", nucleusGeometry=SQUARE)
    np.testing.assert_array_equal(read_points(_geojson(tmp_path / "a.geojson", feature)).xy, [[11.5, 21.5]])


def test_invalid_json_names_line(tmp_path):
    with pytest.raises(InputError, match=r"invalid JSON \(line 2"):
        read_points(_write(tmp_path / "a.geojson", '{"type":\n "FeatureCollection",]'))


def test_json_that_is_not_geojson(tmp_path):
    with pytest.raises(InputError, match="expected a FeatureCollection"):
        read_points(_geojson(tmp_path / "a.json", {"points": [[1, 2]]}))


def test_unsupported_geometry(tmp_path):
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    with pytest.raises(InputError, match="feature 1 has unsupported geometry 'LineString'"):
        read_points(_geojson(tmp_path / "a.geojson", [_feature(line)]))


def test_feature_without_geometry(tmp_path):
    with pytest.raises(InputError, match="feature 2 has no geometry"):
        read_points(_geojson(tmp_path / "a.geojson", [_feature(SQUARE), _feature(None)]))


def test_bad_point_coordinates(tmp_path):
    with pytest.raises(InputError, match="feature 1 has bad Point coordinates"):
        read_points(_geojson(tmp_path / "a.geojson", [_feature({"type": "Point", "coordinates": ["a", 1]})]))


def test_empty_feature_collection(tmp_path):
    path = _geojson(tmp_path / "a.geojson", {"type": "FeatureCollection", "features": []})
    with pytest.raises(InputError, match="holds no points"):
        read_points(path)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(InputError, match="unsupported annotation format '.txt'"):
        read_points(_write(tmp_path / "a.txt", "x,y\n1,2\n"))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_points(tmp_path / "missing.csv")


# --- PointSet and bounds ----------------------------------------------------------


def test_pointset_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="labels has 1 entries for 2 points"):
        PointSet(np.zeros((2, 2)), labels=["a"])


def test_points_on_the_tolerance_edge_are_inside():
    xy = np.array([[-0.5, -0.5], [9.5, 7.5], [0.0, 0.0]])  # W = 10, H = 8
    check_points_in_image(xy, (8, 10, 3), "a.csv", tolerance=0.5)


def test_points_outside_are_counted_with_an_example():
    xy = np.array([[-0.51, 3.0], [5.0, 5.0], [2.0, 7.6], [np.nan, 1.0]])
    with pytest.raises(InputError, match=r"^a\.csv: 3 points lie outside the 10 x 8 image, e\.g\. \(-0\.51, 3\)$"):
        check_points_in_image(PointSet(xy), (8, 10), "a.csv", tolerance=0.5)


def test_points_less_than_a_pixel_outside_are_accepted_and_clipped():
    # CRCHisto's img8 and img91 have y = -0.85 and -0.74: a file was refused for them (issue 16)
    xy = np.array([[5.0, -0.85], [10.4, 3.0], [4.0, 4.0]])  # W = 10, H = 8: x = 10.4 is 0.9 px past the edge
    check_points_in_image(xy, (8, 10), "a.csv")
    clipped, moved = clip_points_to_image(xy, (8, 10))
    np.testing.assert_array_equal(clipped, [[5.0, 0.0], [9.0, 3.0], [4.0, 4.0]])
    assert moved == 2
    with pytest.raises(InputError, match=r"1 point lies outside the 10 x 8 image, e\.g\. \(5, -1\.6\)"):
        check_points_in_image(np.array([[5.0, -1.6]]), (8, 10), "a.csv")  # 1.1 px past the edge


def test_one_point_outside_is_singular():
    with pytest.raises(InputError, match=r"1 point lies outside the 4 x 4 image, e\.g\. \(4, 0\)"):
        check_points_in_image(np.array([[4.0, 0.0]]), (4, 4), "a.csv", tolerance=0.0)
