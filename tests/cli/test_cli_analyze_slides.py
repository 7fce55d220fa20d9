"""``nucleikit analyze`` on whole slides: detect as ``detect`` does, type each nucleus from the slide (issue 16)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucleikit.cli.main import main

PINK = np.array([217, 115, 166], np.uint8)
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
def slide_pixels() -> np.ndarray:
    """256 x 384 px of glass with a pink disc and dark nuclei-like spots on it."""
    yy, xx = np.mgrid[:256, :384]
    disc = (yy - 128) ** 2 + (xx - 110) ** 2 <= 90**2
    noise = np.random.default_rng(0).integers(-6, 7, (256, 384, 3))
    pixels = np.where(disc[:, :, None], PINK, GLASS).astype(np.int64) + noise
    for x, y in ((80, 100), (120, 150), (60, 160), (150, 90)):
        pixels[(yy - y) ** 2 + (xx - x) ** 2 <= 16] = (80, 40, 120)
    return np.clip(pixels, 0, 255).astype(np.uint8)


@pytest.fixture
def slide(tmp_path, slide_pixels) -> Path:
    return _pyramid(tmp_path / "disc.tif", slide_pixels)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_analyze_types_the_nuclei_detect_finds_on_a_slide(tiny_weights, tiny_classifier_weights, slide, tmp_path,
                                                          capsys):
    out = tmp_path / "out"
    common = ["-o", str(out), "--threads", "1", "--tile", "64", "--formats", "csv,sqlite,geojson", "-q"]
    assert main(["analyze", str(slide), "--detector", str(tiny_weights), "--classifier", str(tiny_classifier_weights),
                 *common]) == 0
    assert "analyze: 1 of 1 inputs processed" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["analyze_run.json", "disc_typed.csv", "disc_typed.geojson", "disc_typed.sqlite",
                     "disc_typed_tissue.png"]  # no working folder left, no detect table
    typed = _rows(out / "disc_typed.csv")
    assert typed and list(typed[0]) == ["x", "y", "score", "class", "class_prob"]
    classes = {"epithelial", "fibroblast", "inflammatory", "others"}
    assert {r["class"] for r in typed} <= classes and all(0 < float(r["class_prob"]) <= 1 for r in typed)
    # the nuclei are detect's, to the digit
    assert main(["detect", str(slide), "--model", str(tiny_weights), *common]) == 0
    found = _rows(out / "disc.csv")
    assert [(r["x"], r["y"], r["score"]) for r in typed] == [(r["x"], r["y"], r["score"]) for r in found]
    # the SQLite table holds the class as text
    from nucleikit.export.sqlite import query_region
    from nucleikit.windows import Window

    xy, columns = query_region(out / "disc_typed.sqlite", Window(0, 0, 256, 384))
    assert len(xy) == len(typed) and columns["class"].tolist() == [r["class"] for r in typed]


def test_slide_patches_equal_the_image_patches(tiny_classifier_weights, slide, slide_pixels, monkeypatch):
    """At the classifier's own resolution the slide's blocks give exactly the whole image's patches."""
    import nucleikit.infer.pipelines as pipelines
    from nucleikit.infer.classify import Classifier, PatchInferenceConfig

    clf = Classifier.from_weights(tiny_classifier_weights, config=PatchInferenceConfig(threads=1))
    assert clf.mpp == 0.5
    xy = np.array([[0.0, 0.0], [63.4, 70.0], [64.6, 10.0], [383.0, 255.0], [200.0, 128.0], [127.9, 191.5]])
    monkeypatch.setattr(pipelines, "TYPING_BLOCK", 64)  # several blocks, points on their edges
    labels, probs = pipelines._type_slide_nuclei(slide, clf, xy, mpp=None, level=0)
    want_labels, want_probs = clf.classify(slide_pixels, xy, mpp=0.5)
    assert labels.tolist() == want_labels.tolist()
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)


def test_slide_typing_at_another_resolution_agrees_with_the_image(tiny_classifier_weights, tmp_path, slide_pixels):
    """A 0.25 um/px slide is typed on level 1 (0.5 um/px), as the image is after resampling."""
    import nucleikit.infer.pipelines as pipelines
    from nucleikit.infer.classify import Classifier, PatchInferenceConfig

    fine = np.repeat(np.repeat(slide_pixels, 2, axis=0), 2, axis=1)
    slide = _pyramid(tmp_path / "fine.tif", fine, mpp=0.25)
    clf = Classifier.from_weights(tiny_classifier_weights, config=PatchInferenceConfig(threads=1))
    xy = np.array([[160.0, 200.0], [240.0, 300.0], [120.0, 320.0], [300.0, 180.0]])
    labels, probs = pipelines._type_slide_nuclei(slide, clf, xy, mpp=None, level=0)
    want_labels, want_probs = clf.classify(slide_pixels, (xy + 0.5) / 2 - 0.5, mpp=0.5)  # level 1 is the image
    assert labels.tolist() == want_labels.tolist()
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)


def test_analyze_batch_takes_images_and_slides_and_goes_on(tiny_weights, tiny_classifier_weights, slide, tmp_path,
                                                          capsys):
    image = tmp_path / "tile.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(image)
    glass = _pyramid(tmp_path / "glass.tif", np.broadcast_to(GLASS, (256, 256, 3)).copy())
    out = tmp_path / "out"
    code = main(["analyze", str(slide), str(image), str(glass), "-o", str(out), "--detector", str(tiny_weights),
                 "--classifier", str(tiny_classifier_weights), "--threads", "1", "--tile", "64", "--mpp", "0.5",
                 "--formats", "csv", "-q"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert "glass.tif: no tissue found" in captured.err
    assert (out / "disc_typed.csv").exists() and (out / "tile_typed.csv").exists()
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_analyze_slide_options_are_checked_when_parsing(slide, tmp_path, capsys):
    for bad in (["--formats", "xls"], ["--level", "-1"], ["--tile", "1"]):
        with pytest.raises(SystemExit) as exc:
            main(["analyze", str(slide), "-o", str(tmp_path / "out"), *bad])
        assert exc.value.code == 2
    assert not (tmp_path / "out").exists()


def test_a_blank_slide_gives_no_nuclei_with_the_bundled_models(tmp_path, capsys):
    """The detector's absolute floor reaches slides through detect and analyze alike: glass with
    every tile processed (--tissue-mask all) holds no nucleus."""
    noise = np.random.default_rng(1).normal(0, 4, (256, 256, 3))
    glass = _pyramid(tmp_path / "glass.tif", np.clip(GLASS + noise, 0, 255).astype(np.uint8))
    out = tmp_path / "out"
    for command in ("detect", "analyze"):
        assert main([command, str(glass), "-o", str(out), "--tissue-mask", "all", "--threads", "1",
                     "--formats", "csv", "-q"]) == 0
    assert (out / "glass.csv").read_text().splitlines() == ["x,y,score"]
    assert (out / "glass_typed.csv").read_text().splitlines() == ["x,y,score,class,class_prob"]
