"""Synthetic point data sets in tmp_path: folders of disc images with CSV centres.

Each data set has its own disc colour and size so that data sets differ; every
image is 64x64 at 0.5 um/px (the common resolution, so no resampling), and the
points are the exact disc centres.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

STYLES = {"a": ((0.3, 0.2, 0.5), 3.0), "b": ((0.5, 0.1, 0.3), 4.0), "c": ((0.2, 0.3, 0.2), 3.0)}


def write_disc_image(folder, stem, seed, colour, radius, n=10, size=64):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(6, size - 6, size=(n, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size, 3), 0.9)
    for x, y in pts:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = colour
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{stem}.png")
    (folder / f"{stem}.csv").write_text("x,y\n" + "".join(f"{x:.3f},{y:.3f}\n" for x, y in pts))
    return pts


def make_dataset(root, name, *, train=2, validation=1, test=1):
    colour, radius = STYLES[name]
    spec = {"kind": "folder", "mpp": 0.5}
    seed = sum(map(ord, name)) * 100
    for subset, n in (("train", train), ("validation", validation), ("test", test)):
        if n:
            for i in range(n):
                write_disc_image(root / name / subset, f"{name}{subset[0]}{i}", seed + i + 10 * len(subset), colour, radius)
            spec[subset] = str(root / name / subset)
    return spec


TINY_TRAIN = {
    "model": "micronet", "model_kwargs": {"width": 4}, "val_every": 2, "batch_size": 2, "crop": 32,
    "threads": 1, "optimizer": "adam", "lr": 0.001,
    "augment": {"rotate": False, "flip": False, "scale": 0.0, "elastic_alpha": 0.0, "contrast": 0.0,
                "brightness": 0.0, "channel_shift": 0.0},
    "xi_grid": [0.3, 0.5], "min_distance_grid": [3],
}


@pytest.fixture
def datasets(tmp_path):
    return {n: make_dataset(tmp_path / "data", n) for n in ("a", "b", "c")}


@pytest.fixture
def make_config(tmp_path, datasets):
    """Write a configuration file for a study and return its path."""

    def make(experiment, study, *, steps=2, train=None, sets=None, name="cfg.json"):
        doc = {"experiment": experiment, "seed": 0, "mpp": 0.5, "steps": steps,
               "train": {**TINY_TRAIN, **(train or {})},
               "datasets": {k: datasets[k] for k in (sets or datasets)}, "study": study}
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        return path

    return make


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
