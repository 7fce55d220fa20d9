"""``nucleikit segment``: outputs, atomicity, bad input, and missing bundled weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from shapely.geometry import shape

from nucleikit.cli.main import main
from nucleikit.io.images import read_image
from nucleikit.models.weights import bundled_weights_dir

OUTPUTS = ("discs_labels.tif", "discs_outlines.geojson", "discs_outlines.csv", "discs_outlines_overlay.png")


def _run(weights, inputs, out, *extra):
    return main(["segment", *map(str, inputs), "-o", str(out), "--model", str(weights), "--threads", "1", *extra])


@pytest.fixture
def seg_weights(make_segmenter_weights):
    return make_segmenter_weights(model="unet")


def test_writes_labels_geojson_csv_overlay(seg_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    out = tmp_path / "out"
    # a threshold of 0 keeps everything the untrained net outputs: at least one nucleus to check
    assert _run(seg_weights, [image], out, "--threshold", "0") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUTS, "segment_run.json"))
    labels = tifffile.imread(out / "discs_labels.tif")
    assert labels.dtype == np.uint16 and labels.shape == (80, 96)
    ids = np.unique(labels[labels > 0])
    assert len(ids) >= 1
    table = pd.read_csv(out / "discs_outlines.csv")
    assert list(table.columns) == ["id", "x", "y", "area", "mean_intensity"]
    assert table["id"].tolist() == ids.tolist()
    assert table["area"].tolist() == [int(np.count_nonzero(labels == i)) for i in ids]
    assert table["mean_intensity"].between(0, 1).all()
    gj = json.loads((out / "discs_outlines.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == len(ids)
    for feature, row in zip(gj["features"], table.itertuples()):
        props = feature["properties"]
        assert props["objectType"] == "detection"
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) >= 4
        m = props["measurements"]
        assert m["Label"] == row.id and m["Area px^2"] == row.area
        assert m["Centroid X px"] == pytest.approx(row.x + 0.5, abs=0.01)  # QuPath's pixel corners
        xs = np.array(ring)[:, 0]
        assert xs.min() >= 0 and xs.max() <= 96  # QuPath coordinates of a 96 px wide image
        assert shape(feature["geometry"]).is_valid
    overlay = np.asarray(Image.open(out / "discs_outlines_overlay.png"))
    assert overlay.shape == (80, 96, 3)
    assert "1 of 1 inputs processed" in capsys.readouterr().out


def test_no_nuclei_gives_empty_but_valid_outputs(seg_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    out = tmp_path / "out"
    assert _run(seg_weights, [image], out, "--threshold", "1.0") == 0  # nothing is above 1
    assert not tifffile.imread(out / "discs_labels.tif").any()
    assert (out / "discs_outlines.csv").read_text() == "id,x,y,area,mean_intensity\n"
    doc = json.loads((out / "discs_outlines.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and doc["features"] == []
    assert set(doc) == {"type", "features", "nucleikit"}  # the foreign member QuPath ignores
    assert "0 nuclei" in capsys.readouterr().out


def test_polygons_rasterise_back_to_the_labels(seg_weights, tmp_path):
    """Each GeoJSON outline, read back by nucleikit's QuPath reader, covers its instance."""
    from nucleikit.io.labels import read_geojson_polygons, polygons_to_labels
    from nucleikit.metrics import dice

    h, w = 60, 70
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 220, np.uint8)
    img[(xx - 20) ** 2 + (yy - 25) ** 2 <= 49] = 30
    Image.fromarray(img).save(tmp_path / "one.png")
    out = tmp_path / "o"
    assert _run(seg_weights, [tmp_path / "one.png"], out, "--threshold", "0") == 0
    labels = tifffile.imread(out / "one_labels.tif").astype(np.int32)
    back = polygons_to_labels(read_geojson_polygons(out / "one_outlines.geojson", allow_empty=True), (h, w))
    assert dice(labels, back) > 0.95


