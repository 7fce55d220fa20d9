"""Run one configured study end to end: check, train the cells, write the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .cells import CellRunner
from .config import ExperimentConfig, prepare
from .registry import STUDIES
from .report import write_report

__all__ = ["run_experiment"]


def run_experiment(config: ExperimentConfig, out: str | Path, *, progress: bool = False,
                   log: Callable[[str], None] = print) -> Path:
    """Run ``config``'s study into ``out``; returns the path of ``report.md``.

    The data sets are loaded and checked (:func:`~nucleikit.experiments.config.prepare`)
    before the first training. Trainings live in ``out/runs/``; finished ones
    are skipped, so running again resumes.
    """
    t0 = time.perf_counter()
    collection = prepare(config)
    out = Path(out)
    runner = CellRunner(collection, out / "runs", progress=progress, log=log)
    result = STUDIES[config.experiment].run(config, collection, runner)
    stats = {"trained": runner.trained, "skipped": runner.skipped, "wall_time_s": time.perf_counter() - t0}
    return write_report(out, config, collection, result, stats=stats)
