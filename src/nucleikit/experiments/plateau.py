"""How many steps a training needed: the plateau of its validation F1, read from ``log.jsonl``.

The training loop writes one JSON object per validation to ``RUNDIR/log.jsonl``
(``step``, ``val_f1``, ...). The **plateau step** of a run is the first
validation step after which the validation F1 stays within ``tol`` (0.01 by
default) of the run's best for the rest of the run. The run *reached* its
plateau only if at least one later validation confirms it (plateau step
before the last validation): a run whose best is its last validation had not
plateaued, and its budget was too short to tell how many steps it needs.

``python -m nucleikit.experiments.plateau RUNDIR/log.jsonl ...`` prints one
line per log; the studies put the plateau of each headline training in their
report next to the budget (:func:`plateau_rows`). A run the training loop
stopped early (``stop_patience``, :mod:`nucleikit.train.stopping`: its last
record says ``stopped``) counts as plateaued by that rule too.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["Plateau", "read_history", "plateau", "plateau_of_log", "stopped_early", "plateau_rows", "main"]

#: Default tolerance on validation F1.
TOLERANCE = 0.01


@dataclass(frozen=True)
class Plateau:
    """The plateau of one run (see the module docstring).

    Attributes
    ----------
    step : int
        First validation step after which F1 stays within ``tol`` of the best.
    best_f1, best_step : float, int
        The best validation F1 and its (first) step.
    last_step : int
        The last validation step.
    validations : int
    reached : bool
        ``step < last_step``: a later validation confirms the plateau.
    tol : float
    """

    step: int
    best_f1: float
    best_step: int
    last_step: int
    validations: int
    reached: bool
    tol: float = TOLERANCE


def read_history(path: str | Path) -> list[tuple[int, float]]:
    """(step, validation F1) pairs of a ``log.jsonl``, in step order.

    Lines without ``val_f1`` are skipped; a step logged twice (a run resumed
    from an earlier checkpoint) keeps its last record.
    """
    by_step: dict[int, float] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("val_f1") is not None and "step" in rec:
            by_step[int(rec["step"])] = float(rec["val_f1"])
    return sorted(by_step.items())


def plateau(history: Sequence[tuple[int, float]], tol: float = TOLERANCE) -> Plateau:
    """The plateau of a (step, F1) history (see the module docstring).

    Raises
    ------
    ValueError
        For an empty history or a negative tolerance.
    """
    if not history:
        raise ValueError("no validations in the history")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    steps = [int(s) for s, _ in history]
    f1 = [float(v) for _, v in history]
    best = max(f1)
    best_step = steps[f1.index(best)]
    i = len(f1) - 1
    while i > 0 and f1[i - 1] >= best - tol:
        i -= 1
    return Plateau(step=steps[i], best_f1=best, best_step=best_step, last_step=steps[-1],
                   validations=len(steps), reached=steps[i] < steps[-1], tol=tol)


def plateau_of_log(path: str | Path, tol: float = TOLERANCE) -> Plateau | None:
    """:func:`plateau` of a log file; None if the file is missing or holds no validation."""
    try:
        history = read_history(path)
    except FileNotFoundError:
        return None
    return plateau(history, tol) if history else None


def stopped_early(path: str | Path) -> bool:
    """Whether the training loop ended the run of this ``log.jsonl`` at a plateau (its last record says so)."""
    from ..train.stopping import stopped_reason

    return stopped_reason(path) is not None


def plateau_rows(runs_dir: str | Path, results: Iterable[dict]) -> list[dict]:
    """One row per distinct training: its budget and the plateau of its ``log.jsonl``.

    Parameters
    ----------
    runs_dir : path
        Where the cells' folders (``<label>-<key>``) are.
    results : iterable of dict
        Cell results (:meth:`~nucleikit.experiments.cells.CellRunner.run`);
        each gives ``label``, ``key``, ``steps`` and its seed in ``cell.config``.

    Returns
    -------
    list of dict
        ``training``, ``seed``, ``steps`` (its budget), ``best_step``,
        ``plateau_step``, ``plateaued`` ("yes"/"no"; None without a log; "yes"
        for a run stopped early at its plateau), ``stopped_early`` and ``best_val_f1``.
    """
    rows, seen = [], set()
    for r in results:
        key = r.get("key")
        if key in seen:
            continue
        seen.add(key)
        log = Path(runs_dir) / f"{r['label']}-{key}" / "log.jsonl"
        p = plateau_of_log(log)
        stopped = p is not None and stopped_early(log)
        rows.append({
            "training": r["label"], "seed": r.get("cell", {}).get("config", {}).get("seed"), "steps": r["steps"],
            "best_step": p.best_step if p else r.get("best_step"),
            "plateau_step": p.step if p else None,
            "plateaued": None if p is None else ("yes" if p.reached or stopped else "no"),
            "stopped_early": stopped,
            "best_val_f1": p.best_f1 if p else None,
        })
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nucleikit.experiments.plateau", description=__doc__.split("\n")[0])
    ap.add_argument("logs", nargs="+", help="log.jsonl files of training runs")
    ap.add_argument("--tol", type=float, default=TOLERANCE, help="tolerance on validation F1 (default 0.01)")
    ap.add_argument("--json", action="store_true", help="one JSON object per log")
    args = ap.parse_args(argv)
    status = 0
    for path in args.logs:
        p = plateau_of_log(path, args.tol)
        if p is None:
            print(f"{path}: no validations", file=sys.stderr)
            status = 2
            continue
        if args.json:
            print(json.dumps({"log": str(path), **asdict(p)}))
        else:
            state = "plateaued" if p.reached else "NOT plateaued (best at the end)"
            print(f"{path}: {state}: within {p.tol:g} of the best F1 {p.best_f1:.3f} from step {p.step} "
                  f"(best at {p.best_step}, last validation {p.last_step}, {p.validations} validations)")
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
