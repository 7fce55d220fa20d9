"""Exceptions raised by nucleikit.

Every error a user can cause (a bad file, a bad option, damaged weights) is a
:class:`NucleikitError`. The command line turns these into one line on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from os import PathLike
from pathlib import Path

__all__ = ["NucleikitError", "InputError", "ArrayError", "WeightsError", "ConfigError", "missing_reason"]


class NucleikitError(Exception):
    """Root of all errors caused by input, configuration or weights."""


class InputError(NucleikitError):
    """A file given by the user cannot be used.

    Parameters
    ----------
    path : str or PathLike
        The offending file.
    reason : str
        What is wrong with it, in a few words (no trailing full stop).
    """

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ArrayError(InputError, ValueError):
    """An image array given to the Python API cannot be used (shape, sample type, values).

    Also a :class:`ValueError`, what NumPy-style code expects of a bad array argument.
    """


class WeightsError(InputError):
    """A weights file is missing, damaged or does not fit the model."""


class ConfigError(NucleikitError):
    """An option or configuration value is invalid."""


def dangling_link_reason(path: Path) -> str:
    """Why a path that does not resolve to a file fails: a link loop, a broken link, or nothing there."""
    try:
        Path(path).resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "symbolic link loop"
    except OSError as exc:
        return "symbolic link loop" if exc.errno == errno.ELOOP else "broken symbolic link (its target does not exist)"
    return "no such file"


def missing_reason(path: str | PathLike[str], default: str = "file not found") -> str:
    """Why nothing is at ``path``: a symbolic link loop, a broken link, or ``default``."""
    return dangling_link_reason(Path(path)) if Path(path).is_symlink() else default