def test_batch_goes_on_past_bad_files(seg_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00 truncated")
    out = tmp_path / "out"
    code = _run(seg_weights, [empty, image, junk, tmp_path / "missing.png"], out)
    err = capsys.readouterr().err
    assert code == 2
    assert "3 failed" in err and "Traceback" not in err
    for name in ("empty.png", "junk.tif", "missing.png"):
        assert sum(name in line and line.startswith("nucleikit: error:") for line in err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUTS, "segment_run.json"))  # nothing half-written


def test_too_many_instances_fail_cleanly(seg_weights, disc_png, tmp_path, monkeypatch, capsys):
    import nucleikit.export as export

    image, _ = disc_png
    monkeypatch.setattr(export, "UINT16_MAX_LABEL", 0)  # any nucleus is one too many
    out = tmp_path / "out"
    assert _run(seg_weights, [image], out, "--threshold", "0") == 2
    err = capsys.readouterr().err
    assert "more than a uint16 label TIFF holds" in err and "discs.png" in err
    assert not out.exists() or not any(out.iterdir())


def test_default_model_is_bundled_and_runs(disc_png, tmp_path):
    from nucleikit.cli.segment import DEFAULT_SEGMENTER
    from nucleikit.infer.segment import AUTO_SEGMENTERS

    assert DEFAULT_SEGMENTER == "auto"
    for name in AUTO_SEGMENTERS.values():
        assert (bundled_weights_dir() / f"{name}.safetensors").is_file()
    image, _ = disc_png
    out = tmp_path / "o"
    assert main(["segment", str(image), "-o", str(out), "--threads", "1"]) == 0
    labels = tifffile.imread(out / f"{image.stem}_labels.tif")
    assert labels.dtype == np.uint16 and labels.shape == read_image(image).pixels.shape[:2]


