"""The ``nucleikit`` command.

Sub-commands are registered in :data:`COMMANDS`; each has an ``add_arguments``
function and a ``run`` function in its own module. Options shared by several
commands are defined once in :mod:`nucleikit.cli.options`. Heavy modules
(torch, the models) are imported only after the arguments are parsed, so
``--help`` is instant.

Errors caused by the user (:class:`nucleikit.errors.NucleikitError`) print one
line, ``nucleikit: error: <file>: <problem>``, and exit with code 2; a batch
keeps going past a bad file and exits 2 at the end if any file failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .. import __version__
from ..errors import NucleikitError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nucleikit",
        description="Find, outline and type cell nuclei in microscopy and H&E images.",
    )
    parser.add_argument("--version", action="version", version=f"nucleikit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args._run(args)
    except NucleikitError as exc:
        print(f"nucleikit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nucleikit: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
