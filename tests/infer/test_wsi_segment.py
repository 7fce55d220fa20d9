"""Whole-slide segmentation: seams against one pass, tissue, resume, level-0 outputs, bad input."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image
from scipy.spatial import cKDTree

from nucleikit.errors import InputError
from nucleikit.export import query_polygons, query_region
from nucleikit.infer.predict import InferenceConfig
from nucleikit.infer.segment import Segmenter
from nucleikit.infer.tiling import Tile
from nucleikit.infer.wsi import SlideProgress, resume_path
from nucleikit.infer.wsi_segment import kept_instances, seam_margin, segment_slide
from nucleikit.models.weights import load_weights, resolve_weights, save_weights
from nucleikit.postprocess import label_measurements, label_outlines
from nucleikit.transforms import percentile_normalise
from nucleikit.windows import Window


def _wsi_helpers():
    # The detection tests' pyramid writer, reused (test files are not importable as a package).
    spec = importlib.util.spec_from_file_location("_test_wsi_helpers", Path(__file__).with_name("test_wsi.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_pyramid = _wsi_helpers().write_pyramid

MPP = 0.55
TILE = 256  # 600 px of tissue: seams at x, y = 256 and 512 cut through nuclei
GLASS_WIDTH = 256  # a glass strip on the right: tile column [768, 856) holds no tissue


def _region(crchisto_dir: Path) -> np.ndarray:
    """600 x 600 of real H&E: 2 x 2 crops of CRCHisto test images, stretched by their own
    1st and 99.8th percentiles (the bundled U-Net's per-image normalisation, done once for
    the whole region), as uint8."""
    crops = [np.asarray(Image.open(crchisto_dir / "images" / f"img{k}.png").convert("RGB"))[:300, :300]
             for k in (1, 4, 9, 24)]
    pixels = np.concatenate([np.concatenate(crops[:2], axis=1), np.concatenate(crops[2:], axis=1)], axis=0)
    stretched = np.clip(percentile_normalise(pixels.astype(np.float32) / 255), 0, 1)
    return (stretched * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def slide(crchisto_dir, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The region with a glass strip on its right, as a 2-level pyramid at 0.55 µm/px (600 x 856 px)."""
    region = _region(crchisto_dir)
    noise = np.random.default_rng(0).integers(-4, 5, (600, GLASS_WIDTH, 3))
    glass = np.clip(np.array([242, 242, 245]) + noise, 0, 255).astype(np.uint8)
    pixels = np.concatenate([region, glass], axis=1)
    return write_pyramid(tmp_path_factory.mktemp("slide") / "region.tif", pixels, mpp=MPP), pixels


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Segmenter:
    """The bundled U-Net with its per-image percentile normalisation off (the slide is already
    normalised as a whole): a segmenter whose output at a pixel depends only on the pixels
    within its receptive field, for which a tiled slide must equal one pass exactly."""
    model, meta = load_weights(resolve_weights("unet"))
    path = save_weights(tmp_path_factory.mktemp("weights") / "unet_local.safetensors", model,
                        dict(meta, intensity="none"))
    return Segmenter.from_weights(path, InferenceConfig(threads=1, tile=1024))


@pytest.fixture(scope="module")
def run(slide, segmenter, tmp_path_factory):
    """segment_slide on the slide with 256-px tiles, tissue found on a thumbnail, every format."""
    path, _ = slide
    return segment_slide(path, segmenter, tmp_path_factory.mktemp("out"), tile=TILE, progress=False)


@pytest.fixture(scope="module")
def one_pass(slide, segmenter):
    _, pixels = slide
    return segmenter.segment(pixels.astype(np.float32) / 255)


