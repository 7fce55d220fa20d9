"""`nucleikit train segmentation --images DIR --val-images DIR`: your own outlines, then `nucleikit segment`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucleikit.cli.main import main

SIZE = 64


def _discs(centres, radius: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A 64x64 RGB uint8 image of dark discs on a light background, and its uint16 instance labels."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    image = np.full((SIZE, SIZE, 3), 225, np.uint8)
    labels = np.zeros((SIZE, SIZE), np.uint16)
    for k, (x, y) in enumerate(centres):
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        image[inside] = (80, 40, 120)
        labels[inside] = k + 1
    return image, labels


def _outlines(centres, radius: int = 7) -> dict:
    """QuPath-style GeoJSON of octagons around the discs (pixel-corner coordinates: centre + 0.5)."""
    angles = np.linspace(0, 2 * np.pi, 9)[:-1]
    features = []
    for x, y in centres:
        ring = [[x + 0.5 + radius * np.cos(a), y + 0.5 + radius * np.sin(a)] for a in angles]
        features.append({"type": "Feature", "properties": {"objectType": "annotation"},
                         "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}})
    return {"type": "FeatureCollection", "features": features}


def _with_labels(folder: Path, stem: str, centres) -> Path:
    image, labels = _discs(centres)
    Image.fromarray(image).save(folder / f"{stem}.png")
    tifffile.imwrite(folder / f"{stem}_labels.tif", labels)
    return folder / f"{stem}.png"


def _with_outlines(folder: Path, stem: str, centres) -> Path:
    Image.fromarray(_discs(centres)[0]).save(folder / f"{stem}.png")
    (folder / f"{stem}.geojson").write_text(json.dumps(_outlines(centres)))
    return folder / f"{stem}.png"


@pytest.fixture
def folders(tmp_path):
    """train/ (one label TIFF, one GeoJSON) and val/ (one GeoJSON), 64x64 images."""
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    _with_labels(train, "a", [(18, 20), (44, 40), (20, 48)])
    _with_outlines(train, "b", [(40, 16), (16, 30), (46, 50)])
    _with_outlines(val, "c", [(22, 22), (42, 44)])
    return train, val


def _config(tmp_path: Path, **fields) -> Path:
    cfg = {"model": "unet_instance", "model_kwargs": {"widths": [4, 8]}, "crop": 32, "batch_size": 2, "steps": 3,
           "val_every": 3, "threads": 1, "mpp": None, **fields}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def _train(tmp_path: Path, train: Path, val: Path, *extra: str, **config) -> list[str]:
    return ["train", "segmentation", "--images", str(train), "--val-images", str(val), "--config",
            str(_config(tmp_path, **config)), "-o", str(tmp_path / "run"), "--no-progress", *extra]


def test_train_on_own_labels_and_outlines_then_segment(folders, tmp_path, capsys):
    train, val = folders
    run = tmp_path / "run"
    assert main(_train(tmp_path, train, val)) == 0, capsys.readouterr().err
    assert "best validation score" in capsys.readouterr().out
    weights = run / "best.safetensors"
    assert weights.exists() and (run / "checkpoint.pt").exists()

    from nucleikit.models.weights import load_weights

    _, meta = load_weights(weights)
    assert meta["model"] == "unet_instance" and meta["target"] == "instance"
    assert meta["mpp"] is None  # no resolution anywhere: the model runs at input resolution
    assert meta["dataset"] == str(train) and meta["split"] == "user folders"
    assert {"threshold", "markers", "marker_threshold"} <= set(meta["postprocess"])

    out = tmp_path / "seg"
    code = main(["segment", str(train / "a.png"), "--model", str(weights), "-o", str(out), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    labels = tifffile.imread(out / "a_labels.tif")
    assert labels.shape == (SIZE, SIZE)
    assert (out / "a_outlines.geojson").exists() and (out / "a_outlines.csv").exists()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _size_mismatch(train: Path) -> str:
    tifffile.imwrite(train / "a_labels.tif", np.zeros((SIZE, SIZE + 1), np.uint16))
    return r"a_labels\.tif: label image is 65 x 64 pixels but its image a\.png is 64 x 64"


def _empty_labels(train: Path) -> str:
    tifffile.imwrite(train / "a_labels.tif", np.zeros((SIZE, SIZE), np.uint16))
    return r"a_labels\.tif: no nucleus \(every pixel is 0\); .*--allow-empty"


def _missing_annotation(train: Path) -> str:
    (train / "b.geojson").unlink()
    return r"b\.png: no annotation: expected b_labels\.png\|tif\|tiff or b\.geojson in"


def _outline_outside(train: Path) -> str:
    data = _outlines([(30, 30)])
    ring = [[x + 5000, y + 7000] for x, y in data["features"][0]["geometry"]["coordinates"][0]]
    data["features"].insert(0, {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
                                                                                "coordinates": [ring]}})
    (train / "b.geojson").write_text(json.dumps(data))
    return r"b\.geojson: feature 1 lies entirely outside the 64 x 64 image b\.png"


def _rgb_labels(train: Path) -> str:
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(train / "b_labels.png")
    (train / "b.geojson").unlink()
    return r"b_labels\.png: a label image needs one channel of integers, not Pillow mode 'RGB'"


def _float_labels(train: Path) -> str:
    tifffile.imwrite(train / "a_labels.tif", np.ones((SIZE, SIZE), np.float32))
    return r"a_labels\.tif: label image has float32 samples"


def _duplicate_stem(train: Path) -> str:
    tifffile.imwrite(train / "a.tif", _discs([(10, 10)])[0], photometric="rgb")
    return r"a\.tif: same name as a\.png: one image per stem"


@pytest.mark.parametrize("breaks", [_size_mismatch, _empty_labels, _missing_annotation, _outline_outside,
                                    _rgb_labels, _float_labels, _duplicate_stem])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(folders, tmp_path, capsys, breaks):
    import re

    train, val = folders
    expected = breaks(train)
    assert main(_train(tmp_path, train, val)) == 2
    line = _one_line_error(capsys)
    assert line.startswith("nucleikit: error: ") and re.search(expected, line), line
    assert not (tmp_path / "run").exists()


def test_allow_empty_accepts_an_image_without_nuclei(folders, tmp_path, capsys):
    train, val = folders
    _with_labels(val, "d", [])
    assert main(_train(tmp_path, train, val)) == 2
    assert "d_labels.tif: no nucleus" in _one_line_error(capsys)
    assert main(_train(tmp_path, train, val, "--allow-empty", "--steps", "1", "--val-every", "1")) == 0


def test_label_dirs_hold_the_annotations(tmp_path, capsys):
    train, val, labels = tmp_path / "train", tmp_path / "val", tmp_path / "labels"
    for folder in (train, val, labels):
        folder.mkdir()
    for folder, stem, centres in ((train, "a", [(20, 20), (44, 44)]), (val, "c", [(22, 40)])):
        image, instance = _discs(centres)
        Image.fromarray(image).save(folder / f"{stem}.png")
        tifffile.imwrite(labels / f"{stem}.tif", instance)  # one folder for both, named <stem>.tif
    assert main(_train(tmp_path, train, val, "--label-dir", str(labels), "--val-label-dir", str(labels),
                       "--steps", "1", "--val-every", "1")) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "best.safetensors").exists()


def test_unknown_resolution_is_refused_when_the_model_has_one(folders, tmp_path, capsys):
    train, val = folders
    assert main(_train(tmp_path, train, val, mpp=0.5)) == 2
    line = _one_line_error(capsys)
    assert "a.png: resolution unknown, but the model trains at 0.5 um/px" in line and "--mpp" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--dataset", "dsb2018", "--label-dir", "x"], "--label-dir: only with your own images"),
    (["--dataset", "monuseg", "--mpp", "0.25"], "--mpp: only with your own images"),
    (["--images", "x"], "--images and --val-images go together"),
    (["--images", "x", "--val-images", "y", "--dataset", "dsb2018"], "give --dataset or --images, not both"),
    (["--images", "x", "--val-images", "y", "--points", "p"], "--points/--val-points are point files"),
])
def test_option_mistakes_are_one_line_exit_2(tmp_path, capsys, argv, message):
    assert main(["train", "segmentation", "-o", str(tmp_path / "run"), *argv]) == 2
    assert message in _one_line_error(capsys)


def test_help_states_the_file_conventions_and_the_overlap_rule(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("<stem>_labels.png|tif|tiff", "<stem>.geojson", "later feature in the file wins", "--label-dir",
                   "--allow-empty", "clipped"):
        assert phrase in text
