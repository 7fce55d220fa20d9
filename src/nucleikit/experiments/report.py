"""What a study writes: raw figures (CSV, JSON), plots (PNG) and a Markdown report.

A study returns a :class:`StudyResult` of plain data — tables (lists of row
dicts), figures described as data (:class:`Figure`), and findings: sentences
the study builds from its measured numbers, set beside its reading of the
paper. :func:`write_report` renders it into ``OUTDIR``::

    results.json         configuration, data sets, every table, every cell result
    <table>.csv          one file per table
    figures/<name>.png   Matplotlib (Agg backend; nothing global is changed)
    report.md            setup, budget, seed, data sets, tables, figures, findings
"""

from __future__ import annotations

import csv
import io
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..export import atomic_path, atomic_write

__all__ = ["Figure", "StudyResult", "write_report", "PLOTTERS", "mean_std"]


@dataclass(frozen=True)
class Figure:
    """A plot described as data.

    Attributes
    ----------
    name : str
        File stem (``figures/<name>.png``).
    kind : str
        A key of :data:`PLOTTERS`.
    data : dict
        ``heatmap``: ``{"matrix", "rows", "cols", "xlabel", "ylabel", "sd"?}`` (``sd``: a
        matrix of standard deviations over seeds, written under each value);
        ``lines``: ``{"x", "series": {label: [y...]}, "xlabel", "ylabel", "xticks"?, "spread"?}``
        (``spread``: per label, ``[low, high]`` or None per point, drawn as error bars: the
        seeds' range around their mean);
        ``pr``: ``{"curves": {label: {"precision": [...], "recall": [...]}}}``.
    caption : str
    """

    name: str
    kind: str
    data: dict
    caption: str


@dataclass
class StudyResult:
    """A study's measured output (see the module docstring)."""

    title: str
    paper: str
    tables: dict = field(default_factory=dict)
    table_notes: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    cells: list = field(default_factory=list)
    #: Cell results of the headline comparison (every seed); their plateau goes in the report.
    headline: list = field(default_factory=list)
    #: :func:`~nucleikit.experiments.plateau.plateau_rows` of the headline trainings (set by the runner).
    plateau: list = field(default_factory=list)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (NaN for no values)."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())


# --- plots ---------------------------------------------------------------------------


def _heatmap(ax, data: dict) -> None:
    m = np.asarray(data["matrix"], float)
    sd = np.asarray(data["sd"], float) if data.get("sd") is not None else None
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(data["cols"])), data["cols"], rotation=45, ha="right")
    ax.set_yticks(range(len(data["rows"])), data["rows"])
    for (i, j), v in np.ndenumerate(m):
        if np.isfinite(v):
            text = f"{v:.2f}" if sd is None else f"{v:.2f}\n±{sd[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", color="white" if v < 0.6 else "black",
                    fontsize=8 if sd is None else 7)
    ax.set_xlabel(data.get("xlabel", ""))
    ax.set_ylabel(data.get("ylabel", ""))
    ax.figure.colorbar(im, ax=ax, label="F1")


