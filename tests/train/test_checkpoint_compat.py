"""Checkpoints written before the loop became a Trainer resume exactly under the current code.

``data/old_*`` were written by nucleikit at commit db5517d (the single ``train_dense``
function) by running this file as a script: for a tiny detector (MicroNet, SGD) and a tiny
instance segmenter (U-Net, Adam, the optimiser of the long segmentation runs), the run
folder of a run cut after 2 of 4 steps (``checkpoint.pt``, ``log.jsonl``) and the model
and log of the uninterrupted 4-step run. A run in progress must resume from its
checkpoint as if it had never stopped: same keys, same meanings (``train_s`` included).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nucleikit.train.augment import AugmentConfig
from nucleikit.train.config import TrainConfig
from nucleikit.train.loop import train_detector, train_segmenter
from tests.train.test_loop import Disc  # the samples of the loop's tests

DATA = Path(__file__).with_name("data")
#: Every key a checkpoint holds; a run in progress was written with exactly these.
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "step", "best", "best_step", "elapsed", "train_s", "mean",
                   "std", "torch_rng", "config"}
#: Log fields that measure time (they differ from run to run).
CLOCKS = {"elapsed_s", "train_s"}


def disc_image(seed: int, n: int = 12, size: int = 64) -> Disc:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(6, size - 6, size=(n, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size, 3), 0.9, np.float32)
    for x, y in pts:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = (0.3, 0.2, 0.5)
    return Disc(f"disc{seed}", pts, 0.55, img)


@dataclass
class Blobs:
    id: str
    labels: np.ndarray
    mpp: float | None = None

    def load_image(self, mode="rgb"):
        img = np.repeat(np.where(self.labels[..., None] > 0, 0.2, 0.9).astype(np.float32), 3, axis=2)
        return img if mode == "rgb" else img[..., :1]

    def load_labels(self):
        return self.labels


def blob_sample(seed: int, size: int = 64) -> Blobs:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    labels = np.zeros((size, size), np.int32)
    for k, (x, y) in enumerate(rng.uniform(8, size - 8, size=(5, 2)), start=1):
        labels[((xx - x) ** 2 + (yy - y) ** 2 <= 25) & (labels == 0)] = k
    return Blobs(f"blobs{seed}", labels)


def _detection(steps: int) -> tuple:
    cfg = TrainConfig(model="micronet", model_kwargs={"width": 1}, steps=steps, val_every=2, batch_size=2, crop=48,
                      threads=1, augment=AugmentConfig(), xi_grid=(0.3, 0.5), min_distance_grid=(2, 3))
    return train_detector, [disc_image(0), disc_image(1)], [disc_image(2)], cfg


def _segmentation(steps: int) -> tuple:
    cfg = TrainConfig(model="unet_instance", model_kwargs={"widths": [4, 8, 8, 8, 8]}, steps=steps, val_every=2,
                      batch_size=2, crop=48, threads=1, augment=AugmentConfig(hed=0.05))
    return train_segmenter, [blob_sample(0), blob_sample(1)], [blob_sample(2)], cfg


RUNS = {"detection": _detection, "segmentation": _segmentation}


def _train(kind: str, steps: int, out: Path):
    fn, train, val, cfg = RUNS[kind](steps)
    return fn(train, val, cfg, out, progress=False)


def _records(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in CLOCKS} for line in path.read_text().splitlines()]


def write_fixtures(tmp: Path) -> None:
    """Write ``data/old_<kind>_cut/`` and ``data/old_<kind>_full.pt`` with the code of the day."""
    for kind in RUNS:
        cut = DATA / f"old_{kind}_cut"
        shutil.rmtree(cut, ignore_errors=True)
        _train(kind, 2, tmp / f"{kind}_cut")
        cut.mkdir(parents=True)
        for name in ("checkpoint.pt", "log.jsonl"):
            shutil.copy(tmp / f"{kind}_cut" / name, cut / name)
        _train(kind, 4, tmp / f"{kind}_full")
        model = torch.load(tmp / f"{kind}_full" / "checkpoint.pt", weights_only=True)["model"]
        torch.save({"model": model, "log": _records(tmp / f"{kind}_full" / "log.jsonl")},
                   DATA / f"old_{kind}_full.pt")


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_old_checkpoint_resumes_as_the_uninterrupted_old_run(kind, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(DATA / f"old_{kind}_cut", run)
    old = torch.load(run / "checkpoint.pt", weights_only=True)
    assert set(old) == CHECKPOINT_KEYS and old["step"] == 2
    res = _train(kind, 4, run)
    assert res.steps_done == 4
    new = torch.load(run / "checkpoint.pt", weights_only=True)
    # the format is unchanged: same keys, same types
    assert set(new) == CHECKPOINT_KEYS
    assert {k: type(v) for k, v in new.items()} == {k: type(v) for k, v in old.items()}
    assert new["train_s"] > old["train_s"] and new["elapsed"] > old["elapsed"]
    expected = torch.load(DATA / f"old_{kind}_full.pt", weights_only=True)
    assert list(new["model"]) == list(expected["model"])
    for name, value in expected["model"].items():
        # bit for bit on the machine that wrote the fixtures; float noise allowed on other CPUs
        torch.testing.assert_close(new["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    records = _records(run / "log.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    assert [sorted(r) for r in records] == [sorted(r) for r in expected["log"]]
    for got, want in zip(records, expected["log"]):
        # loss, validation figures, tuned post-processing, learning rate, "best"
        assert got == pytest.approx(want, abs=1e-6)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_fixtures(Path(tmp))
    print("fixtures written to", DATA, file=sys.stderr)
