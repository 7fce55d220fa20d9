"""Several seeds: the combined tables, the noise, the within-the-noise call, and one seed unchanged.

The studies run here against a fake runner (tests/experiments/fake.py): no training, exact figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nucleikit.errors import ConfigError
from nucleikit.experiments.cells import Cell, TrainSet, scratch_cell
from nucleikit.experiments.config import parse_config
from nucleikit.experiments.seeds import combine, noise, per_seed_rows, verdict, within_noise

from .fake import STUDIES, FakeRunner, fake_config, run_study

HERE = Path(__file__).parent


def test_combine_one_seed_is_the_table_itself():
    rows = [{"k": 1, "f1": 0.5}]
    assert combine([rows], keys=("k",), spread_cols=("f1",)) is rows


def test_combine_means_and_spread_by_hand():
    a = [{"k": "x", "f1": 0.6, "ed": 2.0, "note": "n"}, {"k": "y", "f1": None, "ed": 1.0, "note": "m"}]
    b = [{"k": "x", "f1": 0.8, "ed": 4.0, "note": "n"}, {"k": "y", "f1": None, "ed": 3.0, "note": "m"}]
    out = combine([a, b], keys=("k",), spread_cols=("f1",))
    assert list(out[0]) == ["k", "f1", "f1_sd", "f1_min", "f1_max", "ed", "note"]
    assert out[0]["f1"] == pytest.approx(0.7) and out[0]["f1_sd"] == pytest.approx(0.1)
    assert (out[0]["f1_min"], out[0]["f1_max"]) == (0.6, 0.8) and out[0]["ed"] == pytest.approx(3.0)
    assert list(out[1]) == list(out[0]) and out[1]["f1"] is None and out[1]["f1_sd"] is None  # same columns
    with pytest.raises(ValueError, match="column 'k'"):
        combine([a, list(reversed(b))], keys=("k",))
    assert [r["seed"] for r in per_seed_rows([3, 4], [a, b])] == [3, 3, 4, 4]


def test_noise_and_the_within_the_noise_call():
    assert noise([0.70, 0.74, 0.72], [0.80, 0.81]) == pytest.approx(0.04)
    assert noise([0.7]) is None  # one seed: no noise estimate
    assert within_noise(0.03, 0.04) and within_noise(-0.03, 0.04) and not within_noise(0.05, 0.04)
    assert not within_noise(0.0001, None)
    assert verdict(True) == "agrees with" and verdict(False, 0.01, None) == "does not agree with"
    assert verdict(True, 0.05, 0.04) == "agrees with"
    assert verdict(False, -0.03, 0.04).startswith("is within the noise (difference -0.030, smaller than the "
                                                  "seed-to-seed range 0.040)")


def test_one_seed_gives_the_tables_and_findings_it_gave_before_seeds():
    """Pinned with the code of commit 4865b01 (before seeds) on the same fake runner."""
    before = json.loads((HERE / "one_seed_tables.json").read_text())
    for name, study in STUDIES.items():
        res = run_study(name, fake_config(name, study), FakeRunner())
        now = json.loads(json.dumps({
            "tables": res.tables, "table_notes": res.table_notes, "findings": res.findings,
            "cells": [c["key"] for c in res.cells],
            "figures": [[f.name, f.kind, f.data, f.caption] for f in res.figures]}, sort_keys=True, default=str))
        assert now == before[name], name


def test_the_key_of_a_one_seed_cell_is_unchanged():
    """Run folders of one-seed configurations (e.g. the pooled training under way) keep their names."""
    doc = {"experiment": "cross_dataset", "seed": 0, "steps": 100,
           "train": {"model": "micronet", "crop": 128, "batch_size": 8, "optimizer": "adam", "lr": 0.001},
           "datasets": {"a": {"kind": "folder", "train": "x", "mpp": 0.5},
                        "b": {"kind": "folder", "train": "y", "mpp": 0.5}},
           "study": {"datasets": ["a", "b"]}}
    config = parse_config(doc)
    assert config.seeds == (0,) and config.train_for(0) is config.train
    assert scratch_cell("a", config.train).key() == "a7961261ac"  # computed before seeds existed
    assert scratch_cell("a", config.train).key(lambda n: "fp-" + n) == "6e5b830aff"
    pooled = Cell("pooled", (TrainSet("a", 1.0, 2.0), TrainSet("b")), ("a", "b"), config.train,
                  init_weights="w.safetensors")
    assert pooled.key(lambda n: "fp-" + n) == "177f44e0b3"
    # "seeds": [0] is the same configuration as "seed": 0
    same = parse_config({**{k: v for k, v in doc.items() if k != "seed"}, "seeds": [0]})
    assert scratch_cell("a", same.train).key() == "a7961261ac"
    assert "seeds" not in same.to_dict()


def test_seeds_are_checked():
    with pytest.raises(ConfigError, match="seeds must be a non-empty list of integers"):
        fake_config("lambda", {"datasets": ["a"]}, seeds=[])
    with pytest.raises(ConfigError, match="seeds must be a non-empty list of integers"):
        fake_config("lambda", {"datasets": ["a"]}, seeds=[0, "1"])
    with pytest.raises(ConfigError, match="a seed is listed twice"):
        fake_config("lambda", {"datasets": ["a"]}, seeds=[1, 1])
    with pytest.raises(ConfigError, match="all_seeds must be true or false"):
        fake_config("lambda", {"datasets": ["a"]}, all_seeds="yes")
    doc = {"experiment": "lambda", "seed": 2, "seeds": [1, 2], "steps": 2, "datasets": {"a": {"kind": "folder",
           "train": "a", "mpp": 0.5}}, "study": {"datasets": ["a"]}}
    with pytest.raises(ConfigError, match="seed 2 must be the first of seeds"):
        parse_config(doc)
    assert fake_config("lambda", {"datasets": ["a"]}, seeds=[3, 4]).seed == 3


def _seeded(values):
    """f1(cell, test, steps) from a dict (seed, training data set, test set) -> F1."""
    def f1(cell, test, steps):
        return values[(cell.config.seed, cell.train[0].dataset, test)]
    return f1


def test_cross_dataset_with_seeds_every_cell_per_seed_and_the_noise_call():
    # own model ahead by 0.023 on average; a's own model varies by 0.15 between the seeds
    values = {}
    for s, shift in ((0, 0.0), (1, 0.10), (2, -0.05)):
        values.update({(s, "a", "a"): 0.75 + shift, (s, "a", "b"): 0.70, (s, "b", "a"): 0.74,
                       (s, "b", "b"): 0.72})
    config = fake_config("cross_dataset", {"datasets": ["a", "b"]}, seeds=[0, 1, 2])
    runner = FakeRunner(_seeded(values))
    res = run_study("cross_dataset", config, runner)
    assert sorted((c.config.seed, c.train[0].dataset) for c in runner.cells) == [
        (s, d) for s in (0, 1, 2) for d in "ab"]
    assert len({c.key() for c in runner.cells}) == 6  # one run folder per seed and data set
    svo = {r["test"]: r for r in res.tables["same_vs_other"]}
    assert svo["a"]["same_f1"] == pytest.approx(0.7666667) and svo["a"]["gap_min"] == pytest.approx(-0.04)
    assert svo["a"]["gap_max"] == pytest.approx(0.11) and svo["a"]["gap_sd"] > 0 and svo["b"]["gap_sd"] == 0
    assert res.tables["f1_matrix_sd"][0]["a"] == pytest.approx(0.0623610, abs=1e-6)
    assert len(res.tables["cross_dataset_per_seed"]) == 12 and len(res.headline) == 6
    text = " ".join(res.findings)
    assert "is within the noise" in text and "neither agrees nor disagrees" in text
    assert "within the noise (smaller than its seed-to-seed range) on a." in text
    assert res.figures[0].data["sd"] and res.figures[1].data["spread"]["own model"][0] == pytest.approx([0.70, 0.85])


def test_cross_dataset_with_seeds_a_clear_difference_is_not_called_noise():
    values = {}
    for s, shift in ((0, 0.0), (1, 0.01), (2, -0.01)):
        values.update({(s, "a", "a"): 0.85 + shift, (s, "a", "b"): 0.50, (s, "b", "a"): 0.50,
                       (s, "b", "b"): 0.85 - shift})
    res = run_study("cross_dataset", fake_config("cross_dataset", {"datasets": ["a", "b"]}, seeds=[0, 1, 2]),
                    FakeRunner(_seeded(values)))
    text = " ".join(res.findings)
    assert "agrees with the paper" in text and "within the noise" not in text.split("Over 3 seeds")[0]
    assert "on every test set the gap is larger than its seed-to-seed range" in text


def test_headline_for_every_seed_secondary_parts_for_the_first():
    study = {"source": "a", "target": "b", "fractions": [0.5, 1.0], "freeze": [0, 4], "finetune_steps": 4}
    runner = FakeRunner()
    res = run_study("finetune", fake_config("finetune", study, seeds=[0, 1, 2]), runner)
    by_seed = {}
    for c in runner.cells:
        by_seed.setdefault(c.config.seed, set()).add(c.label)
    assert by_seed[1] == by_seed[2] == {"train-a", "train-b", "ft-a-b"}  # base + the two curves
    assert {"train-b-0.5", "ft-a-b-freeze4", "snapshots-a"} <= by_seed[0]
    assert "finetune_f1_min" in res.tables["vs_iterations"][1] and "f1_min" not in res.tables["vs_frozen_blocks"][0]
    assert len(res.tables["vs_iterations_per_seed"]) == 3 * 3
    assert "vs_frozen_blocks_per_seed" not in res.tables
    assert res.figures[0].data["spread"]["fine-tuned"][1] is not None
    # all_seeds: the secondary parts too
    runner = FakeRunner()
    res = run_study("finetune", fake_config("finetune", study, seeds=[0, 1], all_seeds=True), runner)
    assert "ft-a-b-freeze4" in {c.label for c in runner.cells if c.config.seed == 1}
    assert "f1_min" in res.tables["vs_frozen_blocks"][0]


def test_auxiliary_headline_is_alone_best_share_gamma_one_and_best_gamma():
    study = {"target": "a", "auxiliary": ["b"], "fractions": [0.1, 0.5], "gammas": [1.0, 2.0, 4.0]}
    runner = FakeRunner()
    res = run_study("auxiliary", fake_config("auxiliary", study, seeds=[0, 1]), runner)
    first = [r for r in res.tables["vs_aux_fraction_per_seed"] if r["seed"] == 0]
    best_share = max(first[1:], key=lambda r: r["f1"])["aux_percent"]
    g_first = [r for r in res.tables["vs_gamma_per_seed"] if r["seed"] == 0]
    best_gamma = max(g_first, key=lambda r: r["f1"])["gamma"]
    second = {c.label for c in runner.cells if c.config.seed == 1}
    expect = {"train-a", f"aux-a-{best_share / 100:g}-g1", "aux-a-0.5-g1", f"aux-a-0.5-g{best_gamma:g}"}
    assert second == expect
    seeds = {r["aux_percent"]: r["seeds"] for r in res.tables["vs_aux_fraction"]}
    assert seeds[0.0] == 2 and seeds[best_share] == 2
    assert "(chosen on seed 0)" in res.findings[0]


def test_lambda_baselines_and_pooled_train_their_headline_for_every_seed():
    for name, study in (("lambda", {"datasets": ["a"], "lams": [0.0, 5.0]}),
                        ("baselines", {"datasets": ["a"], "models": ["micronet", "fcn"]}),
                        ("pooled", {"train": ["a", "b"], "validation": ["a"], "tests": ["a", "b"]})):
        runner = FakeRunner()
        res = run_study(name, fake_config(name, study, seeds=[0, 5]), runner)
        seeds = sorted(c.config.seed for c in runner.cells)
        assert seeds.count(0) == seeds.count(5) > 0, name
        assert any(k.endswith("_per_seed") for k in res.tables), name
        assert any("_min" in col or "seed_range" in col for t in res.tables.values() for col in t[0]), name
