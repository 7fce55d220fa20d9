"""``nucleikit detect`` on whole slides: routing, outputs, bad slides in a batch, options."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from nucleikit.cli.main import main

PINK = np.array([217, 115, 166], np.uint8)  # eosin-like
GLASS = np.array([242, 242, 245], np.uint8)


def _pyramid(path: Path, level0: np.ndarray, mpp: float = 0.5) -> Path:
    px_per_cm = 1e4 / mpp
    options = dict(tile=(64, 64), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER")
    h, w = level0.shape[0] // 2, level0.shape[1] // 2
    level1 = level0[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(level0, subifds=1, resolution=(px_per_cm, px_per_cm), **options)
        tif.write(level1, subfiletype=1, resolution=(px_per_cm / 2, px_per_cm / 2), **options)
    return path


@pytest.fixture
def tissue_slide(tmp_path) -> Path:
    """256 x 384 px of glass with a pink disc (tissue) on the left, as a 2-level pyramid."""
    yy, xx = np.mgrid[:256, :384]
    disc = (yy - 128) ** 2 + (xx - 110) ** 2 <= 90**2
    noise = np.random.default_rng(0).integers(-6, 7, (256, 384, 3))
    pixels = np.clip(np.where(disc[:, :, None], PINK, GLASS) + noise, 0, 255).astype(np.uint8)
    return _pyramid(tmp_path / "disc.tif", pixels)


def test_detect_routes_slides_and_images_and_goes_on_past_bad_slides(tiny_weights, tissue_slide, disc_png,
                                                                     tmp_path, capsys):
    image, _ = disc_png
    blank = _pyramid(tmp_path / "blank.tif", np.broadcast_to(GLASS, (256, 256, 3)).copy())
    truncated = tmp_path / "cut.svs"
    truncated.write_bytes(tissue_slide.read_bytes()[:2000])
    png_as_svs = tmp_path / "photo.svs"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png_as_svs, format="PNG")
    out = tmp_path / "out"
    code = main(["detect", str(tissue_slide), str(image), str(blank), str(truncated), str(png_as_svs),
                 "-o", str(out), "--model", str(tiny_weights), "--threads", "1", "--tile", "64"])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    assert "3 failed" in captured.err
    assert "blank.tif: no tissue found" in captured.err
    assert "cut.svs: truncated" in captured.err
    assert "photo.svs: is a PNG image" in captured.err
    assert "2 of 5 inputs processed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["disc.csv", "disc.geojson", "disc.parquet", "disc.sqlite", "disc_tissue.png",
         "discs.csv", "discs.geojson", "discs_overlay.png", "detect_run.json"])
    rows = pd.read_csv(out / "disc.csv")
    assert list(rows.columns) == ["x", "y", "score"]
    # level-0 coordinates, nuclei only where the tissue mask let tiles run (the disc spans x < 200)
    assert len(rows) > 0 and rows.x.max() < 200 + 64 and rows.y.max() < 256
    mask = np.asarray(Image.open(out / "disc_tissue.png"))
    assert mask.any() and not mask.all()


def test_slide_options_level_formats_and_tissue_all(tiny_weights, tissue_slide, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["detect", str(tissue_slide), "-o", str(out), "--model", str(tiny_weights), "--threads", "1",
                 "--tile", "64", "--level", "1", "--formats", "sqlite,csv", "--tissue-mask", "all",
                 "--no-resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["detect_run.json", "disc.csv", "disc.sqlite"]
    assert "level 1" in capsys.readouterr().out
    rows = pd.read_csv(out / "disc.csv")
    assert rows.x.max() > 200  # every tile ran, glass included
    assert main(["detect", str(tissue_slide), "-o", str(out), "--model", str(tiny_weights), "--level", "4"]) == 2
    assert "level 4 does not exist" in capsys.readouterr().err


def test_bad_formats_is_a_usage_error(tissue_slide, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["detect", str(tissue_slide), "-o", str(tmp_path), "--formats", "csv,xlsx"])
    assert exc.value.code == 2
    assert "choose from csv,geojson,parquet,sqlite" in capsys.readouterr().err


def test_scheduler_local_spreads_slides_and_lists_failures(tiny_weights, tissue_slide, tmp_path, capsys):
    pytest.importorskip("distributed", reason="needs the 'distributed' extra")
    truncated = tmp_path / "cut.tif"
    truncated.write_bytes(tissue_slide.read_bytes()[: tissue_slide.stat().st_size // 2])
    out = tmp_path / "out"
    code = main(["detect", str(tissue_slide), str(truncated), "-o", str(out), "--model", str(tiny_weights),
                 "--tile", "64", "--formats", "csv", "--scheduler", "local", "--workers", "2"])
    captured = capsys.readouterr()
    assert code == 2
    assert "1 of 2 inputs processed" in captured.out and "disc.tif: " in captured.out
    assert "1 failed" in captured.err and "cut.tif: truncated" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["disc.csv", "disc_tissue.png"]


# --- nucleikit segment on whole slides ------------------------------------------------------


@pytest.fixture
def he_slide(crchisto_dir, tmp_path) -> Path:
    """256 x 512 px: a real H&E crop (CRCHisto img1) on the left, glass on the right, 2 levels."""
    crop = np.asarray(Image.open(crchisto_dir / "images" / "img1.png").convert("RGB"))[:256, :256]
    glass = np.clip(GLASS + np.random.default_rng(0).integers(-4, 5, (256, 256, 3)), 0, 255).astype(np.uint8)
    return _pyramid(tmp_path / "he.tif", np.concatenate([crop, glass], axis=1))


def test_segment_routes_slides_and_images_and_goes_on_past_bad_slides(he_slide, disc_png, tmp_path, capsys):
    image, _ = disc_png
    blank = _pyramid(tmp_path / "blank.tif", np.broadcast_to(GLASS, (256, 256, 3)).copy())
    truncated = tmp_path / "cut.svs"
    truncated.write_bytes(he_slide.read_bytes()[:2000])
    out = tmp_path / "out"
    code = main(["segment", str(he_slide), str(image), str(blank), str(truncated), "-o", str(out),
                 "--threads", "1", "--tile", "128"])  # the default model, the bundled U-Net
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    assert "2 failed" in captured.err
    assert "blank.tif: no tissue found" in captured.err
    assert "cut.svs: truncated" in captured.err
    assert "2 of 4 inputs processed" in captured.out
    found = re.search(r"he.tif: \d+ nuclei \(.* s, unet_he, level 0, 0.5 um/px \(metadata\), (\d) of 8 tiles with tissue",
                      captured.out)
    assert found and 4 <= int(found[1]) <= 6  # the glass column x >= 384 never runs
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["he_outlines.csv", "he_outlines.geojson", "he_outlines.parquet", "he_outlines.sqlite",
         "he_outlines_tissue.png", "discs_outlines.csv", "discs_outlines.geojson", "discs_labels.tif",
         "discs_outlines_overlay.png", "segment_run.json"])
    rows = pd.read_csv(out / "he_outlines.csv")
    assert list(rows.columns) == ["id", "x", "y", "area", "mean_intensity"]
    assert len(rows) > 20 and rows.x.max() < 256 + 8  # nuclei on the tissue only, level-0 pixels
    table = pd.read_parquet(out / "he_outlines.parquet")
    assert list(table.columns) == ["id", "x", "y", "area", "mean_intensity", "geometry"]
    import json

    features = json.loads((out / "he_outlines.geojson").read_text())["features"]
    assert len(features) == len(rows) and features[0]["geometry"]["type"] == "Polygon"


def test_segment_slide_options_level_formats_and_tissue_all(he_slide, tmp_path, capsys):
    out = tmp_path / "out"
    # the DSB2018 unet runs at the level's own pixels (no mpp of its own): two 128 px tiles at level 1
    assert main(["segment", str(he_slide), "-o", str(out), "--threads", "1", "--tile", "128", "--level", "1",
                 "--formats", "sqlite,csv", "--tissue-mask", "all", "--no-resume", "--model", "unet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["he_outlines.csv", "he_outlines.sqlite", "segment_run.json"]
    assert "level 1, 0.5 um/px (metadata), 2 of 2 tiles with tissue" in capsys.readouterr().out
    rows = pd.read_csv(out / "he_outlines.csv")
    assert rows.x.max() < 512 and rows.y.max() < 256  # level-1 nuclei, written in level-0 pixels
    assert rows.x.max() > 128  # beyond level 1's width: the coordinates were scaled


def test_detect_and_segment_of_one_slide_share_a_folder(tiny_weights, make_segmenter_weights, tissue_slide,
                                                        tmp_path):
    out = tmp_path / "out"
    common = [str(tissue_slide), "-o", str(out), "--threads", "1", "--tile", "64", "--formats", "csv,sqlite"]
    assert main(["detect", *common, "--model", str(tiny_weights)]) == 0
    detected = (out / "disc.csv").read_bytes()
    assert main(["segment", *common, "--model", str(make_segmenter_weights(model="unet", mpp=0.5))]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "detect_run.json", "disc.csv", "disc.sqlite", "disc_outlines.csv", "disc_outlines.sqlite",
        "disc_outlines_tissue.png", "disc_tissue.png", "segment_run.json"]
    assert (out / "disc.csv").read_bytes() == detected  # segment left detect's table alone
    assert pd.read_csv(out / "disc_outlines.csv").columns.tolist() == ["id", "x", "y", "area", "mean_intensity"]


def test_a_second_run_on_a_live_slide_is_refused_in_one_line(tiny_weights, tissue_slide, tmp_path, capsys):
    from nucleikit.infer.wsi import _TileStore, resume_path

    out = tmp_path / "out"
    live = _TileStore(resume_path(out, "disc"), "a live run's settings", resume=True)  # as a run in another process
    live.add(0, 0.5, 1, b"live tile")
    try:
        code = main(["detect", str(tissue_slide), "-o", str(out), "--model", str(tiny_weights), "--threads", "1",
                     "--tile", "64", "--no-resume"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        assert f"nucleikit: error: {tissue_slide}: another nucleikit run is working on it" in err
        assert live.finished()[0] == {0}  # its store was left alone
    finally:
        live.close()


def test_an_interrupted_detect_store_survives_segment_of_the_same_slide(tiny_weights, make_segmenter_weights,
                                                                        tissue_slide, tmp_path):
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.infer.wsi import detect_slide, resume_path

    out = tmp_path / "out"
    detector = Detector.from_weights(tiny_weights, config=InferenceConfig(threads=1, tile=64))

    class Stop(Exception):
        pass

    def stop_after_2(p):
        if p.done == 2:
            raise Stop

    with pytest.raises(Stop):
        detect_slide(tissue_slide, detector, out, tile=64, progress=False, on_tile=stop_after_2, formats="csv")
    assert resume_path(out, "disc").exists()
    assert main(["segment", str(tissue_slide), "-o", str(out), "--threads", "1", "--tile", "64", "--formats", "csv",
                 "--model", str(make_segmenter_weights(model="unet", mpp=0.5))]) == 0
    assert resume_path(out, "disc").exists()  # segment kept to its own store
    resumed = detect_slide(tissue_slide, detector, out, tile=64, progress=False, formats="csv")
    assert resumed.tiles_resumed == 2
