"""A stand-in for CellRunner that trains nothing: each cell's test F1 is a function of its definition.

Lets the studies' tables and findings be checked exactly and fast. The
default F1 is a stable hash of the cell's key, the test set and the stage, so
different seeds (different keys) give different figures; a test can give its
own ``f1(cell, test, steps)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

from nucleikit.experiments.config import parse_config


def hashed_f1(cell, test: str, steps: int) -> float:
    h = hashlib.sha1(f"{cell.key()}|{test}|{steps}".encode()).hexdigest()
    return 0.5 + 0.4 * int(h[:8], 16) / 0xFFFFFFFF


class FakeRunner:
    def __init__(self, f1=hashed_f1, runs_dir="/nonexistent"):
        self.f1 = f1
        self.runs_dir = Path(runs_dir)
        self.cells = []  # every cell asked for, in order
        self.trained, self.skipped = [], []

    def folder(self, cell):
        return self.runs_dir / cell.folder_name()

    def _result(self, cell, tests, steps):
        test = {}
        for t in tests:
            f = self.f1(cell, t, steps)
            test[t] = {"precision": f + 0.01, "recall": f - 0.01, "f1": f, "ed": 2.0, "mean_image_f1": f,
                       "pr_curve": {"xi": [0.5], "precision": [f], "recall": [f]}}
        return {"key": cell.key(), "label": cell.label, "cell": cell.spec(), "steps": steps, "best_step": steps,
                "validation": {}, "wall_time_s": 1.0, "test": test}

    def run(self, cell, tests):
        if cell.stages:
            return self.run_staged(cell, tests)[-1]
        self.cells.append(cell)
        return self._result(cell, tests, cell.config.steps)

    def run_staged(self, cell, tests):
        self.cells.append(cell)
        return [self._result(cell, tests, s) for s in cell.stages]


def fake_config(experiment: str, study: dict, *, seeds=None, all_seeds=None, steps=4, train=None):
    """A parsed configuration over data sets a, b, c (never read: the fake runner needs none)."""
    doc = {"experiment": experiment, "seed": 0, "mpp": 0.5, "steps": steps,
           "train": {"model": "micronet", "crop": 32, "batch_size": 2, "optimizer": "adam", "lr": 0.001,
                     "val_every": 2, **(train or {})},
           "datasets": {n: {"kind": "folder", "train": n, "mpp": 0.5} for n in "abc"}, "study": study}
    if seeds is not None:
        doc["seeds"] = seeds
        doc.pop("seed")
    if all_seeds is not None:
        doc["all_seeds"] = all_seeds
    return parse_config(doc)


COLLECTION = SimpleNamespace(mpp=0.5)

#: One configuration per study (one seed), used to pin the tables a one-seed run gives.
STUDIES = {
    "cross_dataset": {"datasets": ["a", "b", "c"]},
    "finetune": {"source": "a", "target": "b", "fractions": [0.25, 1.0], "freeze": [0, 9], "finetune_steps": 4,
                 "snapshot_every": 2},
    "auxiliary": {"target": "a", "auxiliary": ["b", "c"], "fractions": [0.1, 0.5], "gammas": [1.0, 4.0]},
    "lambda": {"datasets": ["a", "b"], "lams": [0.0, 5.0, 50.0]},
    "baselines": {"datasets": ["a", "b"], "models": ["micronet", "fcn"]},
    "pooled": {"train": ["a", "b"], "validation": ["a"], "tests": ["a", "b"]},
}


def run_study(name: str, config, runner):
    from nucleikit.experiments.registry import STUDIES as REGISTRY

    return REGISTRY[name].run(config, COLLECTION, runner)
