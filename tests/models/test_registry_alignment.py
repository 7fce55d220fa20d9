"""Every registered model's declared alignment (total downsampling factor) is the network's own.

Tiled inference lays its windows on a lattice of the declared step; a network that
downsamples by 32 declared as 16 runs and silently differs from its untiled output. The
declaration is therefore checked against the network itself, for every registered model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nucleikit.models as models
from nucleikit.errors import ConfigError
from nucleikit.infer.predict import DensePredictor, InferenceConfig
from nucleikit.models import registry
from nucleikit.models.registry import measure_alignment


def declared_and_measured(name: str, **kwargs) -> tuple[int, int]:
    """(the spec's alignment, the factor of the network it builds) for ``name`` built with ``kwargs``."""
    spec = models.get_spec(name)
    model = models.build_model(name, **kwargs)
    assert model.alignment == spec.alignment_for(**kwargs)  # what the tiling engine reads
    return spec.alignment_for(**kwargs), measure_alignment(model, in_channels=kwargs.get("in_channels", 3))


@pytest.mark.parametrize("name", models.list_models())
def test_every_registered_model_declares_its_own_downsampling(name):
    declared, measured = declared_and_measured(name)
    assert declared == measured


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("unet", {"widths": [4, 8, 8, 8, 8, 8]}, 32),  # one more level: a lattice of 32
        ("r2unet_instance", {"widths": [4, 8, 8]}, 4),
        ("densenet", {"layers": (2, 2)}, 2),
        ("micronet", {"width": 4, "in_channels": 1}, 16),
    ],
)
def test_alignment_follows_the_builder_arguments(name, kwargs, expected):
    assert declared_and_measured(name, **kwargs) == (expected, expected)


class Pool32(torch.nn.Module):
    """A toy dense network with a 32-pixel pooling cell: x + upsampled 32x32 block means."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        coarse = F.avg_pool2d(F.pad(x, (0, -w % 32, 0, -h % 32)), 32)  # functional: no module to hook
        return x + F.interpolate(coarse, scale_factor=32, mode="nearest")[..., :h, :w]


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_a_network_declared_with_a_wrong_alignment_is_caught(scratch_registry, rng):
    models.register_model("pool32_as_16", task="detection", target="density", loss="mse", mpp=None,
                          alignment=16)(Pool32)
    models.register_model("pool32", task="detection", target="density", loss="mse", mpp=None, alignment=32)(Pool32)
    # the check every registered model goes through above
    assert declared_and_measured("pool32_as_16") == (16, 32)
    assert declared_and_measured("pool32") == (32, 32)
    # and why it matters: tiled on the declared lattice, the wrong one silently differs from untiled
    image = rng.random((96, 80, 3)).astype(np.float32)

    def tiled_vs_untiled(name: str) -> float:
        model = models.build_model(name)
        tiled = DensePredictor(model, mean=[0, 0, 0], std=[1, 1, 1], halo=32, config=InferenceConfig(tile=48))
        whole = DensePredictor(model, mean=[0, 0, 0], std=[1, 1, 1], halo=32, config=InferenceConfig(tile=512))
        return float(np.abs(tiled(image) - whole(image)).max())

    assert tiled_vs_untiled("pool32") < 1e-6
    assert tiled_vs_untiled("pool32_as_16") > 0.01


def test_alignment_is_required_and_checked(scratch_registry):
    def builder(*, depth: int = 2) -> torch.nn.Module:
        return torch.nn.Conv2d(3, 1, 1)

    with pytest.raises(TypeError, match="alignment"):
        models.register_model("none", task="detection", target="density", loss="mse", mpp=None)
    with pytest.raises(ConfigError, match="alignment must be a positive integer, got 0"):
        models.register_model("zero", task="detection", target="density", loss="mse", mpp=None, alignment=0)(builder)
    assert "zero" not in models.list_models()
    models.register_model("deep", task="detection", target="density", loss="mse", mpp=None,
                          alignment=lambda kw: 2 ** kw["depth"])(builder)
    assert models.get_spec("deep").alignment_for() == 4
    assert models.get_spec("deep").alignment_for(depth=5) == 32
    with pytest.raises(ConfigError, match="got 0.5"):
        models.get_spec("deep").alignment_for(depth=-1)


def test_measure_alignment_of_plain_layers():
    assert measure_alignment(torch.nn.Conv2d(3, 4, 3, padding=1)) == 1
    assert measure_alignment(torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.MaxPool2d(4))) == 8
    assert measure_alignment(torch.nn.Conv2d(1, 1, 3, stride=2, padding=1), in_channels=1) == 2
