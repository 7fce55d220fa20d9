"""Whole-slide detection: seams, resolution, the global xi * max rule, resume, tissue, outputs, memory."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from nucleikit.errors import ConfigError, InputError
from nucleikit.export import query_region
from nucleikit.infer.predict import Detector, InferenceConfig
from nucleikit.infer.wsi import (
    SlideProgress,
    _ModelGrid,
    detect_slide,
    resume_path,
    slide_geometry,
)
from nucleikit.io.slides import open_slide
from nucleikit.metrics import match_points
from nucleikit.models.weights import bundled_weights_dir
from nucleikit.transforms import resample, standardise
from nucleikit.windows import Window

MOSAIC_MPP = 0.55
# CRCHisto test images (PROTOCOL.md) cut into the mosaic.
MOSAIC_IMAGES = (1, 4, 9, 24, 30, 37)


def write_pyramid(path: Path, level0: np.ndarray, *, mpp: float, levels: int = 2, tile: int = 64) -> Path:
    """A tiled pyramidal TIFF (SubIFDs), each level the 2x2 mean of the one before."""
    px_per_cm = 1e4 / mpp
    options = dict(tile=(tile, tile), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(path) as tif:
        tif.write(level0, subifds=levels - 1, resolution=(px_per_cm, px_per_cm), **options)
        level = level0
        for k in range(1, levels):
            h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
            level = level[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
            scale = px_per_cm / 2**k
            tif.write(level, subfiletype=1, resolution=(scale, scale), **options)
    return path


def tiny_detector(*, mpp: float = 0.5, halo: int = 128, tile: int = 1024) -> Detector:
    """An untrained width-4 MicroNet. Its receptive field, measured with an impulse at a
    relative tolerance of 1e-6, is 122 px, so halo 128 makes tiles agree with the one-pass
    map to float noise (the 1e-3 default gives 48, which leaves 1e-5 differences that move
    the untrained net's shallow peaks)."""
    import torch

    from nucleikit.models import build_model

    torch.manual_seed(0)
    meta = {
        "name": "tiny",
        "model": "micronet",
        "model_kwargs": {"width": 4},
        "mpp": mpp,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "postprocess": {"threshold_rel": 0.5, "min_distance": 3},
        "halo": halo,
    }
    return Detector(build_model("micronet", width=4), meta, config=InferenceConfig(threads=1, tile=tile))


@pytest.fixture(scope="module")
def detector() -> Detector:
    return tiny_detector()


@pytest.fixture(scope="module")
def mosaic(crchisto_dir, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 2 x 3 grid of 160 x 160 crops of real CRCHisto images as a 2-level pyramid at 0.55 µm/px."""
    crops = [np.asarray(Image.open(crchisto_dir / "images" / f"img{k}.png").convert("RGB"))[:160, :160]
             for k in MOSAIC_IMAGES]
    pixels = np.concatenate([np.concatenate(crops[:3], axis=1), np.concatenate(crops[3:], axis=1)], axis=0)
    path = write_pyramid(tmp_path_factory.mktemp("mosaic") / "mosaic.tif", pixels, mpp=MOSAIC_MPP)
    return path, pixels


@pytest.fixture(scope="module")
def mosaic_run(mosaic, detector, tmp_path_factory):
    """detect_slide on the mosaic with 128-px tiles, every format, run once for several tests."""
    path, _ = mosaic
    return detect_slide(path, detector, tmp_path_factory.mktemp("run"), tile=128, tissue_mask="all",
                        progress=False)


def _csv(path: Path) -> np.ndarray:
    return pd.read_csv(path).to_numpy()


# --- seams and the global threshold ------------------------------------------------------


def test_slide_path_equals_one_pass_detection_on_the_mosaic(mosaic, detector, mosaic_run):
    """Issue 6's seam test: tiles of 128 model px (seams every 128 px, not on the image seams
    every 160 slide px), resampled 0.55 -> 0.5 µm/px on the fly, xi * max over the whole slide."""
    path, pixels = mosaic
    one_pass = detector.detect(pixels.astype(np.float32) / 255, mpp=MOSAIC_MPP)
    res = mosaic_run
    assert res.level == 0 and res.factor == pytest.approx(1.1) and res.model_shape == (352, 528)
    assert res.tiles_total == res.tiles_tissue == 3 * 5
    assert res.map_max == pytest.approx(one_pass.map_max, abs=1e-6)
    rows = _csv(res.outputs["csv"])
    assert res.count == len(rows) == len(one_pass) > 1000
    m = match_points(one_pass.xy, rows[:, :2], 1.0)
    assert m.tp == len(one_pass)  # every one-pass nucleus once, within 1 px (CSV keeps 2 decimals)
    assert np.abs(np.sort(rows[:, 2]) - np.sort(one_pass.scores)).max() < 1e-4
    assert not resume_path(res.outputs["csv"].parent, "mosaic").exists()


@pytest.mark.skipif(not (bundled_weights_dir() / "micronet.safetensors").is_file(),
                    reason="bundled micronet weights not shipped yet")
def test_slide_path_equals_one_pass_with_bundled_micronet(mosaic, tmp_path):
    path, pixels = mosaic
    micronet = Detector.from_weights("micronet", config=InferenceConfig(threads=1, tile=1024))
    one_pass = micronet.detect(pixels.astype(np.float32) / 255, mpp=MOSAIC_MPP)
    res = detect_slide(path, micronet, tmp_path, tile=192, tissue_mask="all", progress=False,
                       formats=("csv",))
    rows = _csv(res.outputs["csv"])
    m = match_points(one_pass.xy, rows[:, :2], 1.0)
    assert len(one_pass) > 100 and res.count == len(one_pass) == m.tp


@pytest.mark.skipif(not (bundled_weights_dir() / "micronet.safetensors").is_file(),
                    reason="bundled micronet weights not shipped yet")
def test_default_tiles_come_from_the_memory_budget_and_keep_the_nuclei(mosaic, tmp_path):
    """Issue 15: without a tile size the slide's cores are the largest balanced ones whose read
    window fits InferenceConfig.memory; the nuclei are those of one pass over the mosaic."""
    path, pixels = mosaic
    one_pass = Detector.from_weights("micronet", config=InferenceConfig(threads=1, tile=1024)).detect(
        pixels.astype(np.float32) / 255, mpp=MOSAIC_MPP)
    # a budget that holds 400 px windows: cores of 176 px at most around a 112 px halo
    rate = Detector.from_weights("micronet", config=InferenceConfig(threads=1, precision="fp32")).predictor
    budget = int(rate.bytes_per_pixel * 400**2)
    small = Detector.from_weights("micronet", config=InferenceConfig(threads=1, memory=budget, precision="fp32"))
    plan = small.predictor.plan((320, 480), halo=112)
    assert plan.tile == (160, 160) and plan.window_bytes <= budget
    res = detect_slide(path, small, tmp_path / "small", tissue_mask="all", progress=False, formats=("csv",))
    assert res.model_shape == (320, 480) and res.tiles_total == 2 * 3
    rows = _csv(res.outputs["csv"])
    assert len(one_pass) > 100 and res.count == len(one_pass) == match_points(one_pass.xy, rows[:, :2], 1.0).tp
    # the default budget (1 GiB) holds this small slide in one window
    default = Detector.from_weights("micronet", config=InferenceConfig(threads=1, precision="fp32"))
    res = detect_slide(path, default, tmp_path / "default", tissue_mask="all", progress=False, formats=("csv",))
    assert res.tiles_total == 1
    assert res.count == len(one_pass) == match_points(one_pass.xy, _csv(res.outputs["csv"])[:, :2], 1.0).tp


def test_threshold_is_global_not_per_tile(mosaic, detector, mosaic_run, tmp_path):
    """Peaks are kept above xi times the slide's maximum, whatever their tile's own maximum."""
    path, _ = mosaic
    res = mosaic_run
    table = pd.read_parquet(res.outputs["parquet"])
    assert res.threshold == pytest.approx(0.5 * res.map_max)
    assert (table["score"] > np.float32(res.threshold)).all()
    assert list(table.columns) == ["x", "y", "score"] and table["score"].dtype == np.float32
    # The untrained map's peaks all score 0.42-0.45; xi = 0.96 cuts into them. With a
    # per-tile maximum, tiles whose own maximum is below the slide's would keep more.
    high = detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False,
                        formats=("parquet",), threshold_rel=0.96)
    high_table = pd.read_parquet(high.outputs["parquet"])
    kept = table[table["score"] > np.float32(0.96 * res.map_max)].reset_index(drop=True)
    assert 0 < len(kept) < len(table) / 2
    pd.testing.assert_frame_equal(high_table, kept)


def test_floor_on_a_slide_equals_the_floor_on_one_pass(mosaic, detector, mosaic_run, tmp_path):
    """The floor is one number for every tile: with it deciding (above xi * M), the slide's
    nuclei are the one-pass nuclei above it, and the threshold reported is the floor."""
    path, pixels = mosaic
    floor = 0.44  # the untrained map's peaks score 0.42-0.45; xi * M is about 0.23
    one_pass = detector.detect(pixels, mpp=MOSAIC_MPP, threshold_abs=floor)
    res = detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False,
                       formats=("parquet",), threshold_abs=floor)
    assert res.threshold == pytest.approx(floor) and res.threshold > 0.5 * res.map_max
    table = pd.read_parquet(res.outputs["parquet"])
    assert 0 < res.count == len(table) == len(one_pass) < mosaic_run.count
    assert match_points(one_pass.xy, table[["x", "y"]].to_numpy(), 1.0).tp == len(one_pass)
    assert (table["score"] > np.float32(floor)).all()
    everything = pd.read_parquet(mosaic_run.outputs["parquet"])  # the weights' floor (0): xi * M only
    assert len(table) == int((everything["score"] > np.float32(floor)).sum())


def test_a_blank_slide_with_every_tile_run_has_no_nuclei(tmp_path):
    """--tissue-mask all on glass: the bundled detector's floor keeps the background out."""
    micronet = Detector.from_weights("micronet", config=InferenceConfig(threads=1))
    path = write_pyramid(tmp_path / "glass.tif", np.full((300, 300, 3), 255, np.uint8), mpp=0.55, levels=1)
    res = detect_slide(path, micronet, tmp_path / "out", tissue_mask="all", progress=False, formats=("csv",))
    assert res.count == 0 and res.outputs["csv"].read_text() == "x,y,score\n"
    assert res.threshold == micronet.threshold_abs > micronet.threshold_rel * res.map_max > 0
    relative_only = detect_slide(path, micronet, tmp_path / "old", tissue_mask="all", progress=False,
                                 formats=("csv",), threshold_abs=0.0)
    assert relative_only.count > 100  # what the xi * max rule alone gave


def test_bad_floor_is_refused(mosaic, detector, tmp_path):
    path, _ = mosaic
    for bad in (-0.5, float("nan")):
        with pytest.raises(ConfigError, match="threshold_abs"):
            detect_slide(path, detector, tmp_path, threshold_abs=bad, progress=False)


# --- resolution ---------------------------------------------------------------------------


@pytest.mark.parametrize("factor_mpp", [0.3, 0.55])
def test_model_grid_blocks_equal_resampling_the_whole_level(tmp_path, factor_mpp, rng):
    """Any block of the virtual model-resolution image equals the same pixels of
    resample(level, factor): shrinking (anti-aliased, 0.3 -> 0.5) and enlarging (0.55 -> 0.5)."""
    pixels = rng.integers(0, 256, (150, 210, 3), dtype=np.uint8)
    path = write_pyramid(tmp_path / "s.tif", pixels, mpp=factor_mpp, levels=1)
    mean, std = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32)
    with open_slide(path) as slide:
        g = slide_geometry(slide, 0.5)
        grid = _ModelGrid(slide.level_view(0), g, mean, std)
        whole = standardise(resample(pixels.astype(np.float32) / 255, g.factor), mean, std)
        assert whole.shape == grid.shape
        for y0, y1, x0, x1 in [(0, 7, 0, 9), (13, 60, 40, 101), (whole.shape[0] - 5, whole.shape[0], 3, 4),
                               (0, whole.shape[0], 0, whole.shape[1])]:
            np.testing.assert_allclose(grid[y0:y1, x0:x1], whole[y0:y1, x0:x1], atol=2e-5)


