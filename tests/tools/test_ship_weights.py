"""Helpers of tools/ship_weights.py (the script is not a package: loaded from its path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ship():
    spec = importlib.util.spec_from_file_location("ship_weights", REPO / "tools" / "ship_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_trainable_task_has_a_recipe(ship):
    from nucleikit.models import get_spec, list_models

    tasks = {get_spec(name).task for name in list_models()}
    assert tasks <= set(ship.SHIPPERS)
    assert {"detection", "segmentation", "classification"} <= set(ship.SHIPPERS)


def test_training_summary_picks_the_best_record(ship):
    log = [{"step": 100, "score": 0.5, "elapsed_s": 60.0}, {"step": 200, "score": 0.7, "elapsed_s": 120.0},
           {"step": 300, "score": 0.6, "elapsed_s": 183.0}]
    s = ship.training_summary(log, score_key="score", count_key="step", name="r2unet", command="nucleikit train")
    assert s == {"steps": 300, "best_step": 200, "wall_time_min": 3.0, "command": "nucleikit train",
                 "log": "docs/training/r2unet.log.jsonl"}
    epochs = [{"epoch": 1, "val_weighted_f1": 0.8, "elapsed_s": 30.0}, {"epoch": 2, "val_weighted_f1": 0.7, "elapsed_s": 60.0}]
    assert ship.training_summary(epochs, score_key="val_weighted_f1", count_key="epoch", name="d",
                                 command="")["best_epoch"] == 1
    with pytest.raises(ValueError, match="empty"):
        ship.training_summary([], score_key="score", count_key="step", name="x", command="")


def test_limited_runs_are_labelled_and_kept_out_of_the_package(ship, tmp_path):
    assert ship.limited(range(10), 3) == [0, 1, 2] and ship.limited(range(4), None) == [0, 1, 2, 3]
    full = ship.figures_label("dsb2018 stage1_test", 65, None)
    quick = ship.figures_label("dsb2018 stage1_test", 3, 3)
    assert full["protocol"] is True and "65 images" in full["split"]
    assert quick["protocol"] is False and "not a PROTOCOL.md figure" in quick["note"]
    assert ship.output_path(tmp_path, "r2unet", 3, None) == tmp_path / "r2unet.limited.safetensors"
    assert ship.output_path(tmp_path, "r2unet", None, None).parent.name == "weights"
    assert ship.output_path(tmp_path, "r2unet", None, tmp_path / "x.safetensors") == tmp_path / "x.safetensors"


def test_float16_round_trip_changes_outputs_little(ship, make_segmenter_weights, tmp_path):
    from nucleikit.models.weights import load_weights

    model, meta = load_weights(make_segmenter_weights(model="r2unet"))
    shipped, diff = ship.float16_round_trip(model, meta, tmp_path)
    assert 0 < diff < 1e-2  # float16 rounds (so not 0) but keeps the output
    assert not list(tmp_path.iterdir())  # the temporary file is gone
    weights = dict(shipped.named_parameters())
    original = dict(model.named_parameters())
    name = next(iter(weights))
    w16 = original[name].detach().numpy().astype(np.float16).astype(np.float32)
    assert np.array_equal(weights[name].detach().numpy(), w16)


def test_score_calibration_of_maps_gives_loadable_monotone_metadata(ship):
    import numpy as np

    from nucleikit.infer.calibration import ScoreCalibration

    m = np.zeros((40, 40), np.float32)
    m[10, 10], m[30, 30], m[10, 30] = 1.0, 0.8, 0.2  # two nuclei and a faint false peak
    truth = np.array([[10.0, 10.0], [30.0, 30.0]])
    meta = ship.score_calibration([m, m], [truth, truth], [3.0, 3.0], min_distance=3, lowest_xi=0.05,
                                  fitted_on="test")
    cal = ScoreCalibration.from_meta(meta)
    assert cal.n_peaks == 6 and meta["fitted_on"] == "test"
    np.testing.assert_allclose(cal([0.2, 0.8, 1.0]), [0.0, 1.0, 1.0])


def test_distillation_record_compares_the_student_with_the_teachers_recorded_figures(ship):
    from nucleikit.models import build_model

    student_meta = {"test": {"crchisto": {"f1": 0.820}, "lung": {"f1": 0.790}, "f1_r6": 0.820, "f1_r8": 0.835}}
    teacher_meta = {"name": "micronet_he",
                    "test": {"crchisto": {"f1": 0.824}, "lung": {"f1": 0.811}, "f1_r6": 0.824, "f1_r8": 0.837}}
    rec = ship.distillation_record(student_meta, teacher_meta, build_model("micronet", width=8),
                                   build_model("micronet", width=16), ["crchisto", "lung"])
    assert rec["teacher"] == "micronet_he"
    assert (rec["gflop_per_mp"], rec["teacher_gflop_per_mp"], rec["flops_ratio"]) == (32.864, 130.56, 3.973)
    assert list(rec["f1"]) == ["crchisto", "lung", "f1_r6", "f1_r8"]
    assert rec["f1"]["crchisto"]["difference"] == pytest.approx(-0.004) and rec["f1"]["crchisto"]["within_bound"]
    assert rec["f1"]["lung"]["within_bound"] is False  # 0.021 below the teacher
    assert rec["holds"] is False
    rec = ship.distillation_record(student_meta, {"name": "t", "test": {}}, build_model("micronet", width=8),
                                   build_model("micronet", width=16), ["crchisto"])
    assert rec["f1"]["crchisto"]["teacher"] is None and rec["holds"] is True  # nothing to compare with


def test_a_shipped_student_is_rebuilt_at_its_width(ship, tmp_path):
    """model_kwargs travel through float16 shipping: Detector.from_weights rebuilds MicroNet at width 8."""
    import torch

    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.models import build_model
    from nucleikit.models.weights import read_weights_meta, save_weights

    torch.manual_seed(0)
    student = build_model("micronet", width=8)
    meta = {"name": "micronet_he_fast", "model": "micronet", "model_kwargs": {"width": 8}, "mpp": 0.5,
            "mean": [0.8, 0.7, 0.8], "std": [0.2, 0.2, 0.2], "halo": 60,
            "postprocess": {"threshold_rel": 0.5, "min_distance": 6}}
    save_weights(tmp_path / "best.safetensors", student, meta)
    shipped, _ = ship.float16_round_trip(student, read_weights_meta(tmp_path / "best.safetensors"), tmp_path)
    out = tmp_path / "micronet_he_fast.safetensors"
    save_weights(out, shipped, read_weights_meta(tmp_path / "best.safetensors"), storage="float16")
    written = read_weights_meta(out)
    assert written["model_kwargs"] == {"dropout": 0.5, "in_channels": 3, "out_channels": 1, "width": 8}
    det = Detector.from_weights(out, config=InferenceConfig(threads=1, precision="fp32"))
    assert sum(p.numel() for p in det.predictor.model.parameters()) < 600_000  # width 8: 589,009 before BN folding
    assert det.probability_map(np.full((64, 64, 3), 0.8, np.float32)).shape == (64, 64)


def write_discs(folder, stem, seed, n=10, size=64):
    from PIL import Image

    rng = np.random.default_rng(seed)
    pts = rng.uniform(6, size - 6, size=(n, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size, 3), 0.9)
    for x, y in pts:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = (0.3, 0.2, 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{stem}.png")
    (folder / f"{stem}.csv").write_text("x,y\n" + "".join(f"{x:.3f},{y:.3f}\n" for x, y in pts))


def test_ship_a_distilled_student_of_a_tiny_study(ship, tmp_path):
    """A student of `nucleikit experiment distill` through the pooled shipper: tuned, scored, compared."""
    import argparse
    import json

    import torch

    from nucleikit.experiments.config import load_config
    from nucleikit.experiments.runner import run_experiment
    from nucleikit.models import build_model
    from nucleikit.models.weights import load_weights, save_weights

    for subset, n in (("train", 2), ("validation", 1), ("test", 1)):
        for i in range(n):
            write_discs(tmp_path / "a" / subset, f"a{subset[0]}{i}", 10 * len(subset) + i)
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.safetensors"
    save_weights(teacher, build_model("micronet", width=4), {
        "name": "tiny_teacher", "model": "micronet", "model_kwargs": {"width": 4}, "mpp": 0.5,
        "mean": [0.6, 0.5, 0.6], "std": [0.25, 0.3, 0.25], "halo": 40, "test": {"a": {"f1": 0.5}}})
    doc = {"experiment": "distill", "seed": 0, "mpp": 0.5, "steps": 2,
           "train": {"model": "micronet", "model_kwargs": {"width": 2}, "crop": 32, "batch_size": 2, "val_every": 2,
                     "threads": 1, "xi_grid": [0.3], "min_distance_grid": [3]},
           "datasets": {"a": {"kind": "folder", "mpp": 0.5, **{s: str(tmp_path / "a" / s)
                                                               for s in ("train", "validation", "test")}}},
           "study": {"teacher": str(teacher), "train": ["a"], "validation": ["a"], "tests": ["a"], "label": "s"}}
    cfg = tmp_path / "distill.json"
    cfg.write_text(json.dumps(doc))
    run_experiment(load_config(cfg), tmp_path / "out", log=lambda _: None)
    (run,) = (tmp_path / "out" / "runs").glob("s-*")
    model, meta = load_weights(run / "best.safetensors")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    args = argparse.Namespace(run=run, name="tiny_fast", command="nucleikit experiment distill ...", threads=1,
                              limit_images=None, experiment_config=cfg, rule="both")
    shipped = ship.ship_pooled_detector(args, model, meta, log)
    assert shipped["name"] == "tiny_fast" and shipped["model_kwargs"]["width"] == 2
    d = shipped["distillation"]
    assert d["teacher"] == "tiny_teacher" and len(d["teacher_sha256"]) == 64 and d["flops_ratio"] > 3
    assert d["f1"]["a"]["teacher"] == 0.5
    assert d["f1"]["a"]["difference"] == pytest.approx(shipped["test"]["a"]["f1"] - 0.5)
    assert shipped["validation"]["sets"] == ["a"] and "calibration" in shipped
    assert not list(run.glob(".ship*"))
