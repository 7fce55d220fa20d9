"""Tests of nucleikit.models.registry, and of every registered model."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
import torch

import nucleikit.models as models
from nucleikit.errors import ConfigError
from nucleikit.models import registry
from nucleikit.models.micronet import MicroNet

DETECTION = ["faster_rcnn", "fcn", "fcrn_a", "fcrn_b", "micronet", "udnet", "unet_regressor"]
SEGMENTATION = ["r2unet", "r2unet_instance", "unet", "unet_instance"]


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry that a test may register into."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _docstring_count(name: str) -> int:
    doc = inspect.getdoc(models.get_spec(name).builder)
    match = re.search(r"([\d,]+) parameters", doc)
    assert match, f"{name}: docstring states no parameter count"
    return int(match.group(1).replace(",", ""))


def test_list_models_by_task():
    assert models.list_models(task="detection") == DETECTION
    assert models.list_models(task="segmentation") == SEGMENTATION
    every = models.list_models()
    assert every == sorted(every) and set(DETECTION + SEGMENTATION) <= set(every)
    with pytest.raises(ConfigError, match="unknown task 'counting'"):
        models.list_models(task="counting")


@pytest.mark.parametrize("name", DETECTION + SEGMENTATION)
def test_parameter_count_matches_docstring(name):
    model = models.build_model(name)
    assert sum(p.numel() for p in model.parameters()) == _docstring_count(name)


@pytest.mark.parametrize("name", DETECTION + SEGMENTATION)
def test_forward_shapes_odd_and_crop(name):
    model = models.build_model(name).eval()
    with torch.inference_mode():
        odd = model(torch.rand(1, 3, 75, 61))
        square = model(torch.rand(1, 3, 75, 75))
        crop = model(torch.rand(1, 3, 200, 200))
    k = 3 if models.get_spec(name).target == "instance" else 1  # foreground, boundary, distance
    assert odd.shape == (1, k, 75, 61)
    assert square.shape == (1, k, 75, 75)
    assert crop.shape == (1, k, 200, 200)
    # every registered model so far ends in a sigmoid
    for y in (odd, square, crop):
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_specs_carry_targets_losses_and_recipes():
    micronet = models.get_spec("micronet")
    assert (micronet.task, micronet.target, micronet.loss) == ("detection", "proximity", "weighted_mse")
    assert micronet.mpp == 0.55
    assert micronet.train["crop"] == 200
    assert (micronet.train["optimizer"], micronet.train["nesterov"]) == ("sgd", True)
    for name in ("fcrn_a", "fcrn_b", "unet_regressor"):
        spec = models.get_spec(name)
        assert (spec.target, spec.loss, spec.mpp, spec.train["crop"], spec.train["optimizer"]) == (
            "proximity", "weighted_mse", 0.55, 200, "sgd"
        )
    udnet = models.get_spec("udnet")
    assert (udnet.target, udnet.loss, udnet.mpp) == ("density", "mse", 0.55)
    assert (udnet.train["crop"], udnet.train["optimizer"], udnet.train["lr"]) == (96, "adam", 2e-4)
    assert models.get_spec("unet").target == "mask" and models.get_spec("r2unet").mpp is None


def test_specs_are_read_only():
    spec = models.get_spec("micronet")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.mpp = 0.25  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.train["crop"] = 1  # type: ignore[index]


def test_unknown_name_lists_the_known_models():
    with pytest.raises(ConfigError, match=r"unknown model 'micronett'; known models: .*micronet"):
        models.get_spec("micronett")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        models.build_model("nope")


def test_build_model_overrides_and_rejects_unknown_kwargs():
    model = models.build_model("micronet", width=8)
    assert isinstance(model, MicroNet)
    assert sum(p.numel() for p in model.parameters()) == 589_009
    with pytest.raises(ConfigError, match="does not accept colour"):
        models.build_model("micronet", colour=3)
    # UD-Net's head is fixed to one channel: not an option.
    with pytest.raises(ConfigError, match="does not accept out_channels"):
        models.build_model("udnet", out_channels=2)
    with pytest.raises(ConfigError, match="width"):
        models.build_model("micronet", width=-1)


def test_full_kwargs_completes_with_builder_defaults():
    spec = models.get_spec("micronet")
    assert spec.full_kwargs(width=8) == {"in_channels": 3, "out_channels": 1, "width": 8, "dropout": 0.5}
    with pytest.raises(ConfigError, match="does not accept depth"):
        spec.full_kwargs(depth=3)


def test_register_refuses_duplicates(scratch_registry):
    def builder(*, width: int = 2) -> torch.nn.Module:
        """A toy."""
        return torch.nn.Conv2d(3, width, 1)

    with pytest.raises(ConfigError, match="'micronet' is already registered"):
        models.register_model("micronet", task="detection", target="proximity", loss="mse", mpp=None,
                              alignment=1)(builder)
    register = models.register_model("toy", task="detection", target="density", loss="mse", mpp=0.5, alignment=1)
    assert register(builder) is builder
    assert models.get_spec("toy").description == "A toy."
    with pytest.raises(ConfigError, match="'toy' is already registered"):
        register(builder)


def test_register_validates_task_target_and_kwargs(scratch_registry):
    def builder(*, width: int = 2) -> torch.nn.Module:
        return torch.nn.Conv2d(3, width, 1)

    with pytest.raises(ConfigError, match="unknown task 'counting'"):
        models.register_model("a", task="counting", target="density", loss="mse", mpp=None, alignment=1)
    with pytest.raises(ConfigError, match="unknown target 'points'"):
        models.register_model("b", task="detection", target="points", loss="mse", mpp=None, alignment=1)
    with pytest.raises(ConfigError, match="does not accept depth"):
        models.register_model("c", task="detection", target="density", loss="mse", mpp=None, alignment=1,
                              kwargs={"depth": 2})(
            builder
        )
    assert "c" not in models.list_models()