def test_geometry_chooses_level_and_maps_points_to_level0(tmp_path, rng):
    pixels = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    path = write_pyramid(tmp_path / "p.tif", pixels, mpp=0.25, levels=3)
    with open_slide(path) as slide:
        exact = slide_geometry(slide, 0.5)  # level 1 is 0.5 µm/px: read as is
        assert (exact.level, exact.factor, exact.model_shape) == (1, 1.0, (100, 150))
        np.testing.assert_allclose(exact.to_level0([[0, 0], [10, 3]]), [[0.5, 0.5], [20.5, 6.5]])
        coarse = slide_geometry(slide, 0.8)  # level 1 (0.5) is the coarsest not coarser than 0.8
        assert coarse.level == 1 and coarse.factor == pytest.approx(0.625)
        assert coarse.model_shape == (62, 94)  # round(100 * 0.625), round(150 * 0.625)
        # model pixel centre -> level 1 (x + 0.5) / (94 / 150) - 0.5 -> level 0 (v + 0.5) * 2 - 0.5
        np.testing.assert_allclose(coarse.to_level0([[0, 0]]), [[0.5 / (94 / 150) * 2 - 0.5,
                                                                 0.5 / (62 / 100) * 2 - 0.5]])
        fine = slide_geometry(slide, 0.2)  # finer than level 0: enlarge level 0
        assert fine.level == 0 and fine.factor == pytest.approx(1.25)
        forced = slide_geometry(slide, 0.5, level=2)
        assert forced.level == 2 and forced.factor == pytest.approx(2.0)
        with pytest.raises(InputError, match="level 3 does not exist"):
            slide_geometry(slide, 0.5, level=3)


