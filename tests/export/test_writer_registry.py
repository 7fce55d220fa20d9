"""The writer registry: one entry per format, used alike by images, slides and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nucleikit.errors import ConfigError
from nucleikit.export import (
    WRITERS,
    ImageOutput,
    Nuclei,
    SlideTable,
    Writer,
    check_slide_formats,
    register_writer,
    slide_formats,
    write_image_outputs,
    write_points_csv,
    write_slide_outputs,
)
from nucleikit.export import registry


def _points(n: int = 3) -> Nuclei:
    xy = np.column_stack([np.arange(n) * 10.0 + 0.25, np.arange(n) * 5.0])
    score = np.linspace(0.5, 0.9, n).astype(np.float32)
    return Nuclei(xy, columns={"score": score}, measurements={"m score": score})


def test_every_format_is_registered_once_with_its_kind():
    assert set(WRITERS) == {"csv", "geojson", "parquet", "sqlite", "overlay", "labels", "napari"}
    images = {n for n, w in WRITERS.items() if w.write_image is not None}
    assert images == {"csv", "geojson", "overlay", "labels", "napari"}
    assert slide_formats() == ("csv", "geojson", "parquet", "sqlite")  # napari is opt-in: not a default
    assert slide_formats(every=True) == ("csv", "geojson", "parquet", "sqlite", "napari")
    with pytest.raises(ValueError, match="already registered"):
        register_writer(Writer("csv", ".other"))


def test_the_cli_offers_the_registrys_slide_formats():
    from nucleikit.cli.options import SLIDE_FORMATS, formats_list
    from nucleikit.infer.wsi import FORMATS

    assert SLIDE_FORMATS == FORMATS == slide_formats()
    assert formats_list("SQLite, csv") == ("sqlite", "csv")
    with pytest.raises(Exception, match="choose from csv,geojson,parquet,sqlite"):
        formats_list("csv,xlsx")


def test_names_carry_the_commands_tag_except_untagged_writers(tmp_path):
    labels = np.zeros((8, 8), np.uint16)
    labels[2:4, 2:4] = 1
    out = ImageOutput(Nuclei(np.array([[2.5, 2.5]]), columns={"area": np.array([4.0])}, ids=np.array([1]),
                             outlines=[np.array([[2, 2], [3, 2], [3, 3], [2, 3]], float)]),
                      pixels=np.zeros((8, 8, 3), np.uint8), labels=labels)
    written = write_image_outputs(tmp_path, "img", "segment", ("labels", "csv", "geojson", "overlay"), out)
    assert {k: p.name for k, p in written.items()} == {
        "labels": "img_labels.tif", "csv": "img_outlines.csv", "geojson": "img_outlines.geojson",
        "overlay": "img_outlines_overlay.png"}
    assert (tmp_path / "img_outlines.csv").read_text() == "id,x,y,area\n1,2.5,2.5,4.0\n"


def test_an_image_csv_through_the_registry_is_the_writers_own_bytes(tmp_path):
    n = _points()
    written = write_image_outputs(tmp_path / "a", "img", "detect", ("csv",), ImageOutput(n))
    direct = write_points_csv(tmp_path / "b" / "img.csv", n.xy, columns=n.columns)
    assert written["csv"].name == "img.csv"
    assert written["csv"].read_bytes() == direct.read_bytes()


def test_slide_formats_stream_every_chunk_and_keep_the_schema_when_empty(tmp_path):
    passes = []

    def chunks():
        passes.append(1)
        yield _points(3)
        yield _points(0)
        yield _points(2)

    table = SlideTable(chunks, schema={"score": "float32"})
    written = write_slide_outputs(tmp_path, "slide", "detect", slide_formats(), table)
    assert len(passes) == 4  # one pass over the store per format
    assert len(pd.read_csv(written["csv"])) == 5 and len(pd.read_parquet(written["parquet"])) == 5
    assert len(json.loads(written["geojson"].read_text())["features"]) == 5
    empty = write_slide_outputs(tmp_path / "e", "slide", "detect", ("csv", "parquet"),
                                SlideTable(lambda: iter([_points(0)]), schema={"score": "float32"}))
    assert empty["csv"].read_text() == "x,y,score\n"
    assert list(pd.read_parquet(empty["parquet"]).columns) == ["x", "y", "score"]


def test_formats_of_the_wrong_kind_or_unknown_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="'parquet' is for slides only"):
        write_image_outputs(tmp_path, "img", "detect", ("parquet",), ImageOutput(_points()))
    with pytest.raises(ConfigError, match="'overlay' is for images only"):
        write_slide_outputs(tmp_path, "s", "detect", ("overlay",), SlideTable(lambda: [], schema={}))
    with pytest.raises(ConfigError, match="unknown output format 'xlsx'"):
        write_image_outputs(tmp_path, "img", "detect", ("xlsx",), ImageOutput(_points()))
    with pytest.raises(ConfigError, match="formats must be one or more of csv, geojson, parquet, sqlite, napari; got tsv"):
        check_slide_formats("csv,tsv")


def test_a_new_format_is_one_registration(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "WRITERS", dict(WRITERS))  # leave the real registry as it was

    def write_tsv(path, table):
        rows = [f"{x}\t{y}" for c in table.chunks() for x, y in c.xy]
        path.write_text("\n".join(["x\ty", *rows]) + "\n")
        return path

    register_writer(Writer("tsv", ".tsv", write_slide=write_tsv))
    assert "tsv" in slide_formats()
    written = write_slide_outputs(tmp_path, "s", "segment", ("tsv",), SlideTable(lambda: [_points(2)], schema={}))
    assert written["tsv"].name == "s_outlines.tsv"
    assert written["tsv"].read_text().splitlines()[1:] == ["0.25\t0.0", "10.25\t5.0"]
