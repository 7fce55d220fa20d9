"""The distillation study: its options are refused in one line, and a tiny synthetic run end to end."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from nucleikit.errors import ConfigError
from nucleikit.experiments.config import load_config, parse_config
from nucleikit.experiments.distill import DistillCell, DistillRunner, SlideSource
from nucleikit.experiments.runner import run_experiment
from nucleikit.models import build_model
from nucleikit.models.weights import read_weights_meta, save_weights
from nucleikit.train.config import TrainConfig

from .conftest import write_disc_image


@pytest.fixture
def teacher(tmp_path):
    """A tiny MicroNet teacher (width 4, random weights) at the collection's 0.5 um/px."""
    torch.manual_seed(0)
    path = tmp_path / "teacher.safetensors"
    save_weights(path, build_model("micronet", width=4), {
        "name": "tiny_teacher", "model": "micronet", "model_kwargs": {"width": 4}, "mpp": 0.5,
        "mean": [0.6, 0.5, 0.6], "std": [0.25, 0.3, 0.25], "halo": 40,
        "postprocess": {"threshold_rel": 0.3, "min_distance": 3}})
    return str(path)


@pytest.fixture
def unlabelled(tmp_path):
    """A folder of three disc images without point files."""
    folder = tmp_path / "unlabelled"
    for i in range(3):
        write_disc_image(folder, f"u{i}", 900 + i, (0.4, 0.2, 0.4), 3.0)
        (folder / f"u{i}.csv").unlink()
    return folder


def _doc(study, **top):
    doc = {"experiment": "distill", "seed": 0, "mpp": 0.5, "steps": 4,
           "train": {"model": "micronet", "model_kwargs": {"width": 2}, "crop": 32, "batch_size": 2, "val_every": 2},
           "datasets": {n: {"kind": "folder", "train": n, "mpp": 0.5} for n in "abc"},
           "study": {"train": ["a", "b"], "validation": ["a"], "tests": ["a", "c"], **study}}
    doc.update(top)
    return doc


