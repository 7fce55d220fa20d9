"""``--quiet`` and ``--verbose``: how much every command prints.

Defined once, on a parent parser every sub-command is built with (:func:`parent_parser`), so
``nucleikit detect -q ...`` and ``nucleikit evaluate detection -v ...`` work alike.

========  ==========================================================================
level     prints
========  ==========================================================================
quiet     errors (stderr), the final summary line of a batch, and a command's own
          result (``evaluate``'s scores, ``models``' table); no per-file lines and
          no progress bars
normal    also one line per input (count, seconds, resolution), progress bars
verbose   also the options in effect, a line as each input starts, and the total
          time and run record at the end
========  ==========================================================================

The level is set for the duration of one command (:func:`verbosity`) and read with
:func:`level`, :func:`quiet`, :func:`verbose`; nothing outside the command changes.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["QUIET", "NORMAL", "VERBOSE", "parent_parser", "level_of", "verbosity", "level", "quiet", "verbose",
           "say", "detail"]

QUIET, NORMAL, VERBOSE = 0, 1, 2

_LEVEL: contextvars.ContextVar[int] = contextvars.ContextVar("nucleikit_verbosity", default=NORMAL)


def parent_parser(default=False) -> argparse.ArgumentParser:
    """A parser holding only ``-q/--quiet`` and ``-v/--verbose`` (exclusive), to build every sub-command with.

    ``default=argparse.SUPPRESS`` for the sub-commands, so that ``nucleikit -q detect ...``
    is not undone by the sub-command's own default.
    """
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("output").add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="print only errors and the final summary line (no per-file lines, no progress bars)")
    g.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="also print the options in effect, each input as it starts, and the total time")
    return parent


def level_of(args: argparse.Namespace) -> int:
    """The level asked for on the command line (normal when neither option is there)."""
    if getattr(args, "quiet", False):
        return QUIET
    if getattr(args, "verbose", False):
        return VERBOSE
    return NORMAL


@contextlib.contextmanager
def verbosity(value: int) -> Iterator[None]:
    """Within the block, :func:`level` is ``value``."""
    token = _LEVEL.set(int(value))
    try:
        yield
    finally:
        _LEVEL.reset(token)


def level() -> int:
    return _LEVEL.get()


def quiet() -> bool:
    return _LEVEL.get() <= QUIET


def verbose() -> bool:
    return _LEVEL.get() >= VERBOSE


def say(message: str) -> None:
    """Print a per-file line (normal and verbose)."""
    if not quiet():
        print(message, flush=True)


def detail(message: str) -> None:
    """Print a line only with ``--verbose``."""
    if verbose():
        print(message, flush=True)
