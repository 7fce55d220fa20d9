"""When to stop a run early: validation has stopped improving.

A run's validation scores (higher is better, one per validation round, in step
order) have *improved* at a round when its score beats every earlier score by at
least ``min_delta``; the first round always counts as one. A run has plateaued
when ``patience`` rounds have passed since the last improvement. ``min_delta``
sets what counts as a real gain: a validation F1 over a few thousand nuclei moves
by about ±0.01 between rounds by noise alone, so a new best by 0.001 is not one.

The rule reads only the score history, which the training log keeps, so a run
resumed from its checkpoint takes the same decision it would have taken without
the interruption.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError

__all__ = ["rounds_since_improvement", "plateaued", "scores_from_log", "check_stopping", "stop_reason",
           "stopped_reason"]


def check_stopping(patience, min_delta) -> None:
    """Refuse stopping options a training configuration cannot use (``ConfigError``, one line)."""
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"stop_patience must be a whole number >= 1 or null, got {patience!r}")
    if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not 0 <= min_delta < 1:
        raise ConfigError(f"stop_min_delta must be a number in [0, 1), got {min_delta!r}")


def rounds_since_improvement(scores: Sequence[float], min_delta: float) -> int:
    """Validation rounds after the last one that improved on all before it by ``min_delta``.

    Parameters
    ----------
    scores : sequence of float
        Validation scores in step order (higher is better).
    min_delta : float
        Smallest gain over the best earlier score that counts (>= 0).

    Returns
    -------
    int
        0 when the last round improved (or there is at most one round).

    Examples
    --------
    >>> rounds_since_improvement([0.70, 0.80, 0.801, 0.79], min_delta=0.005)
    2
    >>> rounds_since_improvement([0.70, 0.80, 0.801, 0.79], min_delta=0.0)
    1
    """
    last, best = 0, None
    for i, s in enumerate(scores):
        if best is None or s >= best + min_delta and s > best:
            last = i
        best = s if best is None else max(best, s)
    return max(len(scores) - 1 - last, 0)


def plateaued(scores: Sequence[float], patience: int | None, min_delta: float) -> bool:
    """True when ``patience`` rounds have passed without an improvement of ``min_delta`` (None: never)."""
    if patience is None or not scores:
        return False
    return rounds_since_improvement(scores, min_delta) >= patience


def scores_from_log(path: str | Path, up_to_step: int) -> list[float]:
    """Validation scores of a run's ``log.jsonl`` up to ``up_to_step``, in step order.

    A record logged again for the same step (a run killed between logging and
    checkpointing validates that step again after resuming) counts once: the last
    one. Records without a ``score`` are skipped; a missing log gives [].
    """
    path = Path(path)
    if not path.is_file():
        return []
    by_step: dict[int, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(record, dict) and "score" in record and int(record.get("step", -1)) <= up_to_step:
            by_step[int(record["step"])] = float(record["score"])
    return [by_step[s] for s in sorted(by_step)]


def stop_reason(patience: int, min_delta: float) -> str:
    """What the log's last record of a run stopped early says (its ``stopped`` value)."""
    return f"plateau: {patience} validations without a gain of {min_delta:g}"


def stopped_reason(path: str | Path) -> str | None:
    """The ``stopped`` value of a ``log.jsonl``'s last record: why the loop ended the run early, or None."""
    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        record = json.loads(lines[-1]) if lines else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    reason = record.get("stopped") if isinstance(record, dict) else None
    return str(reason) if reason else None
