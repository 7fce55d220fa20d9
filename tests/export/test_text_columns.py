"""Slide tables with a text column (``analyze`` on slides writes ``class``): every streaming writer (issue 16)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nucleikit.export import write_points_csv_chunks, write_points_sqlite
from nucleikit.export.napari import write_napari_points_chunks
from nucleikit.export.sqlite import query_region
from nucleikit.windows import Window

SCHEMA = {"score": "float32", "class": "str", "class_prob": "float32"}


def _chunks():
    xy = np.array([[1.0, 2.0], [30.5, 4.25], [7.0, 80.0]])
    cols = {"score": np.array([0.9, 0.5, 0.25], np.float32), "class": np.array(["epithelial", "others", "fibroblast"]),
            "class_prob": np.array([0.8, 0.6, 0.7], np.float32)}
    return [(xy[:2], {k: v[:2] for k, v in cols.items()}), (xy[2:], {k: v[2:] for k, v in cols.items()})]


def test_csv_writes_the_text_column_as_is(tmp_path):
    path = write_points_csv_chunks(tmp_path / "t.csv", _chunks(), columns=SCHEMA)
    assert path.read_text().splitlines() == ["x,y,score,class,class_prob", "1.0,2.0,0.9,epithelial,0.8",
                                             "30.5,4.25,0.5,others,0.6", "7.0,80.0,0.25,fibroblast,0.7"]


def test_sqlite_stores_text_and_query_region_returns_it(tmp_path):
    import sqlite3

    path = write_points_sqlite(tmp_path / "t.sqlite", _chunks(), columns=SCHEMA)
    with sqlite3.connect(path) as con:
        types = {row[1]: row[2] for row in con.execute("PRAGMA table_info(nuclei)")}
    assert types["class"] == "TEXT" and types["score"] == "REAL"
    xy, columns = query_region(path, Window(0, 0, 10, 40))
    assert xy.tolist() == [[1.0, 2.0], [30.5, 4.25]] and columns["class"].tolist() == ["epithelial", "others"]
    np.testing.assert_allclose(columns["class_prob"], [0.8, 0.6], atol=1e-6)
    empty = query_region(path, Window(500, 500, 510, 510))
    assert empty[0].shape == (0, 2) and empty[1]["class"].tolist() == []


def test_parquet_stores_text_as_strings(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from nucleikit.export import write_points_parquet

    table = pq.read_table(write_points_parquet(tmp_path / "t.parquet", _chunks(), columns=SCHEMA))
    assert str(table.schema.field("class").type) == "string"
    assert table.column("class").to_pylist() == ["epithelial", "others", "fibroblast"]
    empty = pq.read_table(write_points_parquet(tmp_path / "e.parquet", [], columns=SCHEMA))
    assert empty.num_rows == 0 and str(empty.schema.field("class").type) == "string"  # the schema without rows


def test_napari_table_keeps_the_text_column_as_a_feature(tmp_path):
    path = write_napari_points_chunks(tmp_path / "t_napari.csv", _chunks(), columns=SCHEMA)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["index", "axis-0", "axis-1", "score", "class", "class_prob"]
    assert [r["class"] for r in rows] == ["epithelial", "others", "fibroblast"]


def test_other_column_types_are_still_refused(tmp_path):
    with pytest.raises(ValueError, match="must be numeric or text"):
        write_points_csv_chunks(tmp_path / "t.csv", [], columns={"when": "datetime64[s]"})
