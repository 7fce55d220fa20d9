"""Learning curves of training runs: training loss and validation figures against the step.

    python tools/plot_training.py docs/training/unet_he.log.jsonl -o docs/training/unet_he.png
    python tools/plot_training.py runs/a/log.jsonl runs/b/log.jsonl --keys val_aji val_pq -o curves.png

Reads the ``log.jsonl`` a run writes (one JSON record per validation: ``step`` or ``epoch``,
``loss`` and the ``val_*`` figures) and draws, for each log, the mean training loss since the
previous validation (left axis) and the chosen validation figures (right panel), marking the best
step. ``--keys`` defaults to every ``val_*`` figure the first log holds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    """The records of one ``log.jsonl``, in file order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(logs: dict[str, list[dict]], keys: list[str], out: Path) -> Path:
    """Draw the curves of ``logs`` (label -> records) into ``out`` (PNG); returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for label, records in logs.items():
        counter = "step" if "step" in records[0] else "epoch"
        x = [r[counter] for r in records]
        ax_loss.plot(x, [r.get("loss") for r in records], label=label)
        for key in keys:
            ax_val.plot(x, [r.get(key) for r in records], marker=".", label=f"{label} {key}")
        best = [r for r in records if r.get("best")]
        if best:
            ax_val.axvline(best[-1][counter], color="grey", lw=0.8, ls=":")
        ax_loss.set_xlabel(counter)
        ax_val.set_xlabel(counter)
    ax_loss.set_ylabel("training loss (mean since the last validation)")
    ax_val.set_ylabel("validation")
    ax_val.grid(alpha=0.3)
    ax_loss.grid(alpha=0.3)
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", type=Path, help="log.jsonl files")
    ap.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--keys", nargs="+", default=None, help="validation figures to draw (default: all val_*)")
    args = ap.parse_args()
    logs = {}
    for path in args.logs:
        records = read_log(path)
        if not records:
            raise SystemExit(f"{path}: empty log")
        label = path.stem.replace(".log", "") if path.name != "log.jsonl" else path.parent.name
        logs[label] = records
    first = next(iter(logs.values()))
    keys = args.keys or sorted({k for r in first for k in r if k.startswith("val_")})
    print(f"wrote {plot(logs, keys, args.out)}")


if __name__ == "__main__":
    main()
