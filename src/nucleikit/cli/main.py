"""The ``nucleikit`` command.

Sub-commands are registered in :data:`COMMANDS`; each has an ``add_arguments``
function and a ``run`` function in its own module. Options shared by several
commands are defined once in :mod:`nucleikit.cli.options`. Heavy modules
(torch, the models) are imported only after the arguments are parsed, so
``--help`` is instant.

Errors caused by the user (:class:`nucleikit.errors.NucleikitError`) print one
line, ``nucleikit: error: <file>: <problem>``, and exit with code 2; a batch
keeps going past a bad file and exits 2 at the end if any file failed. An
optional dependency that is not installed is such an error too: one line naming
the extra that installs it (:mod:`nucleikit.extras`).

Added here for every command, once: ``-q/--quiet`` and ``-v/--verbose``
(:mod:`nucleikit.cli.verbosity`); for the commands that read images,
``--plane K`` (the plane of a multi-page or Z/T-stacked TIFF,
:func:`nucleikit.io.images.reading_plane`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from typing import Sequence

from .. import __version__
from ..errors import NucleikitError
from . import verbosity

__all__ = ["main", "build_parser", "COMMANDS"]

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": ("nucleikit.cli.detect", "find nucleus centres in images (CSV, QuPath GeoJSON, overlay)"),
    "segment": ("nucleikit.cli.segment", "outline nuclei in images and whole slides (label TIFF, QuPath polygons, CSV/Parquet/SQLite, overlay)"),
    "classify": ("nucleikit.cli.classify", "type given nucleus centres of an image (epithelial, fibroblast, ...)"),
    "analyze": ("nucleikit.cli.analyze", "detect and type the nuclei of images (CSV, QuPath GeoJSON, overlay)"),
    "evaluate": ("nucleikit.cli.evaluate", "score predictions against truth (PROTOCOL.md matching and metrics)"),
    "train": ("nucleikit.cli.train", "train or fine-tune a detector or a nucleus classifier"),
    "experiment": ("nucleikit.cli.experiment",
                   "run a transfer or data-mixing study (Xing et al. 2019): cross-dataset, fine-tuning, auxiliary data, "
                   "lambda, baselines"),
    "models": ("nucleikit.cli.models", "list model architectures and bundled weights"),
    "demo": ("nucleikit.cli.demo", "detect nuclei in the bundled sample image and print a summary"),
}


#: Commands that read image files, and so take ``--plane``.
PLANE_COMMANDS = ("detect", "segment", "analyze", "classify")

#: Optional modules a command always needs, checked before it starts: (module, what needs it).
REQUIRES: dict[str, tuple[tuple[str, str], ...]] = {
    "experiment": (("matplotlib", "nucleikit experiment reports (PNG figures)"),),
}


def plane_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (planes count from 0), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nucleikit",
        description="Find, outline and type cell nuclei in microscopy and H&E images.",
        parents=[verbosity.parent_parser()],
    )
    parser.add_argument("--version", action="version", version=f"nucleikit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # After the command name too; SUPPRESS: an option given before it is not reset.
    shared = verbosity.parent_parser(default=argparse.SUPPRESS)
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text),
                           parents=[shared])
        mod.add_arguments(p)
        if name in PLANE_COMMANDS:
            p.add_argument_group("multi-page TIFFs").add_argument(
                "--plane", type=plane_index, default=None, metavar="K",
                help="plane to read (0-based) of multi-page or Z/T-stacked TIFF inputs, which are "
                     "otherwise refused; single-plane inputs accept only 0")
        p.set_defaults(_run=mod.run)
    return parser


def _error(message: str) -> int:
    print(f"nucleikit: error: {message}", file=sys.stderr)
    return 2


def _check_requirements(command: str) -> None:
    from ..extras import MissingExtraError, available

    for module, purpose in REQUIRES.get(command, ()):
        if not available(module):
            raise MissingExtraError(module, purpose)


def _options_line(args: argparse.Namespace) -> str:
    shown = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", "quiet", "verbose")}
    return f"{args.command} options: " + ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from ..extras import extra_for, missing_extra_message

    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # an option's check may find an extra missing (--formats parquet)
    except NucleikitError as exc:
        return _error(str(exc))
    level = verbosity.level_of(args)
    if level == verbosity.QUIET and hasattr(args, "no_progress"):
        args.no_progress = True  # train, experiment: no progress bars
    started = time.perf_counter()
    try:
        _check_requirements(args.command)
        from ..io.images import reading_plane

        with verbosity.verbosity(level), reading_plane(getattr(args, "plane", None)):
            verbosity.detail(f"nucleikit {__version__}, {_options_line(args)}")
            code = args._run(args)
            verbosity.detail(f"{args.command}: finished in {time.perf_counter() - started:.2f} s (exit code "
                             f"{int(code or 0)})")
    except NucleikitError as exc:
        return _error(str(exc))
    except ModuleNotFoundError as exc:
        # An optional dependency missing deep inside a command: one line naming its extra.
        if exc.name is None or extra_for(exc.name) is None:
            raise
        return _error(missing_extra_message(exc.name, f"nucleikit {args.command}"))
    except KeyboardInterrupt:
        print("nucleikit: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
