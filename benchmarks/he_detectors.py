"""Bundled detectors on every H&E test set: CRCHisto (r = 6 px at 0.55 um/px) and the MoNuSeg organs (r = 16 px at 0.25).

    python benchmarks/he_detectors.py --models micronet_he micronet udnet

The data sets are those of ``configs/experiments/pooled_he.json`` (PROTOCOL.md splits; the test
images only, each scored once with the post-processing values stored in the weights, matched at
the data set's own radius in microns: 3.3 um for CRCHisto, 4 um for MoNuSeg). Writes
``benchmarks/results/he_detectors.json`` with the CPU model and flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["micronet_he", "micronet", "udnet"])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "experiments" / "pooled_he.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "he_detectors.json")
    args = ap.parse_args()

    from _common import machine

    from nucleikit.experiments.cells import CellRunner
    from nucleikit.experiments.config import load_config, prepare
    from nucleikit.models.weights import resolve_weights

    config = load_config(args.config)
    collection = prepare(config)
    tests = list(config.params.tests)
    runner = CellRunner(collection, Path("/nonexistent-runs"), log=lambda _: None)
    results = {}
    for name in args.models:
        t0 = time.perf_counter()
        scored = runner.score(resolve_weights(name), tests, args.threads, False)
        results[name] = {t: {k: scored[t][k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "radius_um",
                                                         "images")} for t in tests}
        organs = [t for t in tests if t != "crchisto"]
        results[name]["monuseg_mean_f1"] = sum(results[name][t]["f1"] for t in organs) / len(organs)
        results[name]["seconds"] = time.perf_counter() - t0
        print(name, " ".join(f"{t} {results[name][t]['f1']:.3f}" for t in tests),
              f"MoNuSeg mean {results[name]['monuseg_mean_f1']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "config": str(args.config.relative_to(REPO)),
                                    "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
