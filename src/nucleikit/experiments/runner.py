"""Run one configured study end to end: check, train the cells, write the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .cells import CellRunner
from .config import ExperimentConfig, prepare
from .plateau import plateau_rows
from .registry import STUDIES
from .report import write_report

__all__ = ["run_experiment"]


def run_experiment(config: ExperimentConfig, out: str | Path, *, runs_dir: str | Path | None = None,
                   progress: bool = False, log: Callable[[str], None] = print, command: str | None = None) -> Path:
    """Run ``config``'s study into ``out``; returns the path of ``report.md``.

    The data sets are loaded and checked (:func:`~nucleikit.experiments.config.prepare`)
    before the first training. Trainings live in ``runs_dir`` (default
    ``out/runs``); finished ones are skipped, so running again resumes, and
    studies given the same ``runs_dir`` share identical trainings. ``command``
    is the command line quoted in the report (default: rebuilt from the
    arguments).
    """
    t0 = time.perf_counter()
    collection = prepare(config)
    out = Path(out)
    runs = Path(runs_dir) if runs_dir is not None else out / "runs"
    runner = CellRunner(collection, runs, progress=progress, log=log)
    result = STUDIES[config.experiment].run(config, collection, runner)
    result.plateau = plateau_rows(runs, result.headline or result.cells)
    if command is None:
        command = (f"nucleikit experiment {config.experiment} --config {config.source or 'CONFIG.json'} -o {out}"
                   + (f" --runs {runs_dir}" if runs_dir is not None else ""))
    stats = {"trained": runner.trained, "skipped": runner.skipped, "wall_time_s": time.perf_counter() - t0,
             "command": command, "runs_dir": str(runs)}
    return write_report(out, config, collection, result, stats=stats)
