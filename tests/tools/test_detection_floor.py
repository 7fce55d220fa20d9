"""tools/detection_floor.py: the absolute floor added to old detector weights, parameters untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _weights(path: Path, task: str = "detection") -> Path:
    import torch

    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights

    torch.manual_seed(0)
    meta = {"name": "tiny", "model": "micronet", "model_kwargs": {"width": 4}, "task": task, "mpp": 0.55,
            "mean": [0.8, 0.7, 0.85], "std": [0.15, 0.2, 0.12], "halo": 128,
            "postprocess": {"threshold_rel": 0.5, "min_distance": 4}}  # no floor: weights from before it
    return save_weights(path, build_model("micronet", width=4), meta, storage="float16")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "detection_floor.py"), "--threads", "1", *args],
                          capture_output=True, text=True, timeout=600)


def test_adds_the_floor_tuned_on_validation_and_keeps_every_parameter(crchisto_dir, tmp_path):
    from safetensors.torch import load_file

    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.models.weights import load_weights, read_weights_meta
    from nucleikit.train.tuning import FLOOR_GRID, tune_floor

    path = _weights(tmp_path / "tiny.safetensors")
    before = load_file(str(path))
    res = _run(str(path), "--data-root", str(crchisto_dir.parent))
    assert res.returncode == 0, res.stderr
    assert "float16 storage" in res.stdout
    meta = read_weights_meta(path)
    after = load_file(str(path))
    assert before.keys() == after.keys()
    assert all(before[k].dtype == after[k].dtype and (before[k] == after[k]).all() for k in before)
    # the same floor as tune_floor on the validation maps of the weights as stored
    model, old_meta = load_weights(path)
    det = Detector(model, {**old_meta, "postprocess": {"threshold_rel": 0.5, "min_distance": 4}},
                   config=InferenceConfig(threads=1))
    val = list(CRCHisto(crchisto_dir, split="fixed", subset="validation"))
    expected = tune_floor([det.probability_map(s.load_image()) for s in val], [s.points for s in val], radius=6.0,
                          xi=0.5, min_distance=4, lowest_xi=0.05)
    assert meta["postprocess"] == {"threshold_rel": 0.5, "min_distance": 4, "threshold_abs": expected.threshold_abs}
    assert meta["postprocess"]["threshold_abs"] in FLOOR_GRID
    floor = meta["validation"]["floor"]
    assert floor["f1"] == pytest.approx(expected.f1) and floor["images"] == [s.id for s in val]
    assert set(floor["blank_map_max"]) == {"white", "black", "white_noise", "dark_noise", "1x1"}
    assert np.isfinite(list(floor["blank_map_max"].values())).all()


def test_refuses_weights_of_another_task(crchisto_dir, tmp_path):
    path = _weights(tmp_path / "seg.safetensors", task="segmentation")
    res = _run(str(path), "--data-root", str(crchisto_dir.parent))
    assert res.returncode != 0 and "not detector weights" in res.stderr
