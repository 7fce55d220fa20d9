"""The README's summary table of Xing et al.'s findings, built from the committed study reports.

    python tools/experiments_summary.py                   # print the table (Markdown)
    python tools/experiments_summary.py --write README.md # replace the table between the README's markers
    python tools/experiments_summary.py --check README.md # exit 1 if the README's table is out of step

Reads every ``docs/experiments/*/results.json`` written by ``nucleikit experiment``;
the verdict rules are in :mod:`nucleikit.experiments.summary`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nucleikit.experiments.summary import markdown, replace_block, summary_rows

REPO = Path(__file__).resolve().parents[1]


def build(docs: Path) -> str:
    return markdown(summary_rows(docs, root=docs.parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=Path, default=REPO / "docs" / "experiments", help="folder of study reports")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="README", help="replace the table between the markers")
    group.add_argument("--check", type=Path, metavar="README", help="exit 1 if the table there differs")
    args = ap.parse_args(argv)
    table = build(args.docs)
    if args.write is None and args.check is None:
        sys.stdout.write(table)
        return 0
    path = args.write or args.check
    text = path.read_text(encoding="utf-8")
    new = replace_block(text, table)
    if args.check is not None:
        if new != text:
            print(f"{path}: the summary table is out of step with {args.docs}; run "
                  f"python tools/experiments_summary.py --write {path}", file=sys.stderr)
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
