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

Headline comparison (trained for every seed of the configuration): the
fine-tuned and from-scratch curves of ``iterations``, with the base model of
each seed (the fine-tuning of seed s starts from the base trained with seed
s). ``fraction``, ``snapshots`` and ``freeze`` are trained for the first seed
only, or for every seed with ``"all_seeds": true``. With several seeds the
tables give the mean and spread (:mod:`.seeds`) and a difference smaller than
the seeds' range is called within the noise.

**Fine-tuning regime.** ``finetune_train`` overrides training options of the
fine-tuning cells only (the base and the from-scratch cells keep the
configuration's ``train``): Xing et al. fine-tune with SGD (momentum 0.9) at a
lower learning rate than training from scratch, e.g.
``"finetune_train": {"optimizer": "sgd", "lr": 0.001}`` beside an Adam ``train``.
With ``both_regimes``, the ``iterations`` part also fine-tunes with the
configuration's own ``train`` options (column ``finetune_as_scratch_f1``), so
one configuration compares both regimes; that curve is the very training an
Adam-only configuration runs (same run folder when the two share ``--runs``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..train.config import TrainConfig
from .cells import Cell, CellRunner, TrainSet, figures_row, scratch_cell, validation_steps
from .report import Figure, StudyResult
from .seeds import combine, noise, per_seed_rows, seeds_note, spread, verdict, within_noise

__all__ = ["Params", "run", "TITLE"]

TITLE = "Fine-tuning a base model on a target data set (Xing et al. 2019, Fig. 5)"
PAPER = ("Xing et al. (Fig. 5) fine-tune a model trained on one data set to another; as we read the paper, "
         "fine-tuning reaches a given F1 in fewer iterations than training from scratch (row 1), helps most when "
         "little target data is available (row 2), works from base models taken at various training iterations "
         "(row 3), and tolerates freezing the first blocks while freezing most of the network hurts (row 4).")
PARTS = ("iterations", "fraction", "snapshots", "freeze")
#: Training options ``finetune_train`` may not set: the experiment, the architecture and the parts own them.
FIXED_FOR_FINETUNING = ("mpp", "steps", "seed", "init", "val_radius_um", "model", "model_kwargs", "freeze_blocks")


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
    finetune_train : dict
        Training options (:class:`~nucleikit.train.config.TrainConfig` fields) of the
        fine-tuning cells only, e.g. ``{"optimizer": "sgd", "lr": 0.001}``; empty: as ``train``.
    both_regimes : bool
        ``iterations``: also fine-tune with the configuration's own ``train`` options.
    """

    source: str
    target: str
    parts: tuple[str, ...] = PARTS
    finetune_steps: int | None = None
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    snapshot_every: int | None = None
    freeze: tuple[int, ...] = (0, 2, 4, 6, 8)
    finetune_train: dict = field(default_factory=dict)
    both_regimes: bool = False

    def check(self) -> None:
        from .config import check_train_options

        fixed = set(FIXED_FOR_FINETUNING) & set(self.finetune_train)
        if fixed:
            raise ConfigError(f"study: finetune_train may not set {', '.join(sorted(fixed))}")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(self.finetune_train) - known
        if unknown:
            raise ConfigError(f"study: finetune_train: unknown training option(s) {', '.join(sorted(unknown))}")
        if "augment" in self.finetune_train:
            raise ConfigError("study: finetune_train may not set augment (the fine-tuning data are the target's)")
        check_train_options(self.finetune_train, "study: finetune_train")
        if self.both_regimes and not self.finetune_train:
            raise ConfigError("study: both_regimes needs a finetune_train regime to compare with")
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


def regime_tag(options: dict) -> str:
    """A run-folder label suffix naming a fine-tuning regime (``"-sgd-lr0.001"``; empty for none)."""
    if not options:
        return ""
    parts = [str(options["optimizer"])] if "optimizer" in options else []
    parts += [f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in sorted(options.items())
              if k != "optimizer" and isinstance(v, (int, float, str))]
    return "-" + "-".join(parts) if parts else "-regime"


def finetune_config(cfg: TrainConfig, options: dict) -> TrainConfig:
    """``cfg`` with the ``finetune_train`` options applied (``cfg`` itself when there are none)."""
    if not options:
        return cfg
    values = dict(options)
    for key in ("xi_grid", "min_distance_grid"):
        if key in values:
            values[key] = tuple(values[key])
    return dataclasses.replace(cfg, **values)


def _regime_text(options: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items())


def _one_seed(p: Params, cfg: TrainConfig, parts: tuple, runner: CellRunner) -> dict:
    """Every asked part for one seed: per-part rows, the cells trained, the headline cells."""
    ft_cfg = dataclasses.replace(cfg, steps=p.finetune_steps or cfg.steps)
    tune_cfg = finetune_config(ft_cfg, p.finetune_train)
    tag = regime_tag(p.finetune_train)
    tests = [p.target]
    out: dict = {"tables": {}, "cells": [], "headline": []}
    base = scratch_cell(p.source, cfg)
    base_result = runner.run(base, tests)
    out["base_f1"] = base_result["test"][p.target]["f1"]
    out["cells"].append(base_result)
    out["headline"].append(base_result)
    out["tables"]["base"] = [{"model": f"base ({p.source}, no fine-tuning)", "steps": base_result["steps"],
                              **figures_row(base_result["test"][p.target])}]
    out["ft_steps"] = ft_cfg.steps

    if "iterations" in parts:
        stages = validation_steps(ft_cfg.steps, ft_cfg.val_every)
        scratch = runner.run_staged(scratch_cell(p.target, ft_cfg, stages=stages), tests)
        tuned = runner.run_staged(_finetune(p.target, tune_cfg, base, label=f"ft-{p.source}-{p.target}{tag}",
                                            stages=stages), tests)
        rows = [{"steps": s, "scratch_f1": a["test"][p.target]["f1"], "finetune_f1": b["test"][p.target]["f1"]}
                for s, a, b in zip(stages, scratch, tuned)]
        table = [{"steps": 0, "scratch_f1": None, "finetune_f1": out["base_f1"]}] + rows
        new = [scratch[-1], tuned[-1]]
        if p.both_regimes:
            plain = runner.run_staged(_finetune(p.target, ft_cfg, base, label=f"ft-{p.source}-{p.target}",
                                                stages=stages), tests)
            table[0]["finetune_as_scratch_f1"] = out["base_f1"]
            for row, c in zip(table[1:], plain):
                row["finetune_as_scratch_f1"] = c["test"][p.target]["f1"]
            new.append(plain[-1])
        out["tables"]["vs_iterations"] = table
        out["stages"] = stages
        out["cells"] += new
        out["headline"] += new

    if "fraction" in parts:
        rows = []
        for f in p.fractions:
            a = runner.run(scratch_cell(p.target, ft_cfg, fraction=f), tests)
            b = runner.run(_finetune(p.target, tune_cfg, base, label=f"ft-{p.source}-{p.target}-{f:g}{tag}",
                                     fraction=f), tests)
            rows.append({"fraction": f, "scratch_f1": a["test"][p.target]["f1"],
                         "finetune_f1": b["test"][p.target]["f1"]})
            out["cells"] += [a, b]
        out["tables"]["vs_fraction"] = rows

    if "snapshots" in parts:
        every = p.snapshot_every or cfg.val_every
        snap_steps = tuple(range(every, cfg.steps, every)) + (cfg.steps,)
        staged_base = Cell(f"snapshots-{p.source}", base.train, base.validation, cfg, stages=snap_steps,
                           snapshots=True)
        runner.run_staged(staged_base, ())
        rows = []
        for s in snap_steps:
            r = runner.run(_finetune(p.target, tune_cfg, staged_base, label=f"ft-{p.source}@{s}-{p.target}{tag}",
                                     init_file=f"snapshot_{s}.safetensors"), tests)
            rows.append({"base_steps": s, "finetune_f1": r["test"][p.target]["f1"]})
            out["cells"].append(r)
        out["tables"]["vs_snapshot"] = rows

    if "freeze" in parts:
        rows = []
        for k in p.freeze:
            r = runner.run(_finetune(p.target, tune_cfg, base, label=f"ft-{p.source}-{p.target}-freeze{k}{tag}",
                                     freeze=k), tests)
            rows.append({"frozen_blocks": k, **figures_row(r["test"][p.target])})
            out["cells"].append(r)
        out["tables"]["vs_frozen_blocks"] = rows
    return out


#: Per table: the columns that identify a row, and those that get a spread.
_TABLES = {
    "base": (("model", "steps"), ("f1",)),
    "vs_iterations": (("steps",), ("scratch_f1", "finetune_f1", "finetune_as_scratch_f1")),
    "vs_fraction": (("fraction",), ("scratch_f1", "finetune_f1")),
    "vs_snapshot": (("base_steps",), ("finetune_f1",)),
    "vs_frozen_blocks": (("frozen_blocks",), ("f1",)),
}


def _bars(rows: list[dict], col: str) -> list | None:
    """Error bars (the seeds' range) of a column, or None for one seed."""
    if not rows or f"{col}_min" not in rows[0]:
        return None
    return [None if r.get(f"{col}_min") is None else [r[f"{col}_min"], r[f"{col}_max"]] for r in rows]


def _series_spread(rows: list[dict], cols: dict) -> dict:
    bars = {label: _bars(rows, col) for label, col in cols.items()}
    return {"spread": {k: v for k, v in bars.items() if v}} if any(bars.values()) else {}


def run(config, collection, runner: CellRunner) -> StudyResult:
    p: Params = config.params
    seeds = config.seeds
    headline_parts = tuple(x for x in p.parts if x == "iterations")
    per_seed = []
    for i, seed in enumerate(seeds):
        parts = p.parts if (i == 0 or config.all_seeds) else headline_parts
        per_seed.append(_one_seed(p, config.train_for(seed), parts, runner))
    ft_steps = per_seed[0]["ft_steps"]
    res = StudyResult(TITLE, PAPER)
    regime = (f" Fine-tuning regime: {_regime_text(p.finetune_train)} (the base and from-scratch trainings keep "
              "the configuration's train options).") if p.finetune_train else ""
    _combine_tables(res, seeds, per_seed)
    if "iterations" in p.parts:
        _report_iterations(res, p, per_seed, regime, n_seeds=len(seeds))
    if "fraction" in p.parts:
        _report_fraction(res, p, per_seed, regime, ft_steps)
    if "snapshots" in p.parts:
        _report_snapshots(res, p, per_seed, ft_steps)
    if "freeze" in p.parts:
        _report_freeze(res, p, per_seed, regime)
    res.cells = [c for o in per_seed for c in o["cells"]]
    res.headline = [c for o in per_seed for c in o["headline"]]
    return res


def _combine_tables(res: StudyResult, seeds: Sequence[int], per_seed: list[dict]) -> None:
    """Each table of the first seed, combined over the seeds that have it (mean, spread, per-seed rows)."""
    for name in per_seed[0]["tables"]:
        keys, spread_cols = _TABLES[name]
        runs = [o["tables"][name] for o in per_seed if name in o["tables"]]
        used = [s for s, o in zip(seeds, per_seed) if name in o["tables"]]
        res.tables[name] = combine(runs, keys=keys, spread_cols=spread_cols)
        note = seeds_note(used)
        if note:
            res.table_notes[name] = note
            res.tables[f"{name}_per_seed"] = per_seed_rows(used, runs)


def _curves(per_seed: list[dict], name: str, col: str) -> list[list]:
    """Column ``col`` of table ``name``, one curve per seed that has the table."""
    return [[r[col] for r in o["tables"][name]] for o in per_seed if name in o["tables"]]


def _note(res: StudyResult, name: str, text: str) -> None:
    """Put ``text`` before the note of table ``name`` (the seeds' note, if any)."""
    res.table_notes[name] = (text + (" " + res.table_notes[name] if name in res.table_notes else "")).strip()


def _report_iterations(res: StudyResult, p: Params, per_seed: list[dict], regime: str, n_seeds: int) -> None:
    """Part ``iterations``: fine-tuning vs training from scratch against steps (note, figure, finding)."""
    base_f1 = res.tables["base"][0]["f1"]
    table = res.tables["vs_iterations"]
    rows = table[1:]
    stages = per_seed[0]["stages"]
    multi = sum("vs_iterations" in o["tables"] for o in per_seed) > 1
    _note(res, "vs_iterations",
          f"Test F1 on {p.target}; each point uses the weights, xi and peak distance chosen on validation among "
          "the validations up to that step (step 0: the base model, not fine-tuned)." + regime)
    series = {"fine-tuned": [r["finetune_f1"] for r in table],
              "from scratch": [None] + [r["scratch_f1"] for r in rows]}
    cols = {"fine-tuned": "finetune_f1", "from scratch": "scratch_f1"}
    if p.both_regimes:
        series["fine-tuned (train options)"] = [r["finetune_as_scratch_f1"] for r in table]
        cols["fine-tuned (train options)"] = "finetune_as_scratch_f1"
    res.figures.append(Figure(
        "vs_iterations", "lines",
        {"x": [0, *stages], "series": series, "xlabel": "training iterations on the target",
         "ylabel": f"test F1 ({p.target})", **_series_spread(table, cols)},
        f"Fine-tuning {p.source} -> {p.target} vs training from scratch"
        + (f" ({n_seeds} seeds, bars: range)" if multi else "")))
    first_r, last = rows[0], rows[-1]
    ahead = sum(r["finetune_f1"] > r["scratch_f1"] for r in rows)
    diffs = [r["finetune_f1"] - r["scratch_f1"] for r in rows]
    ft, sc = _curves(per_seed, "vs_iterations", "finetune_f1"), _curves(per_seed, "vs_iterations", "scratch_f1")
    per_seed_mean = [sum(a - b for a, b in zip(f[1:], c[1:])) / len(rows) for f, c in zip(ft, sc)]
    mean_diff = sum(diffs) / len(diffs)
    text = (f"Iterations: after {first_r['steps']} steps fine-tuning reaches F1 {first_r['finetune_f1']:.3f} "
            f"against {first_r['scratch_f1']:.3f} from scratch, after {last['steps']} steps "
            f"{last['finetune_f1']:.3f} against {last['scratch_f1']:.3f}; fine-tuning is ahead at {ahead} of "
            f"{len(rows)} points, which {verdict(ahead > len(rows) / 2, mean_diff, noise(per_seed_mean))} the "
            f"paper's faster convergence of fine-tuning (the base model alone scores {base_f1:.3f}).")
    if multi:
        within = sum(within_noise(d, noise([f[k + 1] for f in ft], [c[k + 1] for c in sc]))
                     for k, d in enumerate(diffs))
        text += (f" Over {len(ft)} seeds the difference is within the noise (smaller than the larger "
                 f"seed-to-seed range of the two curves at that step) at {within} of {len(rows)} points.")
    if p.finetune_train:
        text += f" Fine-tuning regime: {_regime_text(p.finetune_train)}."
    if p.both_regimes:
        other = last["finetune_as_scratch_f1"]
        text += (f" With the train options instead, fine-tuning reaches {other:.3f} after {last['steps']} steps "
                 f"({last['finetune_f1'] - other:+.3f} for the fine-tuning regime).")
    res.findings.append(text)


def _report_fraction(res: StudyResult, p: Params, per_seed: list[dict], regime: str, ft_steps: int) -> None:
    """Part ``fraction``: fine-tuning vs scratch by share of the target training data."""
    rows = res.tables["vs_fraction"]
    _note(res, "vs_fraction", "Share of the target training data: the central window of that share of "
                              f"each training image's area; {ft_steps} steps each." + regime)
    res.figures.append(Figure(
        "vs_fraction", "lines",
        {"x": [int(round(100 * r["fraction"])) for r in rows],
         "series": {"fine-tuned": [r["finetune_f1"] for r in rows], "from scratch": [r["scratch_f1"] for r in rows]},
         "xlabel": "% of the target training data", "ylabel": f"test F1 ({p.target})",
         **_series_spread(rows, {"fine-tuned": "finetune_f1", "from scratch": "scratch_f1"})},
        f"Fine-tuning vs scratch by share of {p.target} training data, {ft_steps} steps"))
    gaps = [r["finetune_f1"] - r["scratch_f1"] for r in rows]
    small, large = gaps[0], gaps[-1]
    ft, sc = _curves(per_seed, "vs_fraction", "finetune_f1"), _curves(per_seed, "vs_fraction", "scratch_f1")
    text = (f"Fraction: with {100 * rows[0]['fraction']:g}% of the target data fine-tuning is {small:+.3f} F1 "
            "from scratch")
    if len(rows) > 1:
        per = [(f[0] - c[0]) - (f[-1] - c[-1]) for f, c in zip(ft, sc)]
        v = verdict(small > 0 and small >= large, small - large, noise(per))
        text += (f", with {100 * rows[-1]['fraction']:g}% {large:+.3f}; this {v} the paper's finding "
                 "that fine-tuning matters most when target data are scarce.")
    res.findings.append(text + ("" if len(rows) > 1 else "."))


def _report_snapshots(res: StudyResult, p: Params, per_seed: list[dict], ft_steps: int) -> None:
    """Part ``snapshots``: fine-tuning from snapshots of the base model."""
    rows = res.tables["vs_snapshot"]
    res.figures.append(Figure(
        "vs_snapshot", "lines",
        {"x": [r["base_steps"] for r in rows], "series": {"fine-tuned": [r["finetune_f1"] for r in rows]},
         "xlabel": f"iterations of the base model on {p.source}", "ylabel": f"test F1 ({p.target})",
         **_series_spread(rows, {"fine-tuned": "finetune_f1"})},
        f"Fine-tuning ({ft_steps} steps) from base snapshots"))
    f1s = [r["finetune_f1"] for r in rows]
    text = (f"Snapshots: fine-tuning from base snapshots at {', '.join(str(r['base_steps']) for r in rows)} "
            f"steps gives F1 {', '.join(f'{v:.3f}' for v in f1s)} (spread {max(f1s) - min(f1s):.3f})")
    runs = _curves(per_seed, "vs_snapshot", "finetune_f1")
    if len(runs) > 1:
        n = noise(*[[r[k] for r in runs] for k in range(len(rows))])
        text += (f"; the seeds' largest range at one snapshot is {n:.3f}, so the differences between snapshots "
                 f"are {'within the noise' if max(f1s) - min(f1s) < n else 'larger than the noise'}")
    res.findings.append(text + ".")


def _report_freeze(res: StudyResult, p: Params, per_seed: list[dict], regime: str) -> None:
    """Part ``freeze``: fine-tuning with the first k blocks frozen."""
    rows = res.tables["vs_frozen_blocks"]
    if regime:
        _note(res, "vs_frozen_blocks", regime.strip())
    res.figures.append(Figure(
        "vs_frozen_blocks", "lines",
        {"x": [r["frozen_blocks"] for r in rows], "series": {"fine-tuned": [r["f1"] for r in rows]},
         "xlabel": "first k blocks frozen", "ylabel": f"test F1 ({p.target})",
         **_series_spread(rows, {"fine-tuned": "f1"})},
        f"Fine-tuning {p.source} -> {p.target} with frozen blocks"))
    f1s = [r["f1"] for r in rows]
    k_best = rows[max(range(len(f1s)), key=lambda i: f1s[i])]["frozen_blocks"]
    text = f"Freezing: best F1 {max(f1s):.3f} with {k_best} frozen blocks"
    if len(rows) > 1:
        change = f1s[-1] - f1s[0]
        runs = _curves(per_seed, "vs_frozen_blocks", "f1")
        v = verdict(change < 0, change, noise([r[-1] - r[0] for r in runs]))
        text += (f"; freezing {rows[-1]['frozen_blocks']} instead of {rows[0]['frozen_blocks']} blocks changes "
                 f"F1 by {change:+.3f}, which {v} the paper's loss when most of the network is frozen")
    res.findings.append(text + ".")