# --- resume -------------------------------------------------------------------------------


class Stop(Exception):
    pass


def test_interrupted_slide_resumes_from_its_finished_tiles(mosaic, detector, mosaic_run, tmp_path):
    path, _ = mosaic
    seen: list[int] = []

    def stop_after_4(p: SlideProgress) -> None:
        seen.append(p.tile)
        if p.done == 4:
            raise Stop

    with pytest.raises(Stop):
        detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False, on_tile=stop_after_4)
    assert resume_path(tmp_path, "mosaic").exists() and not (tmp_path / "mosaic.csv").exists()
    first = list(seen)
    seen.clear()
    resumed = detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False,
                           on_tile=seen.append, formats=("csv",))
    assert first == [0, 1, 2, 3]
    assert resumed.tiles_resumed == 4
    assert sorted(p.tile for p in seen) == list(range(4, 15))  # the first four were not recomputed
    assert seen[-1].done == seen[-1].total == 15
    # the same nuclei as the uninterrupted run
    np.testing.assert_allclose(_csv(resumed.outputs["csv"]), _csv(mosaic_run.outputs["csv"]), atol=1e-4)
    assert not resume_path(tmp_path, "mosaic").exists()


def test_changed_settings_do_not_resume(mosaic, detector, tmp_path):
    path, _ = mosaic
    progress: list[SlideProgress] = []

    def stop(p: SlideProgress) -> None:
        progress.append(p)
        raise Stop

    with pytest.raises(Stop):
        detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False, on_tile=stop)
    with pytest.raises(Stop):
        detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False, on_tile=stop,
                     threshold_rel=0.6)
    with pytest.raises(Stop):
        detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False, on_tile=stop,
                     threshold_rel=0.6)
    # xi changed: started afresh (done counts from 1); same settings again: tile 0 was kept
    assert [(p.tile, p.done) for p in progress] == [(0, 1), (0, 1), (1, 2)]


