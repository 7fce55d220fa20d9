"""Tests of the writers: exact CSV text, QuPath's GeoJSON rules, overlay pixels, atomicity."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nucleikit.errors import InputError
from nucleikit.export import (
    DEFAULT_CLASS_COLORS,
    atomic_path,
    atomic_write,
    class_colors,
    qupath_features,
    write_geojson,
    write_overlay,
    write_points_csv,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    with atomic_write(target) as f:
        f.write("first")
        assert not target.exists()  # invisible until complete
    assert target.read_text() == "first"
    with atomic_write(target) as f:
        f.write("second")
    assert target.read_text() == "second"
    assert leftovers(target.parent) == ["out.txt"]


def test_atomic_write_exception_leaves_nothing(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("boom")
    assert leftovers(tmp_path) == []


def test_atomic_write_exception_keeps_previous_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyError):
        with atomic_write(target, "wb") as f:
            f.write(b"new")
            raise KeyError("x")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["out.bin"]


def test_atomic_path_keeps_suffix_and_cleans_up(tmp_path):
    target = tmp_path / "img.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "other.png") as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError
    assert leftovers(tmp_path) == ["img.png"]


def test_atomic_write_to_a_folder_is_an_input_error(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        with atomic_write(tmp_path / "dir") as f:
            f.write("x")


def test_writer_failure_midway_leaves_no_file(tmp_path):
    # NaN is not JSON: write_geojson fails after the header was written to the temporary file.
    feats = qupath_features([[1.0, 2.0]])
    feats[0]["properties"]["measurements"] = {"bad": math.nan}
    with pytest.raises(ValueError):
        write_geojson(tmp_path / "x.geojson", feats)
    assert leftovers(tmp_path) == []


def test_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    import errno

    from nucleikit.export import atomic_write

    with pytest.raises(InputError, match=r"x\.csv: cannot write: No space left on device"):
        with atomic_write(tmp_path / "x.csv") as f:
            f.write("x,y\n")
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises on a full disk
    assert leftovers(tmp_path) == []


def test_sqlite_disk_io_error_names_the_file(tmp_path):
    import sqlite3

    from nucleikit.export import write_points_sqlite

    def chunks():
        yield np.zeros((1, 2)), {"score": np.ones(1, np.float32)}
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(InputError, match=r"s\.sqlite: cannot write: SQLite: disk I/O error"):
        write_points_sqlite(tmp_path / "s.sqlite", chunks(), columns={"score": "float32"})
    assert leftovers(tmp_path) == []


def test_other_errors_inside_a_write_are_not_disguised(tmp_path):
    from nucleikit.export import atomic_write

    with pytest.raises(FileNotFoundError):  # a bug or a missing input, not a storage failure
        with atomic_write(tmp_path / "x.csv"):
            raise FileNotFoundError(2, "No such file or directory", "elsewhere.png")
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- CSV


def test_csv_exact_text(tmp_path):
    path = tmp_path / "p.csv"
    returned = write_points_csv(
        path,
        [[1.234, 5.0], [10.006, -0.001]],
        columns={
            "score": np.array([0.91, 0.123456], dtype=np.float32),
            "class": ["epithelial", "others"],
            "label": np.array([2, 3]),
        },
    )
    assert returned == path
    assert path.read_text() == "x,y,score,class,label\n1.23,5.0,0.91,epithelial,2\n10.01,0.0,0.1235,others,3\n"


def test_csv_empty_is_header_only(tmp_path):
    path = write_points_csv(tmp_path / "e.csv", np.zeros((0, 2)), columns={"score": []})
    assert path.read_text() == "x,y,score\n"
    assert write_points_csv(tmp_path / "f.csv", []).read_text() == "x,y\n"


def test_csv_round_trip_and_precision(tmp_path, rng):
    import pandas as pd

    pts = rng.uniform(0, 1000, size=(50, 2))
    path = write_points_csv(tmp_path / "r.csv", pts, precision=3)
    back = pd.read_csv(path)
    assert list(back.columns) == ["x", "y"]
    np.testing.assert_allclose(back[["x", "y"]].to_numpy(), np.round(pts, 3), atol=0)


def test_csv_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        write_points_csv(tmp_path / "a.csv", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="score"):
        write_points_csv(tmp_path / "a.csv", np.zeros((3, 2)), columns={"score": [1, 2]})
    with pytest.raises(ValueError, match="reserved"):
        write_points_csv(tmp_path / "a.csv", np.zeros((3, 2)), columns={"x": [1, 2, 3]})
    assert leftovers(tmp_path) == []


def test_csv_million_rows(tmp_path, rng):
    # Whole-slide outputs hold this many; the speed is measured in benchmarks/, not here.
    pts = rng.uniform(0, 50_000, size=(1_000_000, 2))
    path = write_points_csv(tmp_path / "big.csv", pts, columns={"score": rng.random(1_000_000)})
    with open(path) as f:
        assert sum(1 for _ in f) == 1_000_001
    assert leftovers(tmp_path) == ["big.csv"]  # no temporary file left behind


# ----------------------------------------------------------------------------- GeoJSON


def check_qupath_rules(collection: dict) -> None:
    """The rules QuPath's GeoJSON reader (QuPathTypeAdapters.parseObject) relies on."""
    assert collection["type"] == "FeatureCollection"
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        object_id = uuid.UUID(feature["id"])
        assert object_id.version == 4 and object_id.variant == uuid.RFC_4122
        assert str(object_id) == feature["id"]  # canonical lower-case form, as QuPath writes
        assert "objectType" not in feature  # beside properties QuPath ignores it
        props = feature["properties"]
        assert props["objectType"] == "detection"
        if "measurements" in props:
            assert isinstance(props["measurements"], dict)
            for name, value in props["measurements"].items():
                assert isinstance(name, str)
                assert isinstance(value, (int, float)) and not isinstance(value, bool)
                assert math.isfinite(value)
        if "classification" in props:
            cls = props["classification"]
            assert set(cls) == {"name", "color"}
            assert isinstance(cls["name"], str)
            assert len(cls["color"]) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in cls["color"])
        geometry = feature["geometry"]
        assert geometry["type"] in ("Point", "Polygon")
        if geometry["type"] == "Point":
            assert len(geometry["coordinates"]) == 2
        else:
            for ring in geometry["coordinates"]:
                assert len(ring) >= 4 and ring[0] == ring[-1]


