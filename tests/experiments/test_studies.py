"""Every study end to end on synthetic disc data sets with a budget of a few steps.

Checks the files and cells each report holds, that a second run skips every
finished training, and that two runs with the same seed give the same figures.
"""

from __future__ import annotations

import csv
import json

import pytest

from nucleikit.experiments.config import load_config
from nucleikit.experiments.runner import run_experiment


def _run(path, out):
    log = []
    report = run_experiment(load_config(path), out, log=log.append)
    return report, log


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cross_dataset_matrix_report_resume_and_determinism(make_config, tmp_path):
    cfg = make_config("cross_dataset", {"datasets": ["a", "b", "c"]})
    report, log = _run(cfg, tmp_path / "out")
    out = tmp_path / "out"
    rows = _csv(out / "f1_matrix.csv")
    assert [r["train \\ test"] for r in rows] == ["a", "b", "c"]
    assert all(0 <= float(r[c]) <= 1 for r in rows for c in "abc")
    assert len(_csv(out / "cross_dataset.csv")) == 9
    same = _csv(out / "same_vs_other.csv")
    m = {r["train \\ test"]: r for r in rows}
    # own F1 is the diagonal, the other is the mean of the column without it
    assert float(same[1]["same_f1"]) == pytest.approx(float(m["b"]["b"]))
    assert float(same[1]["mean_other_f1"]) == pytest.approx((float(m["a"]["b"]) + float(m["c"]["b"])) / 2)
    for png in ("f1_matrix", "same_vs_other"):
        assert (out / "figures" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    text = report.read_text()
    assert "seed **0**" in text and "2 steps" in text and "## Compared with the paper" in text
    assert f"mean own F1 {sum(float(m[k][k]) for k in 'abc') / 3:.3f}" in text  # written from the numbers
    assert sum(line.startswith("train ") for line in log) == 3

    # a second run trains nothing
    _, log2 = _run(cfg, out)
    assert sum(line.startswith("skip ") for line in log2) == 3 and not any(l.startswith("train ") for l in log2)

    # same seed, fresh folder: the same figures
    _run(cfg, tmp_path / "again")
    assert _csv(tmp_path / "again" / "f1_matrix.csv") == rows


def test_an_interrupted_cell_resumes_from_its_checkpoint(make_config, tmp_path):
    cfg = make_config("cross_dataset", {"datasets": ["a", "b"]}, steps=4)
    _run(cfg, tmp_path / "out")
    run_dir = next((tmp_path / "out" / "runs").glob("train-a-*"))
    (run_dir / "result.json").unlink()  # as if it had stopped after the last checkpoint
    steps_before = [json.loads(l)["step"] for l in (run_dir / "log.jsonl").read_text().splitlines()]
    _, log = _run(cfg, tmp_path / "out")
    steps_after = [json.loads(l)["step"] for l in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps_after == steps_before == [2, 4]  # resumed at step 4: no step trained again
    assert any(l.startswith("train train-a") for l in log) and any(l.startswith("skip train-b") for l in log)


def test_finetune_all_parts(make_config, tmp_path):
    study = {"source": "a", "target": "b", "fractions": [0.25, 1.0], "freeze": [0, 9], "finetune_steps": 4,
             "snapshot_every": 2}
    cfg = make_config("finetune", study, steps=2)
    report, log = _run(cfg, tmp_path / "out")
    out = tmp_path / "out"
    it = _csv(out / "vs_iterations.csv")
    assert [int(r["steps"]) for r in it] == [0, 2, 4] and it[0]["scratch_f1"] == ""
    assert [float(r["fraction"]) for r in _csv(out / "vs_fraction.csv")] == [0.25, 1.0]
    assert [int(r["base_steps"]) for r in _csv(out / "vs_snapshot.csv")] == [2]
    assert [int(r["frozen_blocks"]) for r in _csv(out / "vs_frozen_blocks.csv")] == [0, 9]
    snaps = list((out / "runs").glob("snapshots-a-*/snapshot_2.safetensors"))
    assert len(snaps) == 1
    for png in ("vs_iterations", "vs_fraction", "vs_snapshot", "vs_frozen_blocks"):
        assert (out / "figures" / f"{png}.png").is_file()
    text = report.read_text()
    assert "Iterations:" in text and "Fraction:" in text and "Freezing:" in text
    _, log2 = _run(cfg, out)
    assert not any(l.startswith("train ") for l in log2)


def test_finetune_from_a_snapshot_starts_from_its_weights(make_config, tmp_path):
    from nucleikit.models.weights import read_weights_meta

    cfg = make_config("finetune", {"source": "a", "target": "b", "parts": ["snapshots"], "snapshot_every": 2},
                      steps=4)
    _run(cfg, tmp_path / "out")
    runs = tmp_path / "out" / "runs"
    assert {p.name for p in next(runs.glob("snapshots-a-*")).glob("snapshot_*")} == {
        "snapshot_2.safetensors", "snapshot_4.safetensors"}
    meta = read_weights_meta(next(runs.glob("ft-a@2-b-*")) / "best.safetensors")
    assert meta["init"] is not None and meta["train_config"]["init"].endswith("snapshot_2.safetensors")


def test_auxiliary_fractions_gammas_and_pr_curves(make_config, tmp_path):
    study = {"target": "a", "auxiliary": ["b", "c"], "fractions": [0.1, 0.5], "gammas": [1.0, 4.0],
             "gamma_fraction": 0.5}
    report, _ = _run(make_config("auxiliary", study), tmp_path / "out")
    out = tmp_path / "out"
    assert [float(r["aux_percent"]) for r in _csv(out / "vs_aux_fraction.csv")] == [0.0, 10.0, 50.0]
    assert [float(r["gamma"]) for r in _csv(out / "vs_gamma.csv")] == [1.0, 4.0]
    res = json.loads((out / "results.json").read_text())
    weights = sorted(tuple(t["weight"] for t in c["cell"]["train"]) for c in res["cells"])
    assert (4.0, 1.0, 1.0) in weights and (1.0,) in weights
    # gamma 1 at 50% is the same training as the 50% mix: run once
    assert len(list((out / "runs").glob("aux-a-0.5-g1-*"))) == 1
    assert (out / "figures" / "pr_gamma.png").is_file()
    assert "Gamma: the best gamma" in report.read_text()


def test_lambda_study(make_config, tmp_path):
    report, _ = _run(make_config("lambda", {"datasets": ["a"], "lams": [0.0, 5.0]}), tmp_path / "out")
    rows = _csv(tmp_path / "out" / "vs_lambda.csv")
    assert [(r["dataset"], float(r["lambda"])) for r in rows] == [("a", 0.0), ("a", 5.0)]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted(c["cell"]["config"]["lam"] for c in res["cells"]) == [0.0, 5.0]
    assert "The best lambda is" in report.read_text()


def test_baselines_table_over_datasets(make_config, tmp_path):
    study = {"datasets": ["a", "b"], "models": ["micronet", "unet_regressor"],
             "model_kwargs": {"unet_regressor": {"widths": [4, 8, 8, 8, 8]}}}
    report, _ = _run(make_config("baselines", study), tmp_path / "out")
    rows = _csv(tmp_path / "out" / "baselines.csv")
    assert [r["model"] for r in rows] == ["micronet", "unet_regressor"]
    assert all(" ± " in r["f1"] for r in rows)
    per = _csv(tmp_path / "out" / "baselines_per_dataset.csv")
    f1s = [float(r["f1"]) for r in per if r["model"] == "unet_regressor"]
    assert rows[1]["f1"].startswith(f"{sum(f1s) / 2:.3f}")
    text = report.read_text()
    assert "FCN, FCRN-A, FCRN-B, Faster R-CNN of the paper's table were not run" in text


def test_baselines_train_and_score_the_fcn_and_faster_rcnn(make_config, tmp_path):
    study = {"datasets": ["a"], "models": ["fcn", "faster_rcnn"],
             "model_kwargs": {"fcn": {"width": 4}, "faster_rcnn": {"width": 4, "hidden": 32, "box_um": 3.5}}}
    report, _ = _run(make_config("baselines", study), tmp_path / "out")
    per = _csv(tmp_path / "out" / "baselines_per_dataset.csv")
    assert [r["model"] for r in per] == ["fcn", "faster_rcnn"]
    assert all(0 <= float(r["f1"]) <= 1 for r in per)
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    frcnn = [c for c in res["cells"] if c["cell"]["config"]["model"] == "faster_rcnn"]
    assert frcnn and frcnn[0]["cell"]["config"]["model_kwargs"]["box_um"] == 3.5
    text = report.read_text()
    assert "FCRN-A, FCRN-B, U-Net, MicroNet of the paper's table were not run" in text
    assert "boxes of one nucleus size centred on the points" in text
