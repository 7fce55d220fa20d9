"""tools/plot_training.py draws a run's learning curves (loaded from its path: not a package)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("plot_training", REPO / "tools" / "plot_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_curves_of_a_log_are_a_png(tmp_path):
    tool = _tool()
    log = tmp_path / "log.jsonl"
    rows = [{"step": 100 * k, "loss": 2.0 / k, "val_aji": 0.4 + 0.02 * k, "best": True} for k in range(1, 6)]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert tool.read_log(log) == rows
    out = tool.plot({"run": tool.read_log(log)}, ["val_aji"], tmp_path / "c" / "curve.png")
    image = np.asarray(Image.open(out))
    assert out.is_file() and image.ndim == 3 and image.shape[1] > image.shape[0]
    assert not (tmp_path / "c" / "curve.tmp.png").exists()
