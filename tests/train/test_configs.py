"""The training configurations shipped in configs/ load into their dataclasses unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nucleikit.train.classify import ClassifyConfig
from nucleikit.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _load(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


@pytest.mark.parametrize("name", ["dcrn_crchisto.json", "densenet_crchisto.json"])
def test_classifier_configs_are_the_shipped_recipe(name):
    cfg = ClassifyConfig.from_dict(_load(name)).resolved()
    assert cfg.model == name.split("_")[0] and cfg.epochs == 4 and cfg.lr == 0.01
    assert cfg.lr_schedule == "constant" and cfg.augment.hed == 0.0 and cfg.bf16
    assert cfg.batch_size == 32 and cfg.momentum == 0.9 and cfg.weight_decay == 1e-4


def test_cross_validation_config_is_one_cosine_epoch_with_stain_jitter():
    fields = _load("crchisto_classify_cv.json")
    assert "model" not in fields  # benchmarks/train_classifiers.sh names the model
    for model in ("densenet", "dcrn"):
        cfg = ClassifyConfig.from_dict({**fields, "model": model}).resolved()
        assert cfg.epochs == 1 and cfg.lr_schedule == "cosine" and cfg.augment.hed == 0.05
        assert cfg.augment.flip and cfg.augment.rotate90 and not cfg.bf16


@pytest.mark.parametrize("name", ["micronet_crchisto.json", "udnet_crchisto.json", "unet_dsb2018.json",
                                  "r2unet_dsb2018.json"])
def test_detector_and_segmenter_configs_load(name):
    cfg = TrainConfig.from_dict(_load(name)).resolved()
    assert cfg.model == name.split("_")[0] and cfg.steps >= 1


@pytest.mark.parametrize("name", ["unet_instance_monuseg.json", "unet_instance_dsb2018.json"])
def test_instance_segmenter_configs_load(name):
    cfg = TrainConfig.from_dict(_load(name)).resolved()
    assert cfg.model == "unet_instance" and cfg.steps >= 1000
    if "monuseg" in name:  # H&E: 0.5 um/px, stain jitter and zoom for other labs and scanners
        assert cfg.mpp == 0.5 and cfg.augment.hed > 0 and cfg.augment.scale >= 0.2 and cfg.intensity == "none"
    else:  # DSB2018: input resolution, per-image percentile stretch as the binary models
        assert cfg.mpp is None and cfg.intensity == "percentile"


def test_r2unet_vs_unet_study_config_is_one_recipe_for_both_networks():
    fields = _load("r2unet_vs_unet_dsb2018.json")
    assert "model" not in fields and "seed" not in fields  # benchmarks/r2unet_vs_unet.py names them
    for model in ("r2unet", "unet"):
        cfg = TrainConfig.from_dict({**fields, "model": model}).resolved()
        assert cfg.optimizer == "adam" and cfg.lr == 0.001 and not cfg.bf16
        assert cfg.batch_size == 16 and cfg.crop == 96 and cfg.intensity == "percentile"
        assert cfg.plateau_patience >= 50  # a constant learning rate over the study's few validations
    # the third arm is the same recipe with one BatchNorm per recurrent step
    third = _load("r2unet_vs_unet_dsb2018_step_norm.json")
    assert {k: v for k, v in third.items() if k != "model_kwargs"} == fields
    assert TrainConfig.from_dict({**third, "model": "r2unet"}).model_kwargs == {"step_norm": True}
