"""Batch bookkeeping for the CLI: go on past bad files, list failures at the end."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NucleikitError
from . import verbosity

#: ``mpp_source`` of an input whose file records no pixel size: the model's own was assumed.
ASSUMED = "model"


@dataclass
class BatchReport:
    """Collects per-file outcomes and prints a summary.

    ``with report.item(path): ...`` turns a :class:`NucleikitError` raised for
    that file into a recorded failure (one line on stderr) and lets the batch
    continue; other exceptions are bugs and propagate.

    The resolution each input was processed at (``ok(..., mpp=, mpp_source=)``)
    and the precision its network ran in, with the reason (``precision=``, a
    :class:`~nucleikit.infer.precision.Precision` or a dict of them by role),
    are written beside the outputs, in ``OUTDIR/<command>_run.json``, and the
    summary says once which inputs had none in their file and what was assumed.

    How much it prints follows ``--quiet``/``--verbose`` (:mod:`nucleikit.cli.verbosity`):
    the per-file lines are left out when quiet; verbose adds a line as each input starts.
    """

    command: str
    done: list[tuple[str, str, float, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    resolutions: dict[str, dict] = field(default_factory=dict)

    def ok(self, item, summary: str, *, seconds: float = 0.0, detail: str = "",
           mpp: float | None = None, mpp_source: str | None = None, precision: Any = None) -> None:
        self.done.append((str(item), summary, seconds, detail))
        self.record(item, mpp=mpp, mpp_source=mpp_source, precision=precision)
        extra = f", {detail}" if detail else ""
        verbosity.say(f"{item}: {summary} ({seconds:.2f} s{extra})")

    def record(self, item, *, mpp: float | None = None, mpp_source: str | None = None, precision: Any = None) -> None:
        """Note what ``item`` was processed with, for the run record (nothing when nothing is known)."""
        entry: dict[str, Any] = {}
        if mpp_source is not None:
            entry.update(mpp=_finite_or_none(mpp), mpp_source=mpp_source)
        if precision is not None:
            entry["precision"] = _precision_record(precision)
        if entry:
            self.resolutions[str(item)] = entry

    def fail(self, item, reason: str) -> None:
        self.failed.append((str(item), reason))
        print(f"nucleikit: error: {item}: {reason}", file=sys.stderr)

    @contextlib.contextmanager
    def item(self, path):
        verbosity.detail(f"{path}: started")
        try:
            yield
        except NucleikitError as exc:
            reason = getattr(exc, "reason", None)
            if reason is not None and getattr(exc, "path", None) == str(path):
                self.fail(path, reason)
            else:
                self.fail(path, str(exc))

    def assumed_note(self) -> str:
        """One sentence naming the inputs processed at an assumed resolution, or ``""``."""
        assumed = {k: v["mpp"] for k, v in self.resolutions.items() if v.get("mpp_source") == ASSUMED}
        if not assumed:
            return ""
        values = sorted({f"{m:g}" for m in assumed.values() if m is not None})
        n = len(assumed)
        which = "input records" if n == 1 else "inputs record"
        return (f"{n} {which} no pixel size: assumed the model's {' / '.join(values)} um/px "
                f"(give --mpp if that is wrong)")

    def finish(self, out: Path | None = None) -> int:
        """Print the summary; exit code 0 if everything worked, else 2."""
        total = len(self.done) + len(self.failed)
        where = f" into {out}" if out is not None and self.done else ""
        note = self.assumed_note()
        print(f"{self.command}: {len(self.done)} of {total} inputs processed{where}" + (f"; {note}" if note else ""))
        if out is not None and self.resolutions:
            self.write_run_record(Path(out))
        if self.failed:
            print(f"{len(self.failed)} failed:", file=sys.stderr)
            for item, reason in self.failed:
                print(f"  {item}: {reason}", file=sys.stderr)
            return 2
        return 0

    def write_run_record(self, out: Path) -> None:
        """Add this run's inputs to ``OUTDIR/<command>_run.json`` (earlier runs' inputs kept)."""
        from ..export import atomic_write

        path = out / f"{self.command}_run.json"
        record = _read_record(path)
        record["command"] = self.command
        record.setdefault("inputs", {}).update(self.resolutions)
        record["mpp_source_meaning"] = {"option": "--mpp", "metadata": "the file's own pixel size",
                                        ASSUMED: "assumed: the file records none, the model's own was used",
                                        "unknown": "a slide recording none, read at the level asked for"}
        record["precision_meaning"] = ("the arithmetic the network ran in (used), what --precision asked for "
                                       "(requested) and why; auto runs bf16 only where the CPU has AMX or "
                                       "AVX512-BF16 and the weights record bf16_ok")
        try:
            with atomic_write(path) as handle:
                json.dump(record, handle, indent=1, sort_keys=True)
                handle.write("\n")
        except NucleikitError as exc:  # the outputs are written: say so, but do not fail the batch for it
            print(f"nucleikit: warning: {exc}", file=sys.stderr)


def _precision_record(precision: Any) -> dict:
    """``Precision.record``, or one per role for a dict of them (``analyze``: detector and classifier)."""
    if isinstance(precision, dict):
        return {role: _precision_record(p) for role, p in precision.items() if p is not None}
    record = getattr(precision, "record", None)
    return dict(record) if record is not None else {"used": str(precision)}


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _finite_or_none(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None
