"""Cross-dataset generalisation (Xing et al. 2019, Fig. 4): train on one, test on every one.

One model per data set (trained on its training images, validated on its
validation images); each model is scored on the test images of every data
set. The result is an F1 matrix (rows: training set, columns: test set) and,
per test set, the F1 of its own model against the mean F1 of the others.

Headline comparison (trained for every seed of the configuration): the whole
matrix. With several seeds the tables give the mean over the seeds with the
spread of each F1 and of each own-vs-others gap (:mod:`.seeds`), the plots
carry the seeds' range as error bars (standard deviations in the heat map),
and a gap smaller than its seed-to-seed range is called within the noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .cells import CellRunner, figures_row, scratch_cell
from .report import Figure, StudyResult
from .seeds import combine, noise, per_seed_rows, seeds_note, spread, verdict, within_noise

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


def _one_seed(names, cfg, runner: CellRunner) -> tuple[dict, np.ndarray]:
    results = {d: runner.run(scratch_cell(d, cfg), names) for d in names}
    f1 = np.array([[results[tr]["test"][te]["f1"] for te in names] for tr in names])
    return results, f1


def run(config, collection, runner: CellRunner) -> StudyResult:
    names = list(config.params.datasets)
    seeds = config.seeds
    runs = [_one_seed(names, config.train_for(s), runner) for s in seeds]
    matrices = [f1 for _, f1 in runs]
    per_rows, per_summary = [], []
    for results, f1 in runs:
        rows = []
        for tr in names:
            for te in names:
                rows.append({"train": tr, "test": te, **figures_row(results[tr]["test"][te]),
                             "best_step": results[tr]["best_step"]})
        same, other = same_vs_other(f1)
        per_rows.append(rows)
        per_summary.append([{"test": te, "same_f1": float(s), "mean_other_f1": float(o), "gap": float(s - o)}
                            for te, s, o in zip(names, same, other)])
    f1 = np.mean(matrices, axis=0)
    sd = np.std(matrices, axis=0)
    summary = combine(per_summary, keys=("test",), spread_cols=("same_f1", "mean_other_f1", "gap"))
    same = np.array([r["same_f1"] for r in summary])
    other = np.array([r["mean_other_f1"] for r in summary])
    res = StudyResult(TITLE, PAPER)
    res.tables = {"f1_matrix": [{"train \\ test": tr, **{te: float(f1[i, j]) for j, te in enumerate(names)}}
                                for i, tr in enumerate(names)],
                  "cross_dataset": combine(per_rows, keys=("train", "test"), spread_cols=("f1",)),
                  "same_vs_other": summary}
    res.table_notes = {"f1_matrix": "Rows: the data set a model was trained on; columns: the test set.",
                       "same_vs_other": "Per test set: F1 of the model trained on it, and the mean F1 of the "
                                        "models trained on the other data sets."}
    if len(seeds) > 1:
        res.tables["f1_matrix_sd"] = [{"train \\ test": tr, **{te: float(sd[i, j]) for j, te in enumerate(names)}}
                                      for i, tr in enumerate(names)]
        res.tables["cross_dataset_per_seed"] = per_seed_rows(seeds, per_rows)
        res.table_notes["f1_matrix"] += " " + seeds_note(seeds)
        res.table_notes["f1_matrix_sd"] = "Population standard deviation of each F1 over the seeds."
        for name in ("cross_dataset", "same_vs_other"):
            res.table_notes[name] = (res.table_notes.get(name, "") + " " + seeds_note(seeds)).strip()
    steps_text = f"{config.steps} steps each" + (f", mean of {len(seeds)} seeds" if len(seeds) > 1 else "")
    own_spread = None
    if len(seeds) > 1:
        own_spread = {"own model": [[r["same_f1_min"], r["same_f1_max"]] for r in summary],
                      "mean of the others": [[r["mean_other_f1_min"], r["mean_other_f1_max"]] for r in summary]}
    heat = {"matrix": f1.tolist(), "rows": names, "cols": names, "xlabel": "test set", "ylabel": "trained on"}
    lines = {"x": names, "series": {"own model": same.tolist(), "mean of the others": other.tolist()},
             "xlabel": "test set", "ylabel": "F1"}
    if len(seeds) > 1:
        heat["sd"] = sd.tolist()
        lines["spread"] = own_spread
    res.figures = [
        Figure("f1_matrix", "heatmap", heat,
               f"Test F1, train (rows) x test (columns), {steps_text}" + (" (± sd)" if len(seeds) > 1 else "")),
        Figure("same_vs_other", "lines", lines,
               "Own model vs mean of the other models, per test set"
               + (" (bars: range over the seeds)" if len(seeds) > 1 else "")),
    ]
    wins = int(np.sum(same > other))
    gap = float(np.mean(same - other))
    per_seed_gap = [float(np.mean([r["gap"] for r in t])) for t in per_summary]
    gap_noise = noise(per_seed_gap)
    best_off = np.where(~np.eye(len(names), dtype=bool), f1, -np.inf)
    i, j = np.unravel_index(int(np.argmax(best_off)), f1.shape)
    verdict_ = verdict(wins > len(names) / 2 and gap > 0, gap, gap_noise)
    res.findings = [
        f"On {wins} of {len(names)} test sets the model trained on that data set scores higher than the mean "
        f"of the others (mean own F1 {same.mean():.3f}, mean other F1 {other.mean():.3f}, mean gap {gap:+.3f}); "
        f"this {verdict_} the paper's finding that models transfer imperfectly across data sets.",
        f"The best transfer is {names[i]} -> {names[j]} (F1 {f1[i, j]:.3f}, against {f1[j, j]:.3f} for "
        f"{names[j]}'s own model).",
    ]
    if len(seeds) > 1:
        g = spread(per_seed_gap)
        noisy = [r["test"] for k, r in enumerate(summary)
                 if within_noise(r["gap"], noise([t[k]["gap"] for t in per_summary]))]
        res.findings.append(
            f"Over {len(seeds)} seeds the mean gap ranges {g['min']:+.3f} to {g['max']:+.3f} (sd {g['sd']:.3f}); "
            + (f"the gap is within the noise (smaller than its seed-to-seed range) on {', '.join(noisy)}."
               if noisy else "on every test set the gap is larger than its seed-to-seed range."))
    res.cells = res.headline = [r for results, _ in runs for r in results.values()]
    return res