# --- tissue -------------------------------------------------------------------------------


def test_mask_file_skips_glass_tiles_and_no_nucleus_is_outside_them(mosaic, detector, tmp_path):
    path, pixels = mosaic
    h, w = pixels.shape[:2]
    mask = np.zeros((h // 4, w // 4), np.uint8)
    mask[:, : w // 8] = 255  # the left half of the slide
    mask_file = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_file)
    res = detect_slide(path, detector, tmp_path / "out", tile=128, tissue_mask=mask_file, progress=False,
                       formats=("csv",))
    # Model grid 352 x 528, tiles 128: columns [0, 128), [128, 256), [256, 384) touch x < 264 model px.
    assert (res.tiles_total, res.tiles_tissue) == (15, 9)
    rows = _csv(res.outputs["csv"])
    assert len(rows) > 0 and rows[:, 0].max() < 384 / 1.1
    written = np.asarray(Image.open(res.outputs["tissue"]))
    assert written.shape == (h, w) and (written[:, : w // 2] == 255).all() and (written[:, w // 2 :] == 0).all()


def test_real_svs_tissue_is_found_and_glass_skipped(slides_dir, tmp_path):
    """CMU-1-Small-Region.svs (half glass) through a 2 µm/px model: Otsu mask, anti-aliased resampling."""
    coarse = tiny_detector(mpp=2.0, halo=48, tile=128)
    res = detect_slide(slides_dir / "CMU-1-Small-Region.svs", coarse, tmp_path, progress=False,
                       formats=("sqlite",))
    assert res.level == 0 and res.factor == pytest.approx(0.499 / 2.0)
    assert 0 < res.tiles_tissue < res.tiles_total
    mask = np.asarray(Image.open(res.outputs["tissue"])) > 0
    assert 0.2 < mask.mean() < 0.9
    xy, cols = query_region(res.outputs["sqlite"], Window(0, 0, 3000, 3000))
    assert len(xy) == res.count > 0
    # Every nucleus lies in a tile that touches tissue: within one tile (128 model px = 513 level-0 px).
    from scipy import ndimage

    far = ndimage.distance_transform_edt(~mask) / res.mask_scale
    r, c = (xy[:, 1] * res.mask_scale).astype(int), (xy[:, 0] * res.mask_scale).astype(int)
    assert far[r, c].max() <= 128 * 4.01 * math.sqrt(2)


def test_slide_without_tissue_is_an_input_error_and_writes_nothing(detector, tmp_path):
    white = np.full((256, 256, 3), 242, np.uint8)
    path = write_pyramid(tmp_path / "blank.tif", white, mpp=0.5, levels=1)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no tissue found"):
        detect_slide(path, detector, out, progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_bad_arguments(mosaic, detector, tmp_path):
    path, _ = mosaic
    with pytest.raises(ConfigError, match="formats"):
        detect_slide(path, detector, tmp_path, formats=("csv", "xlsx"), progress=False)
    with pytest.raises(ConfigError, match="tissue_mask"):
        detect_slide(path, detector, tmp_path, tissue_mask=3, progress=False)
    with pytest.raises(InputError, match="no such|not found"):
        detect_slide(tmp_path / "missing.svs", detector, tmp_path, progress=False)


# --- outputs ------------------------------------------------------------------------------


def test_all_formats_hold_the_same_nuclei_and_sqlite_answers_region_queries(mosaic_run):
    res = mosaic_run
    assert set(res.outputs) == {"csv", "parquet", "geojson", "sqlite"}
    table = pd.read_parquet(res.outputs["parquet"])
    rows = _csv(res.outputs["csv"])
    np.testing.assert_allclose(rows[:, :2], table[["x", "y"]].to_numpy(), atol=0.005 + 1e-9)
    import json

    features = json.loads(res.outputs["geojson"].read_text())["features"]
    assert len(features) == len(table) == res.count
    assert features[0]["properties"]["objectType"] == "detection"
    np.testing.assert_allclose(features[0]["geometry"]["coordinates"],
                               table[["x", "y"]].to_numpy()[0] + 0.5, atol=0.005 + 1e-9)
    window = Window(100, 50, 200, 250)  # y in [100, 200), x in [50, 250)
    xy, cols = query_region(res.outputs["sqlite"], window)
    inside = table[(table.x >= 50) & (table.x < 250) & (table.y >= 100) & (table.y < 200)]
    assert 0 < len(xy) < len(table)
    np.testing.assert_array_equal(xy, inside[["x", "y"]].to_numpy())
    np.testing.assert_allclose(cols["score"], inside["score"].to_numpy(), rtol=1e-7)
    folder = res.outputs["csv"].parent
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or "resume" in p.name]
    assert leftovers == []


def test_no_nucleus_above_threshold_still_writes_every_table(tmp_path, rng):
    """xi = 1: no peak is strictly above the maximum; each file exists with its schema and no rows."""
    path = write_pyramid(tmp_path / "s.tif", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), mpp=0.5, levels=1)
    res = detect_slide(path, tiny_detector(halo=32, tile=64), tmp_path / "out", tissue_mask="all",
                       threshold_rel=1.0, progress=False)
    assert res.count == 0 and res.map_max > 0
    assert res.outputs["csv"].read_text() == "x,y,score\n"
    table = pd.read_parquet(res.outputs["parquet"])
    assert len(table) == 0 and list(table.columns) == ["x", "y", "score"]
    import json

    doc = json.loads(res.outputs["geojson"].read_text())
    assert doc["type"] == "FeatureCollection" and doc["features"] == []
    assert set(doc) == {"type", "features", "nucleikit"}  # the foreign member QuPath ignores
    xy, cols = query_region(res.outputs["sqlite"], Window(-10, -10, 1000, 1000))
    assert xy.shape == (0, 2) and list(cols) == ["score"]


# --- memory -------------------------------------------------------------------------------


def _peak_traced_bytes(path: Path, detector: Detector, out: Path) -> int:
    tracemalloc.start()
    try:
        detect_slide(path, detector, out, tile=64, tissue_mask="all", progress=False, formats=("csv", "sqlite"))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_slide_area(tmp_path, rng, monkeypatch):
    """Python-side peak (NumPy buffers included) for a slide 4x the area is the same to within
    a fraction of what holding its map (768 KiB more) or pixels would add: one batch of tiles
    and one chunk of nuclei, not the slide. Torch's own buffers are not traced (the benchmark
    measures the process's peak RSS)."""
    import nucleikit.infer.wsi as wsi

    monkeypatch.setattr(wsi, "_CHUNK", 512)  # nuclei per output chunk; 65536 in use (1.5 MB)
    small_det = tiny_detector(halo=32, tile=64)
    small = write_pyramid(tmp_path / "small.tif", rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), mpp=0.5,
                          levels=1)
    large = write_pyramid(tmp_path / "large.tif", rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), mpp=0.5,
                          levels=1)
    _peak_traced_bytes(small, small_det, tmp_path / "warm-up")  # first-use allocations (imports, caches)
    peak_small = _peak_traced_bytes(small, small_det, tmp_path / "a")
    peak_large = _peak_traced_bytes(large, small_det, tmp_path / "b")
    assert peak_large - peak_small < 192 * 1024, (peak_small, peak_large)


def test_a_calibrated_detector_writes_the_same_calibrated_scores_on_slides_as_on_images(mosaic, detector, tmp_path):
    from nucleikit.infer.calibration import ScoreCalibration

    path, pixels = mosaic
    cal = ScoreCalibration((0.0, 0.5, 1.0), (0.0, 0.2, 1.0))
    calibrated = Detector(detector.predictor.model, {**detector.meta, "calibration": cal.to_meta()},
                          config=InferenceConfig(threads=1, tile=detector.predictor.config.tile))
    one_pass = calibrated.detect(pixels.astype(np.float32) / 255, mpp=MOSAIC_MPP)
    res = detect_slide(path, calibrated, tmp_path, tile=128, tissue_mask="all", progress=False, formats=("csv",))
    rows = _csv(res.outputs["csv"])
    assert res.count == len(one_pass) > 100
    np.testing.assert_allclose(np.sort(rows[:, 2]), np.sort(one_pass.scores), atol=1e-4)
    # the thresholds compared raw values: calibration changed the scores, not the nuclei
    assert not np.allclose(np.sort(one_pass.scores), np.sort(one_pass.map_values), atol=1e-3)


def test_slide_geojson_records_the_slides_resolution(mosaic, detector, tmp_path):
    import json

    path, _ = mosaic
    res = detect_slide(path, detector, tmp_path, tile=128, tissue_mask="all", progress=False, formats=("geojson",))
    doc = json.loads(res.outputs["geojson"].read_text())
    assert doc["nucleikit"]["mpp"] == pytest.approx(MOSAIC_MPP)
