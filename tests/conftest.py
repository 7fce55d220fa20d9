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
