"""Auxiliary data (Xing et al. 2019, Figs. 6-8): mix other data sets into the target's training.

* ``fractions``: the target's training images plus a share (1-50%) of the
  pooled auxiliary training images (:mod:`.subsets`), all with loss weight 1;
  0% is the target alone.
* ``gammas``: the weighted loss ``L = gamma * L_target + L_aux`` with the
  auxiliary share ``gamma_fraction`` (the loop's per-set weights), with the
  precision-recall curve of each over xi on the target's test images.

Headline comparison (trained for every seed of the configuration): the target
alone (0%) against the best share, and gamma 1 against the best gamma, "best"
as chosen by the first seed's full sweep. The other shares and gammas are
trained for the first seed only, or for every seed with ``"all_seeds": true``;
a row's ``seeds`` column (several seeds only) says how many seeds it averages.
A difference smaller than the seeds' range is called within the noise. The
precision-recall curves are the first seed's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .cells import Cell, CellRunner, TrainSet, figures_row, scratch_cell
from .report import Figure, StudyResult
from .seeds import combine, noise, per_seed_rows, seeds_note, verdict

__all__ = ["Params", "run", "TITLE"]

TITLE = "Auxiliary data and the gamma-weighted loss (Xing et al. 2019, Figs. 6-8)"
PAPER = ("Xing et al. add pooled data of other data sets to a target's training data (Fig. 6) and weight the "
         "target's loss by gamma against the auxiliary loss (Figs. 7-8, with precision-recall curves over xi); "
         "their abstract states that training on a mixture of target and other data does not always give a "
         "higher accuracy and may need proper data manipulation, such as weighting the target's loss more "
         "(gamma > 1) than the auxiliary data's.")


@dataclass(frozen=True)
class Params:
    """Options of the auxiliary-data study.

    Attributes
    ----------
    target : str
    auxiliary : tuple of str
        Data sets pooled as auxiliary training data (training images only).
    fractions : tuple of float
        Shares of the pooled auxiliary data in (0, 1] (0 = the target alone is always run).
    gammas : tuple of float
        Target loss weights (auxiliary weight 1).
    gamma_fraction : float
        Auxiliary share used in the gamma runs.
    """

    target: str
    auxiliary: tuple[str, ...]
    fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5)
    gammas: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
    gamma_fraction: float = 0.5

    def check(self) -> None:
        if not self.auxiliary:
            raise ConfigError("study: auxiliary needs at least one auxiliary dataset")
        if self.target in self.auxiliary:
            raise ConfigError("study: the target cannot be one of its auxiliary datasets")
        if any(not 0 < f <= 1 for f in (*self.fractions, self.gamma_fraction)):
            raise ConfigError("study: auxiliary fractions must be in (0, 1]")
        if any(g <= 0 for g in self.gammas):
            raise ConfigError(f"study: gammas must be positive, got {list(self.gammas)}")

    def needs(self) -> dict[str, tuple[str, ...]]:
        return {self.target: ("train", "validation", "test"), **{a: ("train",) for a in self.auxiliary}}


def _mixed(p: Params, cfg, fraction: float, gamma: float) -> Cell:
    sets = (TrainSet(p.target, 1.0, gamma),) + tuple(TrainSet(a, fraction, 1.0) for a in p.auxiliary)
    return Cell(f"aux-{p.target}-{fraction:g}-g{gamma:g}", sets, p.target, cfg)


_FIGURES = ("precision", "recall", "f1", "ed", "mean_image_f1")


def _sweep(p: Params, cfg, runner: CellRunner, fractions, gammas) -> dict:
    """One seed: the target alone, the mixes of ``fractions`` (gamma 1) and the ``gammas`` runs.

    Returns rows (None figures for entries not trained), cell results and the PR curves.
    """
    tests = [p.target]
    alone = runner.run(scratch_cell(p.target, cfg), tests)
    rows = [{"aux_percent": 0.0, **figures_row(alone["test"][p.target])}]
    cells = [alone]
    for f in p.fractions:
        if f in fractions:
            r = runner.run(_mixed(p, cfg, f, 1.0), tests)
            rows.append({"aux_percent": 100 * f, **figures_row(r["test"][p.target])})
            cells.append(r)
        else:
            rows.append({"aux_percent": 100 * f, **dict.fromkeys(_FIGURES)})
    g_rows, curves = [], {"target alone": alone["test"][p.target]["pr_curve"]}
    for g in p.gammas:
        if g in gammas:
            r = runner.run(_mixed(p, cfg, p.gamma_fraction, g), tests)
            g_rows.append({"gamma": g, **figures_row(r["test"][p.target])})
            curves[f"gamma {g:g}"] = r["test"][p.target]["pr_curve"]
            cells.append(r)
        else:
            g_rows.append({"gamma": g, **dict.fromkeys(_FIGURES)})
    return {"rows": rows, "g_rows": g_rows, "curves": curves, "cells": cells}


def _table(runs: list[list[dict]], seeds, key: str) -> list[dict]:
    table = combine(runs, keys=(key,), spread_cols=("f1",))
    if len(runs) > 1:
        for i, row in enumerate(table):
            row["seeds"] = sum(r[i]["f1"] is not None for r in runs)
    return table


def _per_seed(seeds, runs: list[list[dict]]) -> list[dict]:
    return [r for r in per_seed_rows(seeds, runs) if r["f1"] is not None]


def run(config, collection, runner: CellRunner) -> StudyResult:
    p: Params = config.params
    cfg = config.train
    seeds = config.seeds
    res = StudyResult(TITLE, PAPER)
    first = _sweep(p, cfg, runner, p.fractions, p.gammas)
    best_f = max(range(1, len(first["rows"])), key=lambda i: first["rows"][i]["f1"])
    best_g = max(range(len(first["g_rows"])), key=lambda i: first["g_rows"][i]["f1"])
    head_fractions = {p.fractions[best_f - 1]}
    head_gammas = {p.gammas[best_g]} | ({1.0} & set(p.gammas))
    sweeps = [first]
    for seed in seeds[1:]:
        every = config.all_seeds
        sweeps.append(_sweep(p, config.train_for(seed), runner, p.fractions if every else head_fractions,
                             p.gammas if every else head_gammas))
    rows = _table([s["rows"] for s in sweeps], seeds, "aux_percent")
    g_rows = _table([s["g_rows"] for s in sweeps], seeds, "gamma")
    curves = first["curves"]
    res.tables["vs_aux_fraction"] = rows
    res.table_notes["vs_aux_fraction"] = (f"Target {p.target} plus the given share of the pooled auxiliary data "
                                          f"({', '.join(p.auxiliary)}), equal loss weights.")
    res.tables["vs_gamma"] = g_rows
    res.table_notes["vs_gamma"] = f"L = gamma * L_target + L_aux with {100 * p.gamma_fraction:g}% auxiliary data."
    if len(seeds) > 1:
        for name in ("vs_aux_fraction", "vs_gamma"):
            res.table_notes[name] += " " + seeds_note(seeds) + " `seeds`: how many seeds the row averages."
        res.tables["vs_aux_fraction_per_seed"] = _per_seed(seeds, [s["rows"] for s in sweeps])
        res.tables["vs_gamma_per_seed"] = _per_seed(seeds, [s["g_rows"] for s in sweeps])

    def bars(table):
        if len(seeds) < 2:
            return {}
        return {"spread": {"F1": [None if r["f1_min"] is None else [r["f1_min"], r["f1_max"]] for r in table]}}

    res.figures = [
        Figure("vs_aux_fraction", "lines",
               {"x": [r["aux_percent"] for r in rows], "series": {"F1": [r["f1"] for r in rows]},
                "xlabel": "% of pooled auxiliary data added", "ylabel": f"test F1 ({p.target})", **bars(rows)},
               f"{p.target} + auxiliary data, {cfg.steps} steps"),
        Figure("vs_gamma", "lines",
               {"x": [r["gamma"] for r in g_rows], "series": {"F1": [r["f1"] for r in g_rows]},
                "xlabel": "gamma (target loss weight)", "ylabel": f"test F1 ({p.target})", **bars(g_rows)},
               "gamma-weighted loss"),
        Figure("pr_gamma", "pr", {"curves": curves}, f"Precision-recall over xi on {p.target} test images"
               + (f" (seed {seeds[0]})" if len(seeds) > 1 else "")),
    ]

    def values(key: str, i: int) -> list:
        return [s[key][i]["f1"] for s in sweeps]

    best = rows[best_f]
    diff = best["f1"] - rows[0]["f1"]
    helps = diff > 0
    g_best = g_rows[best_g]
    i_one = next((i for i, r in enumerate(g_rows) if r["gamma"] == 1.0), None)
    g_one = None if i_one is None else g_rows[i_one]
    g_noise = None if i_one is None else noise(values("g_rows", best_g), values("g_rows", i_one))
    g_diff = None if g_one is None else g_best["f1"] - g_one["f1"]
    chosen = f" (chosen on seed {seeds[0]})" if len(seeds) > 1 else ""
    v = verdict(helps, diff, noise(values("rows", 0), values("rows", best_f)))
    res.findings = [
        f"Auxiliary share: the target alone scores F1 {rows[0]['f1']:.3f}; the best mix{chosen} is "
        f"{best['aux_percent']:g}% auxiliary data with {best['f1']:.3f} ({diff:+.3f}); "
        f"auxiliary data {'help' if helps else 'do not help'} here, which "
        f"{v} the paper.",
        f"Gamma: the best gamma{chosen} is {g_best['gamma']:g} (F1 {g_best['f1']:.3f})"
        + (f", against {g_one['f1']:.3f} at gamma 1" if g_one else "")
        + f"; {verdict(g_best['gamma'] > 1, g_diff, g_noise)} the paper's preference for weighting the target "
          "more.",
    ]
    res.cells = [c for s in sweeps for c in s["cells"]]
    res.headline = [c for s in sweeps for c in s["cells"]
                    if c["label"] in {first["cells"][0]["label"], _mixed(p, cfg, p.fractions[best_f - 1], 1.0).label}
                    | {_mixed(p, cfg, p.gamma_fraction, g).label for g in head_gammas}]
    return res
