"""tools/stain_moments.py: the training stain added to old classifier weights, parameters untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
KWARGS = {"growth": 4, "stem_width": 8, "layers": [1, 1, 1, 1]}


def _weights(path: Path, train_images: list[str], storage: str = "float16") -> Path:
    import torch

    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights

    torch.manual_seed(0)
    meta = {"name": "tiny", "model": "densenet", "model_kwargs": KWARGS, "task": "classification",
            "classes": ["epithelial", "fibroblast", "inflammatory", "others"], "mpp": 0.55, "patch": 16,
            "mean": [0.5] * 3, "std": [0.25] * 3, "train_images": train_images}
    return save_weights(path, build_model("densenet", **KWARGS), meta, storage=storage)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "stain_moments.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_adds_the_moments_of_the_listed_training_patches(crchisto_dir, tmp_path):
    from safetensors.torch import load_file

    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.models.weights import read_weights_meta
    from nucleikit.train.classify import PatchSet
    from nucleikit.transforms import lab_moments

    ids = CRCHisto(crchisto_dir, split="fixed", subset="train").ids[:2]
    path = _weights(tmp_path / "tiny.safetensors", list(ids))
    before = load_file(str(path))
    res = _run(str(path), "--data-root", str(crchisto_dir.parent))
    assert res.returncode == 0, res.stderr
    assert "float16 storage" in res.stdout
    meta = read_weights_meta(path)
    samples = [s for s in CRCHisto(crchisto_dir, split="fixed", subset="all", task="classification") if s.id in ids]
    expected = lab_moments(PatchSet.from_samples(samples, patch=16, mpp=0.55).patches)
    assert np.allclose(meta["lab_mean"], expected[0]) and np.allclose(meta["lab_std"], expected[1])
    after = load_file(str(path))
    assert before.keys() == after.keys()
    assert all(before[k].dtype == after[k].dtype and (before[k] == after[k]).all() for k in before)


def test_refuses_weights_without_train_images(crchisto_dir, tmp_path):
    path = _weights(tmp_path / "tiny.safetensors", [])
    res = _run(str(path), "--data-root", str(crchisto_dir.parent))
    assert res.returncode != 0 and "train_images" in res.stderr
