"""Exceptions raised by nucleikit.

Every error a user can cause (a bad file, a bad option, damaged weights) is a
:class:`NucleikitError`. The command line turns these into one line on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["NucleikitError", "InputError", "WeightsError", "ConfigError"]


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


class WeightsError(InputError):
    """A weights file is missing, damaged or does not fit the model."""


class ConfigError(NucleikitError):
    """An option or configuration value is invalid."""