def _lines(ax, data: dict) -> None:
    xs = data["x"]
    numeric = all(isinstance(x, (int, float)) for x in xs)
    pos = xs if numeric else list(range(len(xs)))
    spreads = data.get("spread") or {}
    for label, ys in data["series"].items():
        y = np.array([np.nan if v is None else v for v in ys], float)
        lines = ax.plot(pos[: len(ys)], y, marker="o", label=label)
        bars = spreads.get(label)
        if bars:
            lo = np.array([np.nan if b is None else b[0] for b in bars], float)
            hi = np.array([np.nan if b is None else b[1] for b in bars], float)
            ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
            xs_ok = np.asarray(pos[: len(ys)], float)[ok]
            ax.errorbar(xs_ok, y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="none", capsize=3,
                        ecolor=lines[0].get_color(), alpha=0.8)
    if not numeric:
        ax.set_xticks(pos, [str(x) for x in xs])
    ax.set_xlabel(data.get("xlabel", ""))
    ax.set_ylabel(data.get("ylabel", "F1"))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _pr(ax, data: dict) -> None:
    for label, c in data["curves"].items():
        ax.plot(c["recall"], c["precision"], marker=".", label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


#: kind -> draw(ax, data)
PLOTTERS: dict[str, Callable[[Any, dict], None]] = {"heatmap": _heatmap, "lines": _lines, "pr": _pr}


def _save_figure(path: Path, fig: Figure) -> None:
    from matplotlib.figure import Figure as MplFigure  # no pyplot: no global state

    mfig = MplFigure(figsize=(5.5, 4.5), dpi=110)
    ax = mfig.add_subplot()
    PLOTTERS[fig.kind](ax, fig.data)
    ax.set_title(fig.caption, fontsize=9, wrap=True)
    mfig.tight_layout()
    with atomic_path(path) as tmp:
        mfig.savefig(tmp, format="png")


# --- tables -----------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    with atomic_write(path) as f:
        f.write(buf.getvalue())


# --- the report --------------------------------------------------------------------


def write_report(out: Path, config: Any, collection: Any, result: StudyResult, *, stats: dict) -> Path:
    """Write every output of a study into ``out``; returns the report's path.

    Parameters
    ----------
    out : Path
    config : ExperimentConfig
    collection : Collection
    result : StudyResult
    stats : dict
        ``trained``/``skipped`` cell folders and ``wall_time_s`` of this invocation.
    """
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, rows in result.tables.items():
        _write_csv(out / f"{name}.csv", rows)
    for fig in result.figures:
        _save_figure(out / "figures" / f"{fig.name}.png", fig)
    if result.plateau:
        _write_csv(out / "plateau.csv", result.plateau)
    raw = {"config": config.to_dict(), "datasets": collection.describe(), "tables": result.tables,
           "findings": result.findings, "cells": result.cells, "stats": stats}
    if result.plateau:
        raw["plateau"] = result.plateau
    with atomic_write(out / "results.json") as f:
        json.dump(raw, f, indent=1, default=str)

    cfg = config.train
    unique = {c.get("key"): c for c in result.cells}  # a cell may feed several tables
    lines = [f"# {result.title}", ""]
    if config.comment:
        lines += [config.comment, ""]
    lines += [
        "## Setup",
        "",
        f"- Experiment `{config.experiment}`, configuration `{config.source or '(in memory)'}`; "
        + (f"seed **{config.seed}**." if len(config.seeds) < 2 else
           f"seeds **{', '.join(map(str, config.seeds))}** for the headline comparison (mean and spread over "
           f"them; a difference smaller than the seeds' range is called within the noise), "
           f"{'every seed' if config.all_seeds else f'seed {config.seed} only'} for the other parts."),
        f"- Budget: **{config.steps} steps** per training (study options may set others: see below), "
        f"batch {cfg.batch_size or 'recipe'} crops of {cfg.crop or 'recipe'} px, model `{cfg.model}` "
        f"{json.dumps(cfg.model_kwargs) if cfg.model_kwargs else ''}, optimiser {cfg.optimizer or 'recipe'} "
        f"lr {cfg.lr or 'recipe'}, lambda {cfg.lam}, validation every {cfg.val_every} steps, bf16 autocast {cfg.bf16} "
        f"(training and test inference), "
        f"{cfg.threads} thread(s).",
        f"- Common resolution **{collection.mpp} um/px**: every image is resampled to it for training and "
        "inference; predictions and truth are matched in pixels of the common resolution with the test data "
        "set's radius in microns (PROTOCOL.md: CRCHisto 3.3 um = 6 px at 0.55 um/px, 4 um otherwise), which "
        "pairs exactly as matching in each image's own pixels would.",
        "- Best step, xi and peak distance chosen on each training's validation images; test images scored once "
        "per model. P, R, F1 pooled over the test images; ED = mean distance of matched pairs in pixels at the "
        "common resolution.",
        f"- Machine: {platform.machine()}, {platform.system()}; this invocation trained "
        f"{len(stats.get('trained', []))} cell(s), skipped {len(stats.get('skipped', []))} finished one(s), "
        f"in {stats.get('wall_time_s', 0.0) / 60:.1f} min; the loop recorded "
        f"{sum(c.get('wall_time_s', 0.0) for c in unique.values()) / 60:.1f} min of training over the "
        f"{len(unique)} training(s) reported.",
        f"- Study options: `{json.dumps(config.to_dict()['study'], default=str)}`",
        "",
        "This budget is far below the paper's training: the figures below are labelled with it and say what it "
        "shows, not what a full training would.",
        "",
        "## Data sets",
        "",
        _markdown_table(collection.describe()),
    ]
    if result.plateau:
        tol = 0.01
        reached = sum(r["plateaued"] == "yes" for r in result.plateau)
        logged = sum(r["plateaued"] is not None for r in result.plateau)
        lines += ["## Budget and plateau", "",
                  f"Each headline training's budget beside its plateau step: the first validation after which "
                  f"validation F1 stays within {tol:g} of the run's best (`python -m nucleikit.experiments.plateau "
                  f"RUNDIR/log.jsonl`). {reached} of {logged} logged training(s) reached a plateau within "
                  "their budget; 'no' means the best was at the end and more steps might still help.", "",
                  _markdown_table(result.plateau), "Raw: `plateau.csv`.", ""]
    for name, rows in result.tables.items():
        lines += [f"## {name.replace('_', ' ')}", ""]
        if name in result.table_notes:
            lines += [result.table_notes[name], ""]
        lines += [_markdown_table(rows), f"Raw: `{name}.csv`.", ""]
    if result.figures:
        lines += ["## Figures", ""]
        for fig in result.figures:
            lines += [f"![{fig.caption}](figures/{fig.name}.png)", "", f"*{fig.caption}*", ""]
    lines += ["## Compared with the paper", "", f"Paper: {result.paper}", ""]
    lines += [f"- {f}" for f in result.findings] + [""]
    notes = list(result.notes) + collection.notes()
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Reproduce", "", "```bash",
              stats.get("command") or f"nucleikit experiment {config.experiment} --config {config.source} -o {out}",
              "```", "", "Running the same command again skips finished trainings and resumes an interrupted one.", ""]
    path = out / "report.md"
    with atomic_write(path) as f:
        f.write("\n".join(lines))
    return path
