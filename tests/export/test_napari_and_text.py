"""CSV text without pandas (same bytes), napari points tables, the GeoJSON's "nucleikit" member."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from nucleikit.errors import InputError
from nucleikit.export import (
    ImageOutput,
    Nuclei,
    SlideTable,
    check_slide_formats,
    geojson_metadata,
    napari_csv,
    write_image_outputs,
    write_napari_points,
    write_points_csv,
    write_slide_outputs,
    write_table_csv,
)
from nucleikit.export.csv import _write_rows


# --------------------------------------------------------------------------- CSV text


def test_csv_text_equals_what_pandas_wrote():
    rng = np.random.default_rng(0)
    # the writer used pandas.DataFrame.to_csv until pandas became an extra: same bytes
    for _ in range(50):
        n = int(rng.integers(0, 30))
        data = {
            "x": np.round(rng.normal(0, 1e3, n), 2) + 0.0,
            "y": np.round(rng.uniform(-1, 1, n) * 10.0 ** rng.integers(-6, 18, n), 2) + 0.0,
            "score": np.where(rng.random(n) < 0.1, np.nan, np.round(rng.random(n) * 10.0 ** rng.integers(-6, 3, n), 4)),
            "class": np.array(["epi", "fib, x", 'q"t', "", None, "a\nb"], dtype=object)[rng.integers(0, 6, n)],
            "i": rng.integers(-5, 5, n).astype(np.int32),
            "b": rng.random(n) < 0.5,
            "inf": np.where(rng.random(n) < 0.2, np.inf, 1.5),
            "neg0": np.full(n, -0.0),
        }
        expected = io.StringIO()
        pd.DataFrame(data).to_csv(expected, index=False, lineterminator="\n")
        got = io.StringIO()
        _write_rows(got, data, header=True)
        assert got.getvalue() == expected.getvalue()


def test_writing_csv_does_not_import_pandas(tmp_path):
    code = ("import sys; from nucleikit.export import write_points_csv; "
            f"write_points_csv({str(tmp_path / 'a.csv')!r}, [[1.234, 5.0]], columns={{'score': [0.91]}}); "
            "assert 'pandas' not in sys.modules; print(open(" + repr(str(tmp_path / "a.csv")) + ").read(), end='')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "x,y,score\n1.23,5.0,0.91\n"


def test_table_csv_reads_back_in_pandas(tmp_path):
    path = write_table_csv(tmp_path / "t.csv", {"id": np.array([1, 2]), "x": np.array([0.5, 2.0]),
                                                "y": np.array([1.0, 3.25]), "area": np.array([10, 12])})
    df = pd.read_csv(path)
    assert list(df.columns) == ["id", "x", "y", "area"]
    assert df.to_dict("list") == {"id": [1, 2], "x": [0.5, 2.0], "y": [1.0, 3.25], "area": [10, 12]}


# --------------------------------------------------------------------------- napari


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_write_napari_points_columns_and_values(tmp_path):
    path = write_napari_points(tmp_path / "p.csv", [[10.0, 3.5], [0.25, 7.0]],
                               columns={"score": np.array([0.9, 0.25], np.float32), "class": ["epi", "fib"]})
    assert _rows(path) == [["index", "axis-0", "axis-1", "score", "class"],
                           ["0", "3.5", "10.0", "0.9", "epi"],
                           ["1", "7.0", "0.25", "0.25", "fib"]]


def test_napari_csv_converts_a_detect_table(tmp_path):
    table = write_points_csv(tmp_path / "img.csv", [[12.0, 4.0], [1.5, 30.25]], columns={"score": [0.5, 0.75]})
    out = napari_csv(table)
    assert out == tmp_path / "img_napari.csv"
    assert _rows(out) == [["index", "axis-0", "axis-1", "score"], ["0", "4.0", "12.0", "0.5"],
                          ["1", "30.25", "1.5", "0.75"]]
    assert _rows(table)[0] == ["x", "y", "score"]  # the QuPath/pandas table is left as it was
    # a nucleus table keeps its id and measurements as napari features
    seg = write_table_csv(tmp_path / "s_outlines.csv", {"id": [1], "x": [2.0], "y": [5.0], "area": [9]})
    assert _rows(napari_csv(seg, tmp_path / "s.csv")) == [["index", "axis-0", "axis-1", "id", "area"],
                                                           ["0", "5.0", "2.0", "1", "9"]]


def test_napari_csv_refuses_a_table_without_x_and_y(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="has no x and y columns"):
        napari_csv(bad)


def test_napari_format_is_opt_in_for_images_and_slides(tmp_path):
    out = ImageOutput(Nuclei(np.array([[4.0, 2.0]]), columns={"score": np.array([0.5], np.float32)}))
    written = write_image_outputs(tmp_path, "img", "analyze", ("napari",), out)
    assert written["napari"].name == "img_typed_napari.csv"
    assert _rows(written["napari"]) == [["index", "axis-0", "axis-1", "score"], ["0", "2.0", "4.0", "0.5"]]

    assert check_slide_formats("csv,napari") == ("csv", "napari")
    chunks = [Nuclei(np.array([[1.0, 2.0], [3.0, 4.0]]), columns={"score": np.array([0.1, 0.2], np.float32)}),
              Nuclei(np.array([[5.0, 6.0]]), columns={"score": np.array([0.3], np.float32)})]
    table = SlideTable(lambda: iter(chunks), schema={"score": "float32"})
    path = write_slide_outputs(tmp_path, "slide", "detect", ("napari",), table)["napari"]
    assert path.name == "slide_napari.csv"
    assert _rows(path) == [["index", "axis-0", "axis-1", "score"], ["0", "2.0", "1.0", "0.1"],
                           ["1", "4.0", "3.0", "0.2"], ["2", "6.0", "5.0", "0.3"]]


# --------------------------------------------------------------------------- GeoJSON


def test_geojson_carries_resolution_and_convention_at_the_top(tmp_path):
    out = ImageOutput(Nuclei(np.array([[4.0, 2.0]]), measurements={"score": np.array([0.5])}), mpp=0.25,
                      mpp_source="option")
    path = write_image_outputs(tmp_path, "img", "detect", ("geojson",), out)["geojson"]
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    meta = doc["nucleikit"]
    assert meta["mpp"] == 0.25 and meta["mpp_source"] == "option" and meta["units"] == "pixel"
    assert "(j + 0.5, i + 0.5)" in meta["coordinates"]
    assert doc["features"][0]["geometry"]["coordinates"] == [4.5, 2.5]  # features as before
    assert doc["features"][0]["properties"]["objectType"] == "detection"
    # no resolution given: recorded as unknown, not left out
    path = write_image_outputs(tmp_path, "u", "detect", ("geojson",), ImageOutput(Nuclei(np.zeros((0, 2)))))["geojson"]
    assert json.loads(path.read_text())["nucleikit"]["mpp"] is None
    assert geojson_metadata(float("nan"))["mpp"] is None


def test_slide_geojson_carries_its_resolution(tmp_path):
    table = SlideTable(lambda: iter([Nuclei(np.array([[1.0, 2.0]]))]), schema={}, mpp=0.2527)
    path = write_slide_outputs(tmp_path, "s", "detect", ("geojson",), table)["geojson"]
    assert json.loads(path.read_text())["nucleikit"]["mpp"] == 0.2527


def test_label_tiff_is_what_a_napari_labels_layer_takes(tmp_path):
    """One page, one 2-D uint16 greyscale plane with the labels as stored: napari's labels layer (and
    ``viewer.open(..., layer_type="labels")``) takes it as is (issue 16)."""
    import tifffile

    from nucleikit.export.label_tiff import write_label_tiff

    labels = np.zeros((30, 40), np.int32)
    labels[2:8, 3:9], labels[20:25, 30:38] = 1, 7
    path = write_label_tiff(tmp_path / "a_labels.tif", labels)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1 and len(tif.series) == 1
        page = tif.pages[0]
        assert page.shape == (30, 40) and page.dtype == np.uint16 and page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert tif.series[0].axes == "YX"
        np.testing.assert_array_equal(tif.asarray(), labels)
