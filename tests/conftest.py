"""Shared fixtures.

Tests that need the real data sets in ``../shared`` use the ``shared_dir``
fixture (or one built on it). Without the data they skip with a reason; with
``NUCLEIKIT_REQUIRE_DATA=1`` (set by ``.ci/run``) they fail instead, so CI can
never pass by skipping them silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NUCLEIKIT_SHARED", REPO.parent / "shared"))
REQUIRE_DATA = os.environ.get("NUCLEIKIT_REQUIRE_DATA", "") == "1"


def _need(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set NUCLEIKIT_SHARED or place ../shared beside the repo)"
    if REQUIRE_DATA:
        pytest.fail(message + "; NUCLEIKIT_REQUIRE_DATA=1 forbids skipping")
    pytest.skip(message)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` folder holding ``data/`` and ``splits/``."""
    return _need(SHARED / "data", "shared data").parent


@pytest.fixture(scope="session")
def crchisto_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "data" / "crchisto", "CRCHistoPhenotypes")


@pytest.fixture(scope="session")
def dsb2018_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "data" / "dsb2018", "DSB2018")


@pytest.fixture(scope="session")
def monuseg_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "data" / "monuseg", "MoNuSeg")


@pytest.fixture(scope="session")
def slides_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "data" / "slides", "whole-slide samples")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def make_segmenter_weights(tmp_path_factory):
    """Factory: a tiny randomly initialised segmenter (``unet``, ``r2unet``, ``unet_instance``, ...) saved as a complete weights file.

    ``make_segmenter_weights(model="unet", colour="rgb", mpp=None, intensity="none", **postprocess)``
    returns its path. Mechanics only (shapes, dtypes, files); nothing here depends on bundled weights.
    """
    import torch

    from nucleikit.models import build_model, get_spec
    from nucleikit.models.weights import save_weights

    folder = tmp_path_factory.mktemp("seg_weights")
    made: dict[tuple, Path] = {}

    def make(model: str = "unet", colour: str = "rgb", mpp: float | None = None, intensity: str = "none",
             **postprocess) -> Path:
        key = (model, colour, mpp, intensity, tuple(sorted(postprocess.items())))
        if key in made:
            return made[key]
        torch.manual_seed(0)
        channels = 1 if colour == "grey" else 3
        kwargs = {"widths": [4, 8, 16], "in_channels": channels}
        net = build_model(model, **kwargs)
        meta = {
            "name": f"tiny_{model}",
            "model": model,
            "model_kwargs": kwargs,
            "task": "segmentation",
            "target": get_spec(model).target,
            "mpp": mpp,
            "colour": colour,
            "intensity": intensity,
            "mean": [0.5] * channels,
            "std": [0.25] * channels,
            "postprocess": {"threshold": 0.5, "min_distance": 3, "min_size": 4, **postprocess},
        }
        made[key] = save_weights(folder / f"tiny_{len(made)}.safetensors", net, meta)
        return made[key]

    return make
