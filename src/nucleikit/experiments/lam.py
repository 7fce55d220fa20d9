"""The background weight lambda of the weighted MSE (Xing et al. 2019, Fig. 9).

Xing's loss is ``1/2 mean((y + lambda * mean(y)) (o - y)^2)``: lambda = 0
weights pixels by the target alone (background pixels count nothing), large
lambda approaches a plain MSE. One model per (data set, lambda).

Headline comparison: every lambda (each trained for every seed of the
configuration). With several seeds the tables give the mean and spread over
the seeds (:mod:`.seeds`), and differences between lambdas smaller than the
seeds' range are called within the noise. The precision-recall curves are the
first seed's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError
from .cells import CellRunner, figures_row, scratch_cell
from .report import Figure, StudyResult, mean_std
from .seeds import combine, noise, per_seed_rows, seeds_note

__all__ = ["Params", "run", "TITLE"]

TITLE = "Effect of lambda in the weighted MSE (Xing et al. 2019, Fig. 9)"
PAPER = ("Xing et al. vary lambda over 0, 0.005, 0.05, 0.5, 5 and 50 (Fig. 9); as we read the paper, the "
         "detector is fairly robust to lambda over a wide middle range, and they use lambda = 5.")


@dataclass(frozen=True)
class Params:
    """Options of the lambda study.

    Attributes
    ----------
    datasets : tuple of str
        Each is trained and tested on itself.
    lams : tuple of float
    """

    datasets: tuple[str, ...]
    lams: tuple[float, ...] = (0.0, 0.005, 0.05, 0.5, 5.0, 50.0)

    def check(self) -> None:
        if not self.datasets or not self.lams:
            raise ConfigError("study: lambda needs datasets and lams")
        if any(v < 0 for v in self.lams):
            raise ConfigError(f"study: lams must be >= 0, got {list(self.lams)}")

    def needs(self) -> dict[str, tuple[str, ...]]:
        return {d: ("train", "validation", "test") for d in self.datasets}


def _one_seed(p: Params, base, runner: CellRunner) -> dict:
    rows, cells, f1, curves = [], [], {}, {}
    for d in p.datasets:
        for lam in p.lams:
            cfg = dataclasses.replace(base, lam=lam)
            r = runner.run(scratch_cell(d, cfg), [d])
            rows.append({"dataset": d, "lambda": lam, **figures_row(r["test"][d])})
            f1.setdefault(d, []).append(r["test"][d]["f1"])
            if d == p.datasets[0]:
                curves[f"lambda {lam:g}"] = r["test"][d]["pr_curve"]
            cells.append(r)
    summary = []
    for i, lam in enumerate(p.lams):
        m, s = mean_std([f1[d][i] for d in p.datasets])
        summary.append({"lambda": lam, "f1_mean": m, "f1_std": s})
    return {"rows": rows, "cells": cells, "f1": f1, "curves": curves, "summary": summary}


def run(config, collection, runner: CellRunner) -> StudyResult:
    p: Params = config.params
    seeds = config.seeds
    runs = [_one_seed(p, config.train_for(s), runner) for s in seeds]
    res = StudyResult(TITLE, PAPER)
    rows = combine([r["rows"] for r in runs], keys=("dataset", "lambda"), spread_cols=("f1",))
    summary = combine([r["summary"] for r in runs], keys=("lambda",), spread_cols=("f1_mean",))
    f1 = {d: [r["f1"] for r in rows if r["dataset"] == d] for d in p.datasets}
    res.tables = {"vs_lambda": rows, "vs_lambda_summary": summary}
    res.table_notes = {"vs_lambda_summary": "Mean and standard deviation of test F1 over the data sets."}
    figure = {"x": [f"{v:g}" for v in p.lams], "series": f1, "xlabel": "lambda", "ylabel": "test F1"}
    if len(seeds) > 1:
        res.tables["vs_lambda_per_seed"] = per_seed_rows(seeds, [r["rows"] for r in runs])
        res.table_notes["vs_lambda"] = seeds_note(seeds)
        res.table_notes["vs_lambda_summary"] = (
            "Per seed, the mean and standard deviation of test F1 over the data sets; then "
            + seeds_note(seeds) + " (`f1_mean_sd` etc.: spread over the seeds of the mean over the data sets).")
        figure["spread"] = {d: [[r["f1_min"], r["f1_max"]] for r in rows if r["dataset"] == d] for d in p.datasets}
    res.figures = [
        Figure("vs_lambda", "lines", figure,
               f"Test F1 against lambda, {config.steps} steps per model"
               + (f" (mean of {len(seeds)} seeds, bars: range)" if len(seeds) > 1 else "")),
        Figure("pr_lambda", "pr", {"curves": runs[0]["curves"]}, f"Precision-recall over xi, {p.datasets[0]}"),
    ]
    means = [r["f1_mean"] for r in summary]
    best = summary[max(range(len(means)), key=lambda i: means[i])]
    spread = max(means) - min(means)
    mid = [r["f1_mean"] for r in summary if 0 < r["lambda"] < 50]
    mid_spread = (max(mid) - min(mid)) if mid else float("nan")
    text = (f"The best lambda is {best['lambda']:g} (mean F1 {best['f1_mean']:.3f}); F1 varies by {spread:.3f} over "
            f"all lambdas and by {mid_spread:.3f} between 0 and 50 exclusive, which "
            f"{'agrees with' if mid_spread <= 0.05 else 'does not agree with'} the paper's robustness over a middle "
            "range (taken here as a spread of at most 0.05).")
    if len(seeds) > 1:
        n = noise(*[[r["summary"][i]["f1_mean"] for r in runs] for i in range(len(p.lams))])
        text += (f" The seeds' largest range of the mean F1 at one lambda is {n:.3f}: the differences between "
                 + ("lambdas are within the noise." if spread < n else
                    ("lambdas over the whole range exceed the noise"
                     + (", those within the middle range do not." if mid and mid_spread < n else "."))))
    res.findings = [text]
    res.cells = res.headline = [c for r in runs for c in r["cells"]]
    return res
