"""The pooled study: threshold-rule tuning by hand, pooling of tables, and a run end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nucleikit.errors import ConfigError
from nucleikit.experiments.cells import Cell, TrainSet
from nucleikit.experiments.config import load_config
from nucleikit.experiments.pooled import RULES, GridTables, Params, pool_rows, threshold_transfer, tune_rule
from nucleikit.experiments.runner import run_experiment
from nucleikit.train.config import TrainConfig
from nucleikit.train.tuning import FLOOR_GRID, score_grid


def _row(md, xi, floor, tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"min_distance": md, "threshold_rel": xi, "threshold_abs": floor, "tp": tp, "fp": fp, "fn": fn,
            "precision": p, "recall": r, "f1": f}


# One distance, xi in {0, 0.5}, floor in {0, 0.1, 0.2}; 10 true nuclei.
TABLE = [
    _row(3, 0.0, 0.0, 10, 10, 0),  # F1 0.667
    _row(3, 0.0, 0.1, 9, 3, 1),  # F1 0.818
    _row(3, 0.0, 0.2, 6, 0, 4),  # F1 0.750
    _row(3, 0.5, 0.0, 9, 1, 1),  # F1 0.900  <- relative
    _row(3, 0.5, 0.1, 9, 1, 1),  # same: the floor costs nothing at xi 0.5...
    _row(3, 0.5, 0.2, 6, 0, 4),  # F1 0.750
]


def test_each_rule_picks_its_row_by_hand():
    rel = tune_rule(TABLE, "relative")
    assert (rel["threshold_rel"], rel["threshold_abs"]) == (0.5, 0.0)
    ab = tune_rule(TABLE, "absolute")
    assert (ab["threshold_rel"], ab["threshold_abs"]) == (0.0, 0.1)
    # both: xi 0.5 first; floor 0.1 keeps F1 0.9 but costs recall at xi 0 (10 -> 9 of 10): refused
    both = tune_rule(TABLE, "both")
    assert (both["threshold_rel"], both["threshold_abs"]) == (0.5, 0.0)
    # with a tolerance of 0.1 recall the floor 0.1 passes, 0.2 breaks F1 and recall
    both = tune_rule(TABLE, "both", tolerance=0.1)
    assert (both["threshold_rel"], both["threshold_abs"]) == (0.5, 0.1)
    with pytest.raises(ValueError, match="unknown threshold rule"):
        tune_rule(TABLE, "median")


def test_pool_rows_sums_counts_and_recomputes_f1():
    pooled = pool_rows([TABLE, TABLE])
    assert [r["tp"] for r in pooled] == [2 * r["tp"] for r in TABLE]
    assert pooled[3]["f1"] == pytest.approx(0.9)
    other = [dict(r, threshold_rel=0.4) for r in TABLE]
    with pytest.raises(ValueError, match="grids"):
        pool_rows([TABLE, other])


def _maps(seed, faint):
    """Maps of 3 images with 6 nuclei each (peak 1, or 0.12 when ``faint``) and 4 false bumps of 0.15 x the peak."""
    rng = np.random.default_rng(seed)
    maps, truths = [], []
    for _ in range(3):
        m = np.zeros((64, 64), np.float32)
        pts = rng.choice(np.arange(4, 60, 8), size=(10, 2))
        pts = np.unique(pts, axis=0)[:10]
        for i, (x, y) in enumerate(pts):
            m[y, x] = (0.12 if faint else 1.0) * (0.15 if i >= 6 else 1.0)
        maps.append(m)
        truths.append(pts[:6].astype(float))
    return maps, truths, 2.0


def test_lazy_grid_choices_equal_the_full_grid_and_transfer_uses_the_others():
    maps = {"a": _maps(0, faint=False), "b": _maps(1, faint=False), "c": _maps(2, faint=True)}
    grid = GridTables(maps)
    xis, mds, floors = (0.1, 0.3, 0.5), (3.0, 5.0), FLOOR_GRID
    full = pool_rows([score_grid(m, t, radius=r, min_distance_grid=mds, xi_grid=(0.0, *xis), threshold_abs_grid=floors)
                      for m, t, r in maps.values()])
    for rule in RULES:
        lazy = grid.choose(list(maps), rule, xi_grid=xis, md_grid=mds, floors=floors)
        want = tune_rule([r for r in full if rule == "absolute" or r["threshold_rel"] > 0], rule)
        key = ("min_distance", "threshold_rel", "threshold_abs", "f1")
        assert [lazy[k] for k in key] == [want[k] for k in key], rule
    rows = threshold_transfer(grid, xi_grid=xis, md_grid=mds)
    assert [r["held_out"] for r in rows] == ["a", "b", "c"]
    c = rows[2]
    # tuned on a + b (bright nuclei) an absolute floor above the faint nuclei's 0.12 loses all of c;
    # the relative rule follows c's own maximum and finds them
    assert c["relative_f1"] == pytest.approx(1.0) and c["own_f1"] == pytest.approx(1.0)
    assert c["absolute_f1"] < 0.5
    assert all(r[f"{rule}_f1"] <= r["own_f1"] + 1e-12 for r in rows for rule in ("relative", "absolute"))


def test_score_grid_counts_peaks_of_a_map_by_hand():
    m = np.zeros((20, 20), np.float32)
    m[5, 5], m[15, 15], m[5, 15] = 1.0, 0.6, 0.05  # two nuclei and a faint bump
    truth = np.array([[5.0, 5.0], [15.0, 15.0]])
    rows = score_grid([m], [truth], radius=2, min_distance_grid=[3], xi_grid=[0.0, 0.5], threshold_abs_grid=[0, 0.1])
    by = {(r["threshold_rel"], r["threshold_abs"]): (r["tp"], r["fp"], r["fn"]) for r in rows}
    assert by[(0.0, 0.0)] == (2, 1, 0)
    assert by[(0.0, 0.1)] == (2, 0, 0)
    assert by[(0.5, 0.0)] == (2, 0, 0)


def test_params_are_checked():
    with pytest.raises(ConfigError, match="gammas for data sets not in train"):
        Params(train=("a",), validation=("a",), tests=("a",), gammas={"b": 2.0}).check()
    with pytest.raises(ConfigError, match="positive"):
        Params(train=("a",), validation=("a",), tests=("a",), gammas={"a": 0}).check()
    with pytest.raises(ConfigError, match="twice"):
        Params(train=("a", "a"), validation=("a",), tests=("a",)).check()
    p = Params(train=("a", "b"), validation=("a", "c"), tests=("c",))
    assert p.needs() == {"a": ("train", "validation"), "b": ("train",), "c": ("validation", "test")}


def test_a_cell_with_one_validation_set_keeps_its_key():
    cfg = TrainConfig(steps=10)
    one = Cell("x", (TrainSet("a"),), "a", cfg)
    assert one.spec()["validation"] == "a" and "init_weights" not in one.spec()
    assert Cell("x", (TrainSet("a"),), ("a", "b"), cfg).key() != one.key()
    assert Cell("x", (TrainSet("a"),), "a", cfg, init_weights="w.safetensors").key() != one.key()


def test_pooled_study_end_to_end(make_config, tmp_path):
    study = {"train": ["a", "b"], "validation": ["a", "b"], "tests": ["a", "c"], "gammas": {"b": 2.0},
             "label": "pool"}
    report = run_experiment(load_config(make_config("pooled", study)), tmp_path / "out", log=lambda _: None)
    out = tmp_path / "out"
    with open(out / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["test"] for r in rows] == ["a", "c"]
    with open(out / "threshold_transfer.csv", newline="") as f:
        transfer = list(csv.DictReader(f))
    assert [r["held_out"] for r in transfer] == ["a", "b"]
    assert all(0 <= float(r["both_f1"]) <= float(r["own_f1"]) + 1e-9 for r in transfer)
    res = json.loads((out / "results.json").read_text())
    (cell,) = res["cells"]
    assert cell["cell"]["validation"] == ["a", "b"]
    assert [t["weight"] for t in cell["cell"]["train"]] == [1.0, 2.0]
    assert "transfers best" in report.read_text()
    assert len(list((out / "runs").glob("pool-*"))) == 1