def _match(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point of ``a``, the distance to and index of the nearest point of ``b``."""
    return cKDTree(b).query(a)


def _iou(p, q) -> float:
    return p.intersection(q).area / p.union(q).area


# --- seams ---------------------------------------------------------------------------------


def test_tiled_slide_equals_one_pass_and_keeps_seam_nuclei_once(run, one_pass):
    """Every nucleus of one pass over the whole slide, once, with the same outline, area and
    intensity; among them dozens that cross a seam."""
    m = one_pass.measurements
    table = pd.read_parquet(run.outputs["parquet"])
    assert run.level == 0 and run.factor == 1.0 and run.margin == seam_margin(96, 20 / MPP, align=16) == 144
    assert run.count == len(table) == len(one_pass) > 400
    dist, idx = _match(np.column_stack([m["x"], m["y"]]), table[["x", "y"]].to_numpy())
    assert dist.max() < 1e-6 and len(np.unique(idx)) == len(idx)  # one to one: no duplicate, no gap
    np.testing.assert_array_equal(table["area"].to_numpy()[idx], m["area"])
    np.testing.assert_allclose(table["mean_intensity"].to_numpy()[idx], m["mean_intensity"], atol=1e-6)
    tiled = shapely.from_wkb(table["geometry"].to_numpy())[idx]
    whole = [shapely.Polygon(r) for r in label_outlines(one_pass.labels)]  # pixel centres, as the tables
    assert min(_iou(p, q) for p, q in zip(whole, tiled)) > 0.999
    lines = [[(s, -1), (s, 601)] for s in (256, 512)] + [[(-1, s), (857, s)] for s in (256, 512)]
    seams = shapely.MultiLineString(lines)
    assert shapely.intersects(tiled, seams).sum() >= 20


def test_glass_tiles_do_not_run(run, slide):
    """The glass column of tiles is skipped; the tissue mask is saved beside the tables."""
    assert (run.tiles_total, run.tiles_tissue) == (12, 9)
    mask = np.asarray(Image.open(run.outputs["tissue"])) > 0
    glass_from = int(np.ceil(768 * run.mask_scale))  # the skipped tile column, in mask pixels
    assert mask[:, : int(600 * run.mask_scale)].mean() > 0.4 and not mask[:, glass_from:].any()


def test_blank_slide_has_no_tiles_and_writes_nothing(segmenter, tmp_path):
    glass = np.full((300, 300, 3), 242, np.uint8)
    path = write_pyramid(tmp_path / "blank.tif", glass, mpp=MPP, levels=1)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no tissue found"):
        segment_slide(path, segmenter, out, progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_seam_rule_keeps_by_centroid_and_drops_what_touches_the_margin_edge():
    """Window rows [20, 32) x cols [20, 32) of a 32 x 64 grid: its bottom edge is the slide's
    border, its other edges are inside the slide. Core: rows [24, 32) x cols [24, 28)."""
    labels = np.zeros((12, 12), np.int32)
    labels[0:3, 5:7] = 1  # centroid in the core's columns but touches the window's top edge: dropped
    labels[9:12, 5:7] = 2  # touches the bottom edge, which is the slide's border: kept
    labels[6:8, 4:7] = 3  # inside, centroid (x 25, y 26.5) in the core: kept
    labels[6:8, 9:11] = 4  # inside, centroid (x 29.5) right of the core: another tile's
    window = Window(20, 20, 32, 32)
    tile = Tile(index=0, position=(0, 0), read=Window(4, 8, 48, 44), core=Window(24, 24, 32, 28))
    m = label_measurements(labels)
    keep = kept_instances(labels, m["label"], np.column_stack([m["x"], m["y"]]), window, tile, (32, 64))
    assert m["label"][keep].tolist() == [2, 3]


# --- resume --------------------------------------------------------------------------------


class Stop(Exception):
    pass


def test_interrupted_slide_resumes_from_its_finished_tiles(slide, segmenter, run, tmp_path):
    path, _ = slide
    seen: list[SlideProgress] = []

    def stop_after_3(p: SlideProgress) -> None:
        seen.append(p)
        if p.done == 3:
            raise Stop

    with pytest.raises(Stop):
        segment_slide(path, segmenter, tmp_path, tile=TILE, progress=False, on_tile=stop_after_3)
    assert resume_path(tmp_path, "region_outlines").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["region_outlines.resume.sqlite"]  # no table half-written
    first = [p.tile for p in seen]
    seen.clear()
    resumed = segment_slide(path, segmenter, tmp_path, tile=TILE, progress=False, on_tile=seen.append)
    assert first == [0, 1, 2] and resumed.tiles_resumed == 3
    assert [p.tile for p in seen] == [4, 5, 6, 8, 9, 10]  # tiles 3, 7 and 11 are glass; 0-2 were kept
    assert seen[-1].done == seen[-1].total == 9
    for fmt in ("csv", "parquet"):
        a = pd.read_csv(resumed.outputs[fmt]) if fmt == "csv" else pd.read_parquet(resumed.outputs[fmt])
        b = pd.read_csv(run.outputs[fmt]) if fmt == "csv" else pd.read_parquet(run.outputs[fmt])
        pd.testing.assert_frame_equal(a, b)
    assert not resume_path(tmp_path, "region_outlines").exists()



def test_tiles_of_another_tta_are_not_resumed(slide, segmenter, tmp_path):
    path, _ = slide

    def stop_after_2(p: SlideProgress) -> None:
        if p.done == 2:
            raise Stop

    with pytest.raises(Stop):
        segment_slide(path, segmenter, tmp_path, tile=TILE, progress=False, on_tile=stop_after_2)
    flipped = Segmenter(segmenter.predictor.model, segmenter.meta, config=segmenter.config, tta=2)
    with pytest.raises(Stop):  # the stored tiles were made with one view: started afresh
        segment_slide(path, flipped, tmp_path, tile=TILE, progress=False, on_tile=stop_after_2)
    resumed = segment_slide(path, flipped, tmp_path, tile=TILE, progress=False)
    assert resumed.tiles_resumed == 2  # its own two tiles, and those only


# --- outputs -------------------------------------------------------------------------------


def test_all_tables_hold_the_same_nuclei_and_sqlite_answers_region_queries(run):
    table = pd.read_parquet(run.outputs["parquet"])
    csv = pd.read_csv(run.outputs["csv"])
    assert list(csv.columns) == ["id", "x", "y", "area", "mean_intensity"]
    assert list(table.columns) == ["id", "x", "y", "area", "mean_intensity", "geometry"]
    assert csv["id"].tolist() == table["id"].tolist() == list(range(1, run.count + 1))
    np.testing.assert_allclose(csv[["x", "y"]], table[["x", "y"]], atol=0.005 + 1e-9)
    geo = json.loads(_geo_metadata(run.outputs["parquet"]))
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"

    features = json.loads(run.outputs["geojson"].read_text())["features"]
    assert len(features) == run.count
    polygons = shapely.from_wkb(table["geometry"].to_numpy())
    for k in (0, run.count // 2, run.count - 1):
        f = features[k]
        assert f["properties"]["objectType"] == "detection" and f["geometry"]["type"] == "Polygon"
        ms = f["properties"]["measurements"]
        assert ms["Label"] == table["id"][k] and ms["Area px^2"] == pytest.approx(table["area"][k])
        assert ms["Centroid X px"] == pytest.approx(table["x"][k] + 0.5)  # QuPath's pixel corners
        ring = np.array(f["geometry"]["coordinates"][0])
        assert (ring[0] == ring[-1]).all()
        np.testing.assert_allclose(ring[:-1], shapely.get_coordinates(polygons[k])[:-1] + 0.5, atol=0.005 + 1e-9)

    window = Window(100, 250, 300, 400)  # y in [100, 300), x in [250, 400)
    xy, cols = query_region(run.outputs["sqlite"], window)
    inside = table[(table.x >= 250) & (table.x < 400) & (table.y >= 100) & (table.y < 300)]
    assert 0 < len(xy) < run.count and list(cols) == ["area", "mean_intensity"]
    np.testing.assert_array_equal(xy, inside[["x", "y"]].to_numpy())
    ids, _, _, shapes = query_polygons(run.outputs["sqlite"], window)
    box = shapely.box(250, 100, 400, 300)
    expected = table["id"][shapely.intersects(polygons, box)].to_numpy()
    np.testing.assert_array_equal(ids, expected)
    assert set(inside["id"]) <= set(ids)  # a nucleus whose centroid is inside has its outline inside
    # the SQL of the module docstring, by hand
    with sqlite3.connect(run.outputs["sqlite"]) as con:
        rows = con.execute(
            "SELECT n.id, n.geometry FROM nuclei AS n JOIN nuclei_rtree AS r ON r.id = n.id "
            "WHERE r.max_x >= 250 AND r.min_x <= 400 AND r.max_y >= 100 AND r.min_y <= 300 ORDER BY n.id"
        ).fetchall()
    assert set(ids) <= {r[0] for r in rows}
    assert shapely.from_wkb(rows[0][1]).equals(polygons[rows[0][0] - 1])
    leftovers = [p.name for p in run.outputs["csv"].parent.iterdir() if p.name.startswith(".") or "resume" in p.name]
    assert leftovers == []


def _geo_metadata(path: Path) -> bytes:
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata[b"geo"]


def test_a_coarser_level_is_written_in_level0_pixels(slide, segmenter, tmp_path):
    """Level 1 (half size) read as is: centroids, outlines and areas come back in level-0 pixels."""
    path, pixels = slide
    res = segment_slide(path, segmenter, tmp_path, level=1, tile=128, tissue_mask="all", progress=False,
                        formats=("parquet",))
    h, w = pixels.shape[0] // 2, pixels.shape[1] // 2
    level1 = pixels[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    one = segmenter.segment(level1.astype(np.float32) / 255)
    assert res.level == 1 and res.model_shape == (h, w) and res.count == len(one) > 50
    table = pd.read_parquet(res.outputs["parquet"])
    to0 = lambda v: (np.asarray(v) + 0.5) * 2 - 0.5  # noqa: E731 - level-1 pixel centre -> level 0
    dist, idx = _match(np.column_stack([to0(one.measurements["x"]), to0(one.measurements["y"])]),
                       table[["x", "y"]].to_numpy())
    assert dist.max() < 1e-6
    np.testing.assert_array_equal(table["area"].to_numpy()[idx], 4 * one.measurements["area"])
    ring = label_outlines(one.labels)[0]
    np.testing.assert_allclose(shapely.get_coordinates(shapely.from_wkb(table["geometry"][idx[0]]))[:-1],
                               to0(ring))


# --- bad input -----------------------------------------------------------------------------


def test_damaged_slide_is_an_input_error_and_writes_nothing(slide, segmenter, tmp_path):
    path, _ = slide
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = tmp_path / "out"
    with pytest.raises(InputError, match="truncated"):
        segment_slide(cut, segmenter, out, progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_a_failing_writer_leaves_no_table_and_the_tiles_for_a_resume(slide, segmenter, tmp_path, monkeypatch):
    """Outputs are written under a temporary name and renamed: a writer failing half-way leaves
    no file under its name, no temporary file, and the finished tiles in the resume file."""
    import nucleikit.export._stream as stream
    import nucleikit.infer.wsi_segment as ws

    path, _ = slide
    calls = {"n": 0}
    real = stream.polygons_from_rings

    def fail_on_second_chunk(vertices, offsets):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(vertices, offsets)

    monkeypatch.setattr(ws, "_CHUNK", 16)  # several chunks per table
    monkeypatch.setattr(stream, "polygons_from_rings", fail_on_second_chunk)  # the outlines of each chunk
    with pytest.raises(OSError, match="disk full"):  # level 1, to be quick: 4 tiles
        segment_slide(path, segmenter, tmp_path, level=1, tile=TILE, tissue_mask="all", progress=False,
                      formats=("parquet",))
    assert calls["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["region_outlines.resume.sqlite"]


# --- the bundled U-Net as shipped ------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="the bundled U-Net normalises each input by its own 1st and 99.8th "
                                       "percentiles, so a window's map is not the slide's: outlines move and a "
                                       "few nuclei at seams appear twice or not at all; exact once Segmenter can "
                                       "take a slide-wide intensity range")
def test_shipped_unet_tiled_equals_one_pass(crchisto_dir, tmp_path):
    region = _region(crchisto_dir)
    path = write_pyramid(tmp_path / "region.tif", region, mpp=MPP, levels=1)
    shipped = Segmenter.from_weights("unet", InferenceConfig(threads=1, tile=1024))
    one = shipped.segment(region.astype(np.float32) / 255)
    res = segment_slide(path, shipped, tmp_path / "out", tile=TILE, tissue_mask="all", progress=False,
                        formats=("parquet",))
    table = pd.read_parquet(res.outputs["parquet"])
    dist, _ = _match(np.column_stack([one.measurements["x"], one.measurements["y"]]), table[["x", "y"]].to_numpy())
    assert res.count == len(one) and (dist < 2).all()
