"""finetune_train: the paper's fine-tuning regime reaches the fine-tuning cells only."""

from __future__ import annotations

import pytest

from nucleikit.errors import ConfigError

from .fake import FakeRunner, fake_config, run_study

SGD = {"optimizer": "sgd", "lr": 0.001, "momentum": 0.9}


def test_the_override_reaches_the_fine_tuning_cells_only():
    study = {"source": "a", "target": "b", "fractions": [0.5], "freeze": [0, 4], "finetune_steps": 4,
             "snapshot_every": 2, "finetune_train": SGD}
    runner = FakeRunner()
    res = run_study("finetune", fake_config("finetune", study), runner)
    tuned = [c for c in runner.cells if c.init is not None]
    others = [c for c in runner.cells if c.init is None]
    assert {c.label for c in tuned} == {"ft-a-b-sgd-lr0.001-momentum0.9", "ft-a-b-0.5-sgd-lr0.001-momentum0.9",
                                        "ft-a@2-b-sgd-lr0.001-momentum0.9", "ft-a@4-b-sgd-lr0.001-momentum0.9",
                                        "ft-a-b-freeze0-sgd-lr0.001-momentum0.9",
                                        "ft-a-b-freeze4-sgd-lr0.001-momentum0.9"}
    assert all((c.config.optimizer, c.config.lr) == ("sgd", 0.001) for c in tuned)
    assert others and all((c.config.optimizer, c.config.lr) == ("adam", 0.001) for c in others)
    assert "Fine-tuning regime: optimizer sgd, lr 0.001, momentum 0.9" in res.findings[0]
    assert "optimizer sgd" in res.table_notes["vs_iterations"]


def test_both_regimes_in_one_configuration():
    study = {"source": "a", "target": "b", "parts": ["iterations"], "finetune_steps": 4,
             "finetune_train": {"optimizer": "sgd", "lr": 0.001}, "both_regimes": True}
    runner = FakeRunner()
    res = run_study("finetune", fake_config("finetune", study), runner)
    regimes = sorted((c.label, c.config.optimizer) for c in runner.cells if c.init is not None)
    assert regimes == [("ft-a-b", "adam"), ("ft-a-b-sgd-lr0.001", "sgd")]
    table = res.tables["vs_iterations"]
    assert all(r["finetune_as_scratch_f1"] is not None for r in table)
    assert table[0]["finetune_as_scratch_f1"] == table[0]["finetune_f1"]  # step 0: the base model
    assert "fine-tuned (train options)" in res.figures[0].data["series"]
    # the Adam curve is the very cell an Adam-only configuration trains
    plain = FakeRunner()
    run_study("finetune", fake_config("finetune", {k: v for k, v in study.items()
                                                    if k not in ("finetune_train", "both_regimes")}), plain)
    assert {c.key() for c in plain.cells if c.init is not None} <= {c.key() for c in runner.cells}


@pytest.mark.parametrize("override, match", [
    ({"steps": 10}, "finetune_train may not set steps"),
    ({"model": "fcn"}, "finetune_train may not set model"),
    ({"optimiser": "sgd"}, "unknown training option"),
    ({"lr": -1.0}, "lr must be a positive number"),
    ({"lr": "slow"}, "lr must be a number"),
])
def test_bad_overrides_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        fake_config("finetune", {"source": "a", "target": "b", "finetune_train": override})


def test_both_regimes_needs_a_regime():
    with pytest.raises(ConfigError, match="both_regimes needs a finetune_train"):
        fake_config("finetune", {"source": "a", "target": "b", "both_regimes": True})
