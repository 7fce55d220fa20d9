"""Cross-dataset generalisation (Xing et al. 2019, Fig. 4): train on one, test on every one.

One model per data set (trained on its training images, validated on its
validation images); each model is scored on the test images of every data
set. The result is an F1 matrix (rows: training set, columns: test set) and,
per test set, the F1 of its own model against the mean F1 of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .cells import CellRunner, figures_row, scratch_cell
from .report import Figure, StudyResult

__all__ = ["Params", "run", "TITLE"]

TITLE = "Cross-dataset generalisation (Xing et al. 2019, Fig. 4)"
PAPER = ("Xing et al. train one model per data set and test it on every other (Fig. 4); as we read the paper, "
         "a model does best on test images of the data set it was trained on and loses accuracy on the others; "
         "their abstract: training with images of the same organ is usually necessary, and models learned on "
         "other organs need fine-tuning to be on a par with those trained on target data.")


@dataclass(frozen=True)
class Params:
    """Options of the cross-dataset study.

    Attributes
    ----------
    datasets : tuple of str
        Data sets to train on and test on (each needs train, validation and
        test images); at least two.
    """

    datasets: tuple[str, ...]

    def check(self) -> None:
        if len(self.datasets) < 2:
            raise ConfigError("study: cross_dataset needs at least two datasets")
        if len(set(self.datasets)) != len(self.datasets):
            raise ConfigError("study: a dataset is listed twice")

    def needs(self) -> dict[str, tuple[str, ...]]:
        return {d: ("train", "validation", "test") for d in self.datasets}


def same_vs_other(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per test set (column j): the diagonal F1 and the mean F1 of the other rows.

    Parameters
    ----------
    matrix : (n, n) float
        ``matrix[i, j]`` = F1 of the model trained on set i tested on set j.
    """
    n = matrix.shape[0]
    same = np.diag(matrix).copy()
    off = ~np.eye(n, dtype=bool)
    other = np.array([matrix[:, j][off[:, j]].mean() for j in range(n)])
    return same, other


def run(config, collection, runner: CellRunner) -> StudyResult:
    names = list(config.params.datasets)
    results = {d: runner.run(scratch_cell(d, config.train), names) for d in names}
    f1 = np.array([[results[tr]["test"][te]["f1"] for te in names] for tr in names])
    rows = []
    for tr in names:
        for te in names:
            rows.append({"train": tr, "test": te, **figures_row(results[tr]["test"][te]),
                         "best_step": results[tr]["best_step"]})
    same, other = same_vs_other(f1)
    summary = [{"test": te, "same_f1": float(s), "mean_other_f1": float(o), "gap": float(s - o)}
               for te, s, o in zip(names, same, other)]
    res = StudyResult(TITLE, PAPER)
    res.tables = {"f1_matrix": [{"train \\ test": tr, **{te: float(f1[i, j]) for j, te in enumerate(names)}}
                                for i, tr in enumerate(names)],
                  "cross_dataset": rows, "same_vs_other": summary}
    res.table_notes = {"f1_matrix": "Rows: the data set a model was trained on; columns: the test set.",
                       "same_vs_other": "Per test set: F1 of the model trained on it, and the mean F1 of the "
                                        "models trained on the other data sets."}
    res.figures = [
        Figure("f1_matrix", "heatmap", {"matrix": f1.tolist(), "rows": names, "cols": names,
                                        "xlabel": "test set", "ylabel": "trained on"},
               f"Test F1, train (rows) x test (columns), {config.steps} steps each"),
        Figure("same_vs_other", "lines", {"x": names, "series": {"own model": same.tolist(),
                                                                 "mean of the others": other.tolist()},
                                          "xlabel": "test set", "ylabel": "F1"},
               "Own model vs mean of the other models, per test set"),
    ]
    wins = int(np.sum(same > other))
    gap = float(np.mean(same - other))
    best_off = np.where(~np.eye(len(names), dtype=bool), f1, -np.inf)
    i, j = np.unravel_index(int(np.argmax(best_off)), f1.shape)
    verdict = "agrees with" if wins > len(names) / 2 and gap > 0 else "does not agree with"
    res.findings = [
        f"On {wins} of {len(names)} test sets the model trained on that data set scores higher than the mean "
        f"of the others (mean own F1 {same.mean():.3f}, mean other F1 {other.mean():.3f}, mean gap {gap:+.3f}); "
        f"this {verdict} the paper's finding that models transfer imperfectly across data sets.",
        f"The best transfer is {names[i]} -> {names[j]} (F1 {f1[i, j]:.3f}, against {f1[j, j]:.3f} for "
        f"{names[j]}'s own model).",
    ]
    res.cells = list(results.values())
    return res
