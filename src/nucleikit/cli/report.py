"""Batch bookkeeping for the CLI: go on past bad files, list failures at the end."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NucleikitError


@dataclass
class BatchReport:
    """Collects per-file outcomes and prints a summary.

    ``with report.item(path): ...`` turns a :class:`NucleikitError` raised for
    that file into a recorded failure (one line on stderr) and lets the batch
    continue; other exceptions are bugs and propagate.
    """

    command: str
    done: list[tuple[str, str, float, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def ok(self, item, summary: str, *, seconds: float = 0.0, detail: str = "") -> None:
        self.done.append((str(item), summary, seconds, detail))
        extra = f", {detail}" if detail else ""
        print(f"{item}: {summary} ({seconds:.2f} s{extra})")

    def fail(self, item, reason: str) -> None:
        self.failed.append((str(item), reason))
        print(f"nucleikit: error: {item}: {reason}", file=sys.stderr)

    @contextlib.contextmanager
    def item(self, path):
        try:
            yield
        except NucleikitError as exc:
            reason = getattr(exc, "reason", None)
            if reason is not None and getattr(exc, "path", None) == str(path):
                self.fail(path, reason)
            else:
                self.fail(path, str(exc))

    def finish(self, out: Path | None = None) -> int:
        """Print the summary; exit code 0 if everything worked, else 2."""
        total = len(self.done) + len(self.failed)
        where = f" into {out}" if out is not None and self.done else ""
        print(f"{self.command}: {len(self.done)} of {total} inputs processed{where}")
        if self.failed:
            print(f"{len(self.failed)} failed:", file=sys.stderr)
            for item, reason in self.failed:
                print(f"  {item}: {reason}", file=sys.stderr)
            return 2
        return 0