def test_missing_model_is_one_line(disc_png, tmp_path, capsys):
    image, _ = disc_png
    assert main(["segment", str(image), "-o", str(tmp_path / "o"), "--model", "no_such_segmenter"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nucleikit: error: no_such_segmenter")


def test_detector_weights_are_refused(tiny_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    assert main(["segment", str(image), "-o", str(tmp_path / "o"), "--model", str(tiny_weights)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a segmentation model" in err[0]


def test_detector_seeds_from_given_weights(seg_weights, make_segmenter_weights, tiny_weights, disc_png, tmp_path):
    """--seeds detector uses the detector the weights name (here a tiny one)."""
    image, _ = disc_png
    weights = make_segmenter_weights(model="unet", seed_detector=str(tiny_weights))
    out = tmp_path / "o"
    assert _run(weights, [image], out, "--seeds", "detector", "--no-overlay") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUTS[:3], "segment_run.json"))


@pytest.mark.data
def test_segment_and_evaluate_real_dsb2018_test_images(seg_weights, dsb2018_dir, tmp_path, capsys):
    """Two stage1_test images end to end; their truth from stage1_solution.csv (RLE, Height/Width)."""
    from nucleikit.io.datasets.dsb2018 import DSB2018

    samples = list(DSB2018(dsb2018_dir, subset="test"))[:2]
    out = tmp_path / "out"
    assert _run(seg_weights, [s.image_path for s in samples], out, "--no-overlay") == 0
    for s in samples:
        labels = tifffile.imread(out / f"{s.id}_labels.tif")
        assert labels.shape == s.load_labels().shape and labels.dtype == np.uint16
    capsys.readouterr()
    code = main(["evaluate", "segmentation", "--pred", str(out), "--truth", str(dsb2018_dir / "stage1_solution.csv"),
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2
    for key in ("dice", "pooled_dice", "iou", "dsb_score", "ap50", "aji", "pq"):
        assert 0.0 <= result[key] <= 1.0


def test_models_headline_per_task():
    from nucleikit.cli.models import headline

    assert headline({"f1_r6": 0.8275}) == "F1 0.828 (r=6 px)"
    seg = {"shipped_seeds": "detector", "distance": {"dice": 0.1, "dsb_score": 0.1},
           "detector": {"dice": 0.9, "dsb_score": 0.55}}
    assert headline(seg) == "Dice 0.900, DSB 0.550"
    assert headline({"weighted_f1": 0.7512}) == "weighted F1 0.751"
    assert headline({"mean": {"aji": 0.61, "pq": 0.5549, "dice": 0.8}}) == "AJI 0.610, PQ 0.555, Dice 0.800"
    assert headline(None) == "-"


def test_auto_outlines_the_he_sample_with_the_he_model_and_fluorescence_with_the_dsb_model(
        dsb2018_dir, tmp_path, capsys):
    from importlib.resources import files

    sample = files("nucleikit") / "data" / "sample_he.png"
    fluo = next(p for p in sorted((dsb2018_dir / "stage1_test").glob("*/images/*.png"))
                if np.ptp(read_image(p).pixels, axis=2).max() == 0 and np.median(read_image(p).pixels) < 0.3)
    out = tmp_path / "o"
    assert main(["segment", str(sample), str(fluo), "-o", str(out), "--threads", "1", "--no-overlay"]) == 0
    lines = capsys.readouterr().out.splitlines()
    he_line = next(line for line in lines if "sample_he" in line)
    fluo_line = next(line for line in lines if fluo.stem[:12] in line)
    assert "unet_he" in he_line and "0.499 um/px" in he_line
    assert "unet_he" not in fluo_line and "unet_dsb" in fluo_line
    # the H&E model finds the sample's nuclei: a few hundred, of plausible size at 0.5 um/px
    table = pd.read_csv(out / "sample_he_outlines.csv")
    assert 150 <= len(table) <= 700
    assert 30 <= table["area"].median() <= 300
    assert len(pd.read_csv(out / f"{fluo.stem}_outlines.csv")) > 5


def test_tta_reaches_the_segmenter_and_bad_view_counts_are_refused(make_segmenter_weights, disc_png, tmp_path,
                                                                   capsys, monkeypatch):
    import nucleikit.infer.segment as segment_module
    from nucleikit.infer.predict import InferenceConfig
    from nucleikit.infer.segment import Segmenter

    views = []
    real = segment_module.average_over_transforms
    monkeypatch.setattr(segment_module, "average_over_transforms",
                        lambda predict, image, n: views.append(n) or real(predict, image, n))
    weights = make_segmenter_weights(model="unet_instance")
    image, _ = disc_png
    pixels = read_image(image).pixels
    for n in (1, 4):
        assert _run(weights, [image], tmp_path / str(n), "--tta", str(n), "--no-overlay") == 0
        # the CLI's labels are those of a Segmenter with the same number of views
        expected = Segmenter.from_weights(weights, InferenceConfig(threads=1), tta=n).segment(pixels).labels
        assert np.array_equal(tifffile.imread(tmp_path / str(n) / "discs_labels.tif"), expected)
    assert views == [4, 4]  # one image at --tta 4 and its Segmenter; --tta 1 runs the network once
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        _run(weights, [image], tmp_path / "bad", "--tta", "3")
    assert exc.value.code == 2 and "--tta" in capsys.readouterr().err


def test_padding_align_reaches_the_segmenter(seg_weights, disc_png, tmp_path, monkeypatch):
    """--padding align: the one-window image runs padded to the alignment only (predict_aligned)."""
    import nucleikit.infer.segment as segment_module

    calls = []
    real = segment_module.predict_aligned
    monkeypatch.setattr(segment_module, "predict_aligned", lambda *a, **k: calls.append(1) or real(*a, **k))
    image, _ = disc_png
    assert _run(seg_weights, [image], tmp_path / "halo", "--threshold", "0") == 0
    assert calls == []  # the default is unchanged: the halo pass
    assert _run(seg_weights, [image], tmp_path / "align", "--threshold", "0", "--padding", "align") == 0
    assert calls == [1]
    record = json.loads((tmp_path / "align" / "segment_run.json").read_text())
    assert record["inputs"][str(image)]["precision"]["used"] == "fp32"
