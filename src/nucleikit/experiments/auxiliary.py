"""Auxiliary data (Xing et al. 2019, Figs. 6-8): mix other data sets into the target's training.

* ``fractions``: the target's training images plus a share (1-50%) of the
  pooled auxiliary training images (:mod:`.subsets`), all with loss weight 1;
  0% is the target alone.
* ``gammas``: the weighted loss ``L = gamma * L_target + L_aux`` with the
  auxiliary share ``gamma_fraction`` (the loop's per-set weights), with the
  precision-recall curve of each over xi on the target's test images.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .cells import Cell, CellRunner, TrainSet, figures_row, scratch_cell
from .report import Figure, StudyResult

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


def run(config, collection, runner: CellRunner) -> StudyResult:
    p: Params = config.params
    cfg = config.train
    tests = [p.target]
    res = StudyResult(TITLE, PAPER)
    alone = runner.run(scratch_cell(p.target, cfg), tests)
    rows = [{"aux_percent": 0.0, **figures_row(alone["test"][p.target])}]
    cells = [alone]
    for f in p.fractions:
        r = runner.run(_mixed(p, cfg, f, 1.0), tests)
        rows.append({"aux_percent": 100 * f, **figures_row(r["test"][p.target])})
        cells.append(r)
    res.tables["vs_aux_fraction"] = rows
    res.table_notes["vs_aux_fraction"] = (f"Target {p.target} plus the given share of the pooled auxiliary data "
                                          f"({', '.join(p.auxiliary)}), equal loss weights.")
    g_rows, curves = [], {"target alone": alone["test"][p.target]["pr_curve"]}
    for g in p.gammas:
        r = runner.run(_mixed(p, cfg, p.gamma_fraction, g), tests)
        g_rows.append({"gamma": g, **figures_row(r["test"][p.target])})
        curves[f"gamma {g:g}"] = r["test"][p.target]["pr_curve"]
        cells.append(r)
    res.tables["vs_gamma"] = g_rows
    res.table_notes["vs_gamma"] = f"L = gamma * L_target + L_aux with {100 * p.gamma_fraction:g}% auxiliary data."
    res.figures = [
        Figure("vs_aux_fraction", "lines",
               {"x": [r["aux_percent"] for r in rows], "series": {"F1": [r["f1"] for r in rows]},
                "xlabel": "% of pooled auxiliary data added", "ylabel": f"test F1 ({p.target})"},
               f"{p.target} + auxiliary data, {cfg.steps} steps"),
        Figure("vs_gamma", "lines",
               {"x": [r["gamma"] for r in g_rows], "series": {"F1": [r["f1"] for r in g_rows]},
                "xlabel": "gamma (target loss weight)", "ylabel": f"test F1 ({p.target})"},
               "gamma-weighted loss"),
        Figure("pr_gamma", "pr", {"curves": curves}, f"Precision-recall over xi on {p.target} test images"),
    ]
    best = max(rows[1:], key=lambda r: r["f1"])
    helps = best["f1"] > rows[0]["f1"]
    g_best = max(g_rows, key=lambda r: r["f1"])
    g_one = next((r for r in g_rows if r["gamma"] == 1.0), None)
    res.findings = [
        f"Auxiliary share: the target alone scores F1 {rows[0]['f1']:.3f}; the best mix is "
        f"{best['aux_percent']:g}% auxiliary data with {best['f1']:.3f} ({best['f1'] - rows[0]['f1']:+.3f}); "
        f"auxiliary data {'help' if helps else 'do not help'} here, which "
        f"{'agrees with' if helps else 'does not agree with'} the paper.",
        f"Gamma: the best gamma is {g_best['gamma']:g} (F1 {g_best['f1']:.3f})"
        + (f", against {g_one['f1']:.3f} at gamma 1" if g_one else "")
        + f"; {'agrees with' if g_best['gamma'] > 1 else 'does not agree with'} the paper's preference for "
          "weighting the target more.",
    ]
    res.cells = cells
    return res