def test_geojson_points_follow_qupath_rules(tmp_path):
    pts = np.array([[0.0, 0.0], [10.25, 3.5], [4.0, 7.0]])
    feats = qupath_features(
        pts,
        classes=["epithelial", None, "tumour"],
        colors={"tumour": (1, 2, 3)},
        measurements={"score": np.array([0.5, np.nan, 0.25], dtype=np.float32), "area": [1, 2, np.inf]},
        seed=0,
    )
    path = write_geojson(tmp_path / "d.geojson", feats)
    collection = json.loads(path.read_text())
    check_qupath_rules(collection)
    f0, f1, f2 = collection["features"]
    # pixel centres -> QuPath pixel-corner coordinates (+0.5)
    assert f0["geometry"] == {"type": "Point", "coordinates": [0.5, 0.5]}
    assert f1["geometry"]["coordinates"] == [10.75, 4.0]
    assert f0["properties"] == {
        "objectType": "detection",
        "classification": {"name": "epithelial", "color": list(DEFAULT_CLASS_COLORS["epithelial"])},
        "measurements": {"score": 0.5, "area": 1.0},
    }
    assert "classification" not in f1["properties"]
    assert f1["properties"]["measurements"] == {"area": 2.0}  # NaN score left out
    assert f2["properties"]["classification"] == {"name": "tumour", "color": [1, 2, 3]}
    assert f2["properties"]["measurements"] == {"score": 0.25}  # inf area left out
    assert len({f["id"] for f in collection["features"]}) == 3


def test_geojson_polygons_closed_rings(tmp_path):
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=float)
    closed_triangle = np.array([[10, 10], [12, 10], [11, 12], [10, 10]], dtype=float)
    feats = qupath_features(polygons=[square, closed_triangle], offset=0.0, measurements={"area": [16, 2]})
    collection = json.loads(write_geojson(tmp_path / "s.geojson", feats).read_text())
    check_qupath_rules(collection)
    g0, g1 = (f["geometry"] for f in collection["features"])
    assert g0 == {"type": "Polygon", "coordinates": [[[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]]]}
    assert g1["coordinates"][0] == [[10.0, 10.0], [12.0, 10.0], [11.0, 12.0], [10.0, 10.0]]  # not closed twice


def test_geojson_empty_and_seeded_ids(tmp_path):
    collection = json.loads(write_geojson(tmp_path / "e.geojson", qupath_features(np.zeros((0, 2)))).read_text())
    assert collection == {"type": "FeatureCollection", "features": []}
    a = qupath_features([[1, 2], [3, 4]], seed=7)
    b = qupath_features([[1, 2], [3, 4]], seed=7)
    c = qupath_features([[1, 2], [3, 4]])
    assert [f["id"] for f in a] == [f["id"] for f in b]
    assert [f["id"] for f in a] != [f["id"] for f in c]


