"""benchmarks/r2unet_vs_unet.py pairs the two networks of one seed at equal steps and equal time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _study():
    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("r2unet_vs_unet", REPO / "benchmarks" / "r2unet_vs_unet.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def _log(steps, s_per_step, dice):
    return [{"step": k, "train_s": k * s_per_step, "val_dice": d, "val_dsb": d / 2} for k, d in zip(steps, dice)]


def test_equal_time_takes_unets_last_validation_within_r2unets_time():
    study = _study()
    # R2U-Net: 2 s/step, 200 steps = 400 s. U-Net: 1 s/step, so 400 s is its step 400;
    # step 500 (500 s) is past the budget and must not be used.
    logs = {
        ("r2unet", 0): _log([100, 200], 2.0, [0.70, 0.80]),
        ("unet", 0): _log([100, 200, 300, 400, 500], 1.0, [0.72, 0.78, 0.83, 0.85, 0.90]),
    }
    (row,) = study.compare(logs, steps=200)
    assert row["r2unet_dice"] == 0.80 and row["unet_dice_same_steps"] == 0.78
    assert row["unet_step_same_time"] == 400 and row["unet_dice_same_time"] == 0.85
    assert row["r2unet_s_per_step"] == 2.0 and row["unet_s_per_step"] == 1.0
    assert row["unet_reached_the_time"]


def test_a_seed_without_both_runs_at_the_step_is_left_out():
    study = _study()
    logs = {("r2unet", 0): _log([100], 2.0, [0.7]), ("unet", 0): _log([100, 200], 1.0, [0.7, 0.8]),
            ("r2unet", 1): _log([100, 200], 2.0, [0.7, 0.8]), ("unet", 1): _log([100, 200], 1.0, [0.7, 0.8])}
    rows = study.compare(logs, steps=200)
    assert [r["seed"] for r in rows] == [1]
    assert not rows[0]["unet_reached_the_time"]  # U-Net stopped at 200 s, short of R2U-Net's 400 s


def test_verdict_needs_every_seed_to_agree():
    study = _study()
    assert study.verdict(np.array([0.8, 0.81, 0.82]), np.array([0.7, 0.8, 0.81])) == "R2U-Net better on every seed"
    assert study.verdict(np.array([0.7, 0.7]), np.array([0.8, 0.71])) == "U-Net better on every seed"
    assert study.verdict(np.array([0.8, 0.7]), np.array([0.7, 0.8])) == "within the seed-to-seed noise"
    assert study.verdict(np.array([0.9]), np.array([0.8])) == "one seed only: no verdict"


def test_equal_time_from_the_probed_speed_ratio_ignores_the_runs_clocks():
    study = _study()
    # the runs' clocks say U-Net was as slow as R2U-Net (a busy machine), the probe says 2.5x faster:
    # 200 R2U-Net steps = 500 U-Net steps, so U-Net's point is its step 500
    logs = {
        ("r2unet", 0): _log([100, 200], 2.0, [0.70, 0.80]),
        ("unet", 0): _log([100, 200, 300, 400, 500, 600], 2.0, [0.72, 0.78, 0.83, 0.85, 0.90, 0.91]),
    }
    (row,) = study.compare(logs, steps=200, speed_ratio=2.5)
    assert row["unet_step_same_time"] == 500 and row["unet_dice_same_time"] == 0.90
    assert row["unet_reached_the_time"]


def test_report_adds_the_per_step_norm_arm_against_the_same_unet_runs(tmp_path, monkeypatch):
    import argparse
    import json

    study = _study()
    monkeypatch.setattr(study, "DOCS", tmp_path / "docs")
    runs = tmp_path / "runs"
    logs = {"r2unet": _log([100, 200], 2.0, [0.60, 0.70]), "unet": _log([100, 200, 300, 400], 1.0, [0.7, 0.8, 0.85, 0.9]),
            "r2unet_step_norm": _log([100, 200], 2.0, [0.80, 0.85])}
    for arm, records in logs.items():
        (runs / f"{arm}_seed0").mkdir(parents=True)
        (runs / f"{arm}_seed0" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (runs / "speed.json").write_text(json.dumps({"s_per_step": {"r2unet": 2.0, "unet": 1.0}}))
    (runs / "speed_step_norm.json").write_text(json.dumps({"s_per_step": {"r2unet_step_norm": 1.5, "unet": 1.0}}))
    study.report(argparse.Namespace(runs=runs, seeds=[0], steps=200, val_every=100))
    out = json.loads((tmp_path / "docs" / "results.json").read_text())
    (pair,), (third,) = out["seeds"], out["step_norm_seeds"]
    assert pair["r2unet_dice"] == 0.70 and pair["unet_step_same_time"] == 400  # 200 steps * 2.0 / 1.0
    assert third["r2unet_dice"] == 0.85 and third["unet_step_same_time"] == 300  # 200 * 1.5 / 1.0
    assert out["summary"]["step_norm"]["equal_steps"]["dice"] == "one seed only: no verdict"
    assert out["summary"]["equal_steps"]["dice"] == "one seed only: no verdict"
    report = (tmp_path / "docs" / "report.md").read_text()
    assert "per-step BN" in report and (tmp_path / "docs" / "curves.png").is_file()