@pytest.mark.parametrize("study, message", [
    ({"teacher": "no_such_weights"}, "teacher 'no_such_weights'"),
    ({"point_weight": 2.0}, "point_weight must be in [0, 1]"),
    ({"point_weight": "half"}, "point_weight must be a number"),
    ({"gammas": {"c": 2.0}}, "gammas for data sets not in train"),
    ({"slides": ["slides/no_such.svs"]}, "slide 'slides/no_such.svs' not found"),
    ({"slide_tiles": 0}, "slide_tiles must be at least 1"),
    ({"slide_min_tissue": 0.0}, "slide_min_tissue must be in (0, 1]"),
    ({"slide_tissue": "kmeans"}, "slide_tissue must be one of otsu, fixed"),
    ({"slide_mpp": {"x.svs": 0.5}}, "slide_mpp for slides not in slides"),
    ({"folders": ["/no/such/folder"]}, "folder '/no/such/folder' not found"),
    ({"unlabelled_gamma": 0}, "unlabelled_gamma must be a positive number"),
    ({"tile_size": 256}, "unknown option(s) tile_size"),
    ({"validation": []}, "distill needs train, validation and tests"),
])
def test_wrong_options_are_refused_in_one_line(teacher, study, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(_doc({"teacher": teacher, **study}))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_teacher_that_is_no_detector_is_refused(make_segmenter_weights):
    with pytest.raises(ConfigError, match="is a segmentation model, not a detector"):
        parse_config(_doc({"teacher": str(make_segmenter_weights())}))


def test_the_shipped_configuration_parses(slides_dir):
    config = load_config("configs/experiments/distill_he.json")
    p = config.params
    assert p.teacher == "micronet_he" and config.train.model_kwargs == {"width": 8}
    pooled = load_config("configs/experiments/pooled_he.json")
    assert (p.train, p.validation, p.tests, p.gammas) == (pooled.params.train, pooled.params.validation,
                                                          pooled.params.tests, pooled.params.gammas)
    assert config.train.bf16 is False and [s.slide for s in p.sources()] == ["slides/CMU-1-Small-Region.svs"]


def test_a_teacher_at_another_resolution_is_refused_before_training(teacher, tmp_path, datasets):
    doc = _doc({"teacher": teacher}, mpp=0.25)
    doc["datasets"] = datasets
    with pytest.raises(ConfigError, match="the teacher works at 0.5 um/px, the study at 0.25"):
        run_experiment(parse_config(doc), tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out" / "runs").exists()


def test_distill_study_end_to_end(make_config, teacher, unlabelled, tmp_path):
    study = {"teacher": teacher, "train": ["a", "b"], "validation": ["a", "b"], "tests": ["a", "c"],
             "gammas": {"b": 2.0}, "folders": [str(unlabelled)], "folder_mpp": 0.5, "unlabelled_gamma": 0.5,
             "label": "student"}
    path = make_config("distill", study, steps=4, train={"model_kwargs": {"width": 2}})
    lines = []
    report = run_experiment(load_config(path), tmp_path / "out", log=lines.append)
    out = tmp_path / "out"

    def table(name):
        with open(out / f"{name}.csv", newline="") as f:
            return list(csv.DictReader(f))

    tests = table("test")
    assert [(r["model"], r["test"]) for r in tests] == [("student (this study)", "a"), ("student (this study)", "c"),
                                                        (teacher, "a"), (teacher, "c")]
    gaps = table("teacher_gap")
    assert [g["test"] for g in gaps] == ["a", "c"]
    for g, s, t in zip(gaps, tests[:2], tests[2:]):
        assert float(g["difference"]) == pytest.approx(float(s["f1"]) - float(t["f1"]))
    cost = table("cost")
    assert [int(float(r["width"])) for r in cost] == [4, 2] and float(cost[1]["teacher_over_model"]) > 3
    pool = {r["source"]: r for r in table("pool")}
    assert pool["a"]["images"] == "2" and pool[str(unlabelled)]["images"] == "3"
    assert pool[str(unlabelled)]["kind"] == "unlabelled" and pool["all"]["images"] == "7"
    text = report.read_text()
    assert "Student minus teacher test F1" in text and "fewer (goal: at least 4x)" in text
    assert "unlabelled: 3 images from" in "\n".join(lines)

    # one student, trained on the training images and the unlabelled folder only
    (folder,) = (out / "runs").glob("student-*")
    res = json.loads((out / "results.json").read_text())
    (cell,) = res["cells"]
    assert cell["cell"]["distill"]["teacher"] == teacher and len(cell["cell"]["distill"]["teacher_sha256"]) == 64
    assert [u["kind"] for u in cell["cell"]["distill"]["unlabelled"]] == ["FolderSource"]
    (maps,) = (out / "runs" / "teacher_maps").iterdir()
    index = [json.loads(line) for line in (maps / "index.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in index) == ["at0", "at1", "bt0", "bt1", "u0", "u1", "u2"]  # no validation image
    meta = read_weights_meta(folder / "best.safetensors")
    assert meta["model_kwargs"]["width"] == 2 and meta["distillation"]["teacher"] == "tiny_teacher"
    assert meta["distillation"]["unlabelled_images"] == 3 and meta["validation"]["images"] == ["av0", "bv0"]

    # running again skips the finished student; with its result gone it resumes from the checkpoint
    # (step 4 of 4: nothing left to train) and reads the teacher maps instead of computing them
    run_experiment(load_config(path), out, log=lambda _: None)
    (folder / "result.json").unlink()
    lines.clear()
    run_experiment(load_config(path), out, log=lines.append)
    assert any(line.startswith("train student-") for line in lines)
    assert len((maps / "index.jsonl").read_text().splitlines()) == len(index)
    assert [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()] == [2, 4]


def test_a_folder_holding_a_validation_image_is_refused(make_config, teacher, unlabelled, datasets, tmp_path):
    shutil.copy(tmp_path / "data" / "a" / "validation" / "av0.png", unlabelled / "copy.png")
    study = {"teacher": teacher, "train": ["a"], "validation": ["a"], "tests": ["a"], "folders": [str(unlabelled)],
             "folder_mpp": 0.5}
    path = make_config("distill", study, steps=2, train={"model_kwargs": {"width": 2}})
    with pytest.raises(ConfigError, match="holds copy, a validation image of a: never train on it"):
        run_experiment(load_config(path), tmp_path / "out", log=lambda _: None)


def test_slide_tiles_join_the_pool_once(slides_dir, tmp_path):
    src = SlideSource(str(slides_dir / "CMU-1-Small-Region.svs"), tiles=3, tile=64, min_tissue=0.5, tissue="otsu",
                      seed=0)
    runner = DistillRunner(collection=type("C", (), {"mpp": 0.5, "datasets": {}})(), runs_dir=tmp_path,
                           log=lambda _: None)
    (tiles,) = runner.unlabelled([src])
    assert len(tiles) == 3 and all(t.pixels.shape == (64, 64, 3) for t in tiles)
    assert runner.unlabelled([src])[0] is tiles  # read once
    cell = DistillCell("s", (), "a", TrainConfig(steps=2), teacher="t", teacher_sha256="0" * 64, unlabelled=(src,))
    assert cell.spec()["distill"]["unlabelled"][0]["tiles"] == 3
    assert DistillCell("s", (), "a", TrainConfig(steps=2), teacher="t", teacher_sha256="1" * 64, unlabelled=(src,)).key() \
        != cell.key()