def test_geojson_streams_a_generator(tmp_path):
    feats = (f for f in qupath_features(np.arange(20, dtype=float).reshape(10, 2), seed=1))
    collection = json.loads(write_geojson(tmp_path / "g.geojson", feats, chunk=3).read_text())
    assert len(collection["features"]) == 10
    assert collection["features"][9]["geometry"]["coordinates"] == [18.5, 19.5]


def test_qupath_features_reject_bad_input():
    with pytest.raises(ValueError, match="points or polygons"):
        qupath_features()
    with pytest.raises(ValueError, match="classes"):
        qupath_features([[1, 2]], classes=["a", "b"])
    with pytest.raises(ValueError, match="at least 3"):
        qupath_features(polygons=[[[0, 0], [1, 1], [0, 0]]])
    with pytest.raises(ValueError, match="object_type"):
        qupath_features([[1, 2]], object_type="Detection")
    with pytest.raises(ValueError, match="measure"):
        qupath_features([[1, 2]], measurements={"measure": [1, 2]})


def test_geojson_100k_features(tmp_path, rng):
    # Whole-slide outputs hold this many; the speed is measured in benchmarks/, not here.
    pts = rng.uniform(0, 10_000, size=(100_000, 2))
    classes = rng.choice(["epithelial", "others"], 100_000)
    feats = qupath_features(pts, classes=classes, measurements={"score": rng.random(100_000)})
    write_geojson(tmp_path / "big.geojson", feats)
    doc = json.loads((tmp_path / "big.geojson").read_text())
    assert len(doc["features"]) == 100_000
    last = doc["features"][-1]
    assert last["geometry"]["coordinates"] == pytest.approx((pts[-1] + 0.5).tolist())
    assert last["properties"]["classification"]["name"] == classes[-1]


# ----------------------------------------------------------------------------- overlay


def test_overlay_colours_marker_and_leaves_the_rest(tmp_path, rng):
    image = rng.random((40, 50, 3))
    pts = np.array([[10.0, 20.0], [30.2, 5.4]])  # second: nearest pixel (row 5, col 30)
    colors = {"a": (255, 0, 0), "b": (0, 0, 255)}
    path = write_overlay(tmp_path / "o.png", image, pts, classes=["a", "b"], colors=colors, radius=3)
    out = np.asarray(Image.open(path))
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    expected = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    assert tuple(out[20, 13]) == (255, 0, 0)  # on the ring, radius 3 to the right
    assert tuple(out[17, 10]) == (255, 0, 0)
    assert tuple(out[5, 27]) == (0, 0, 255)
    changed = np.any(out != expected, axis=-1)
    ring = np.zeros_like(changed)
    from skimage.draw import circle_perimeter

    for (x, y) in np.rint(pts).astype(int):
        rr, cc = circle_perimeter(y, x, 3)
        ring[rr, cc] = True
    assert not changed[~ring].any()  # the image elsewhere is unchanged (centres too)
    assert changed[ring].all()


def test_overlay_uint8_grey_cross_clipped_at_border(tmp_path):
    image = np.full((10, 12), 100, dtype=np.uint8)
    out = np.asarray(Image.open(write_overlay(tmp_path / "g.png", image, [[0.0, 0.0]], radius=2, marker="cross")))
    green = np.array([0, 255, 0])
    drawn = np.all(out == green, axis=-1)
    assert set(zip(*np.nonzero(drawn))) == {(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)}
    assert (out[~drawn] == 100).all()


def test_overlay_polygons_and_default_class_colours(tmp_path):
    image = np.zeros((20, 20, 3), dtype=np.float32)
    square = np.array([[5, 5], [12, 5], [12, 12], [5, 12]], dtype=float)
    path = write_overlay(tmp_path / "p.png", image, polygons=[square], classes=["inflammatory"])
    out = np.asarray(Image.open(path))
    colour = DEFAULT_CLASS_COLORS["inflammatory"]
    assert tuple(out[5, 8]) == colour and tuple(out[12, 12]) == colour and tuple(out[8, 5]) == colour
    assert tuple(out[8, 8]) == (0, 0, 0)  # outline only
    assert tuple(out[0, 0]) == (0, 0, 0)


def test_overlay_rejects_bad_image_without_writing(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_overlay(tmp_path / "x.png", np.zeros((4, 4, 3), dtype=np.int64), [[1, 1]])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        write_overlay(tmp_path / "x.png", np.zeros((4, 4, 5)), [[1, 1]])
    assert leftovers(tmp_path) == []


def test_class_colors_stable_and_validated():
    a = class_colors(["x", "y", "x"])
    assert a.shape == (3, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a[0], a[2])
    np.testing.assert_array_equal(class_colors(["y"])[0], a[1])  # independent of the other labels
    with pytest.raises(ValueError, match="colour"):
        class_colors(["x"], {"x": (0, 0, 300)})
