"""Seeds end to end on the synthetic disc data sets (a few steps per training)."""

from __future__ import annotations

import csv
import json

from nucleikit.experiments.config import load_config
from nucleikit.experiments.runner import run_experiment


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_seeds_give_their_own_folders_a_spread_and_share_trainings(make_config, tmp_path):
    cfg = make_config("cross_dataset", {"datasets": ["a", "b"]}, steps=4)
    doc = json.loads(cfg.read_text())
    doc.pop("seed")
    doc["seeds"] = [0, 1]
    cfg.write_text(json.dumps(doc))
    runs = tmp_path / "runs"
    report = run_experiment(load_config(cfg), tmp_path / "out", runs_dir=runs, log=lambda _: None)
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == 4 and len({f.rsplit("-", 1)[1] for f in folders}) == 4  # a and b, seeds 0 and 1
    seeds = sorted(json.loads((runs / f / "result.json").read_text())["cell"]["config"]["seed"] for f in folders)
    assert seeds == [0, 0, 1, 1]
    out = tmp_path / "out"
    svo = _csv(out / "same_vs_other.csv")
    assert {"gap", "gap_sd", "gap_min", "gap_max", "same_f1_min"} <= set(svo[0])
    assert float(svo[0]["gap_min"]) <= float(svo[0]["gap"]) <= float(svo[0]["gap_max"])
    assert len(_csv(out / "cross_dataset_per_seed.csv")) == 8
    plateau = _csv(out / "plateau.csv")
    assert sorted(int(r["seed"]) for r in plateau) == [0, 0, 1, 1] and all(r["plateau_step"] for r in plateau)
    text = report.read_text()
    assert "seeds **0, 1**" in text and "## Budget and plateau" in text and "Over 2 seeds" in text
    assert (out / "figures" / "same_vs_other.png").is_file()

    # a one-seed study with seed 1 finds the seed-1 training of a already there
    lam = make_config("lambda", {"datasets": ["a"], "lams": [5.0]}, steps=4, name="lam.json")
    doc = json.loads(lam.read_text())
    doc["seed"] = 1
    lam.write_text(json.dumps(doc))
    log = []
    run_experiment(load_config(lam), tmp_path / "lam", runs_dir=runs, log=log.append)
    assert any(line.startswith("skip train-a-") for line in log) and not any(l.startswith("train ") for l in log)
    assert len(list(runs.iterdir())) == 4
