"""Tests for nucleikit.io.datasets.base: the PointSample record and find_shared_dir."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nucleikit.io.datasets.base import SHARED_ENV, PointSample, find_shared_dir


def test_point_sample_normalises_points_and_loads_its_image(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 0]]], dtype=np.uint8)).save(path)
    sample = PointSample("a", str(path), [[1, 0]], 0.5, classes=["x"])
    assert sample.points.dtype == np.float64 and sample.points.shape == (1, 2)
    assert sample.image_path == path
    assert sample.classes.tolist() == ["x"]
    np.testing.assert_array_equal(sample.load_image()[0], [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(sample.load_image("grey")[0, :, 0], [0.299, 0.0], rtol=1e-6)


def test_point_sample_accepts_no_points():
    assert PointSample("a", "a.png", [], 0.5).points.shape == (0, 2)


def test_point_sample_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="2 classes for 1 points"):
        PointSample("a", "a.png", [[1.0, 2.0]], 0.5, classes=["x", "y"])


def test_shared_dir_beside_a_parent(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_ENV, raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "main" / "src").mkdir(parents=True)
    assert find_shared_dir(tmp_path / "main" / "src") == tmp_path / "shared"
    monkeypatch.chdir(tmp_path / "main")
    assert find_shared_dir() == tmp_path / "shared"


def test_shared_dir_without_data_is_not_taken(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_ENV, raising=False)
    (tmp_path / "shared").mkdir()  # no data/ inside
    (tmp_path / "main").mkdir()
    found = find_shared_dir(tmp_path / "main")
    assert found is None or not str(found).startswith(str(tmp_path))


def test_environment_variable_wins(tmp_path, monkeypatch):
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "elsewhere"))
    assert find_shared_dir(tmp_path) == tmp_path / "elsewhere"
