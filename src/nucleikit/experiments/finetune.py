"""Fine-tuning a base model on a target data set (Xing et al. 2019, Fig. 5, rows 1-4).

The base model is trained from scratch on ``source`` (the same cell as the
cross-dataset study's, so both studies written into one OUTDIR share it).
Parts (``parts``), each scored on the target's test images:

``iterations``  test F1 of fine-tuning and of training from scratch against
                iterations (every validation step; each point uses the
                weights and xi chosen on validation up to that step); the
                base model itself is the fine-tuning curve's point at 0.
``fraction``    fine-tuning vs scratch with 10-100% of the target training
                data (:mod:`.subsets`: central windows of each image).
``snapshots``   fine-tuning from snapshots of the base model taken every
                ``snapshot_every`` steps.
``freeze``      fine-tuning with the first k blocks frozen (MicroNet numbers
                its blocks 1..10 from input to output).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError
from .cells import Cell, CellRunner, TrainSet, figures_row, scratch_cell, validation_steps
from .report import Figure, StudyResult

__all__ = ["Params", "run", "TITLE"]

TITLE = "Fine-tuning a base model on a target data set (Xing et al. 2019, Fig. 5)"
PAPER = ("Xing et al. (Fig. 5) fine-tune a model trained on one data set to another; as we read the paper, "
         "fine-tuning reaches a given F1 in fewer iterations than training from scratch (row 1), helps most when "
         "little target data is available (row 2), works from base models taken at various training iterations "
         "(row 3), and tolerates freezing the first blocks while freezing most of the network hurts (row 4).")
PARTS = ("iterations", "fraction", "snapshots", "freeze")


@dataclass(frozen=True)
class Params:
    """Options of the fine-tuning study.

    Attributes
    ----------
    source, target : str
        Base data set and target data set.
    parts : tuple of str
        Which of :data:`PARTS` to run.
    finetune_steps : int or None
        Steps of every fine-tuning and target-from-scratch training (None: the budget).
    fractions : tuple of float
        Shares of the target training data (0, 1].
    snapshot_every : int or None
        Steps between base snapshots (None: the validation interval).
    freeze : tuple of int
        Numbers k of frozen first blocks.
    """

    source: str
    target: str
    parts: tuple[str, ...] = PARTS
    finetune_steps: int | None = None
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    snapshot_every: int | None = None
    freeze: tuple[int, ...] = (0, 2, 4, 6, 8)

    def check(self) -> None:
        bad = set(self.parts) - set(PARTS)
        if bad or not self.parts:
            raise ConfigError(f"study: parts must be among {PARTS}, got {list(self.parts)}")
        if self.source == self.target:
            raise ConfigError("study: source and target must be different datasets")
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ConfigError(f"study: fractions must be in (0, 1], got {list(self.fractions)}")
        if any(k < 0 or k > 10 for k in self.freeze):
            raise ConfigError(f"study: freeze must be block counts 0-10, got {list(self.freeze)}")
        for name in ("finetune_steps", "snapshot_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"study: {name} must be at least 1, got {v}")

    def needs(self) -> dict[str, tuple[str, ...]]:
        return {self.source: ("train", "validation"), self.target: ("train", "validation", "test")}

    def rescale(self, steps: int) -> "Params":
        """``--steps N``: every training gets N steps; snapshots at the validation steps."""
        return dataclasses.replace(self, finetune_steps=None, snapshot_every=None)


def _finetune(target: str, cfg, base: Cell, *, label: str, init_file: str = "best.safetensors",
              fraction: float = 1.0, freeze: int = 0, stages: tuple = ()) -> Cell:
    cfg = dataclasses.replace(cfg, freeze_blocks=freeze, model_kwargs={})  # the architecture comes from the base
    return Cell(label, (TrainSet(target, fraction),), target, cfg, init=base, init_file=init_file, stages=stages)


def run(config, collection, runner: CellRunner) -> StudyResult:
    p: Params = config.params
    base_cfg = config.train
    ft_cfg = dataclasses.replace(base_cfg, steps=p.finetune_steps or base_cfg.steps)
    tests = [p.target]
    res = StudyResult(TITLE, PAPER)
    base = scratch_cell(p.source, base_cfg)
    base_result = runner.run(base, tests)
    base_f1 = base_result["test"][p.target]["f1"]
    cells = [base_result]
    res.tables["base"] = [{"model": f"base ({p.source}, no fine-tuning)", "steps": base_result["steps"],
                           **figures_row(base_result["test"][p.target])}]

    if "iterations" in p.parts:
        stages = validation_steps(ft_cfg.steps, ft_cfg.val_every)
        scratch = runner.run_staged(scratch_cell(p.target, ft_cfg, stages=stages), tests)
        tuned = runner.run_staged(_finetune(p.target, ft_cfg, base, label=f"ft-{p.source}-{p.target}",
                                            stages=stages), tests)
        rows = [{"steps": s, "scratch_f1": a["test"][p.target]["f1"], "finetune_f1": b["test"][p.target]["f1"]}
                for s, a, b in zip(stages, scratch, tuned)]
        res.tables["vs_iterations"] = [{"steps": 0, "scratch_f1": None, "finetune_f1": base_f1}] + rows
        res.table_notes["vs_iterations"] = (
            f"Test F1 on {p.target}; each point uses the weights, xi and peak distance chosen on validation among "
            "the validations up to that step (step 0: the base model, not fine-tuned).")
        res.figures.append(Figure(
            "vs_iterations", "lines",
            {"x": [0, *stages], "series": {"fine-tuned": [base_f1] + [r["finetune_f1"] for r in rows],
                                           "from scratch": [None] + [r["scratch_f1"] for r in rows]},
             "xlabel": "training iterations on the target", "ylabel": f"test F1 ({p.target})"},
            f"Fine-tuning {p.source} -> {p.target} vs training from scratch"))
        first, last = rows[0], rows[-1]
        ahead = sum(r["finetune_f1"] > r["scratch_f1"] for r in rows)
        verdict = "agrees with" if ahead > len(rows) / 2 else "does not agree with"
        res.findings.append(
            f"Iterations: after {first['steps']} steps fine-tuning reaches F1 {first['finetune_f1']:.3f} against "
            f"{first['scratch_f1']:.3f} from scratch, after {last['steps']} steps {last['finetune_f1']:.3f} against "
            f"{last['scratch_f1']:.3f}; fine-tuning is ahead at {ahead} of {len(rows)} points, which {verdict} "
            f"the paper's faster convergence of fine-tuning (the base model alone scores {base_f1:.3f}).")
        cells += [scratch[-1], tuned[-1]]

    if "fraction" in p.parts:
        rows = []
        for f in p.fractions:
            a = runner.run(scratch_cell(p.target, ft_cfg, fraction=f), tests)
            b = runner.run(_finetune(p.target, ft_cfg, base, label=f"ft-{p.source}-{p.target}-{f:g}",
                                     fraction=f), tests)
            rows.append({"fraction": f, "scratch_f1": a["test"][p.target]["f1"],
                         "finetune_f1": b["test"][p.target]["f1"]})
            cells += [a, b]
        res.tables["vs_fraction"] = rows
        res.table_notes["vs_fraction"] = ("Share of the target training data: the central window of that share of "
                                          f"each training image's area; {ft_cfg.steps} steps each.")
        res.figures.append(Figure(
            "vs_fraction", "lines",
            {"x": [int(round(100 * r["fraction"])) for r in rows],
             "series": {"fine-tuned": [r["finetune_f1"] for r in rows], "from scratch": [r["scratch_f1"] for r in rows]},
             "xlabel": "% of the target training data", "ylabel": f"test F1 ({p.target})"},
            f"Fine-tuning vs scratch by share of {p.target} training data, {ft_cfg.steps} steps"))
        gaps = [r["finetune_f1"] - r["scratch_f1"] for r in rows]
        small, large = gaps[0], gaps[-1]
        text = (f"Fraction: with {100 * rows[0]['fraction']:g}% of the target data fine-tuning is {small:+.3f} F1 "
                "from scratch")
        if len(rows) > 1:
            verdict = "agrees with" if small > 0 and small >= large else "does not agree with"
            text += (f", with {100 * rows[-1]['fraction']:g}% {large:+.3f}; this {verdict} the paper's finding "
                     "that fine-tuning matters most when target data are scarce.")
        res.findings.append(text + ("" if len(rows) > 1 else "."))

    if "snapshots" in p.parts:
        every = p.snapshot_every or base_cfg.val_every
        snap_steps = tuple(range(every, base_cfg.steps, every)) + (base_cfg.steps,)
        staged_base = Cell(f"snapshots-{p.source}", base.train, base.validation, base_cfg, stages=snap_steps,
                           snapshots=True)
        runner.run_staged(staged_base, ())
        rows = []
        for s in snap_steps:
            r = runner.run(_finetune(p.target, ft_cfg, staged_base, label=f"ft-{p.source}@{s}-{p.target}",
                                     init_file=f"snapshot_{s}.safetensors"), tests)
            rows.append({"base_steps": s, "finetune_f1": r["test"][p.target]["f1"]})
            cells.append(r)
        res.tables["vs_snapshot"] = rows
        res.figures.append(Figure(
            "vs_snapshot", "lines",
            {"x": [r["base_steps"] for r in rows], "series": {"fine-tuned": [r["finetune_f1"] for r in rows]},
             "xlabel": f"iterations of the base model on {p.source}", "ylabel": f"test F1 ({p.target})"},
            f"Fine-tuning ({ft_cfg.steps} steps) from base snapshots"))
        f1s = [r["finetune_f1"] for r in rows]
        res.findings.append(
            f"Snapshots: fine-tuning from base snapshots at {', '.join(str(r['base_steps']) for r in rows)} steps "
            f"gives F1 {', '.join(f'{v:.3f}' for v in f1s)} (spread {max(f1s) - min(f1s):.3f}).")

    if "freeze" in p.parts:
        rows = []
        for k in p.freeze:
            r = runner.run(_finetune(p.target, ft_cfg, base, label=f"ft-{p.source}-{p.target}-freeze{k}",
                                     freeze=k), tests)
            rows.append({"frozen_blocks": k, **figures_row(r["test"][p.target])})
            cells.append(r)
        res.tables["vs_frozen_blocks"] = rows
        res.figures.append(Figure(
            "vs_frozen_blocks", "lines",
            {"x": [r["frozen_blocks"] for r in rows], "series": {"fine-tuned": [r["f1"] for r in rows]},
             "xlabel": "first k blocks frozen", "ylabel": f"test F1 ({p.target})"},
            f"Fine-tuning {p.source} -> {p.target} with frozen blocks"))
        f1s = [r["f1"] for r in rows]
        k_best = rows[max(range(len(f1s)), key=lambda i: f1s[i])]["frozen_blocks"]
        text = f"Freezing: best F1 {max(f1s):.3f} with {k_best} frozen blocks"
        if len(rows) > 1:
            change = f1s[-1] - f1s[0]
            verdict = "agrees with" if change < 0 else "does not agree with"
            text += (f"; freezing {rows[-1]['frozen_blocks']} instead of {rows[0]['frozen_blocks']} blocks changes "
                     f"F1 by {change:+.3f}, which {verdict} the paper's loss when most of the network is frozen")
        res.findings.append(text + ".")
    res.cells = cells
    return res
