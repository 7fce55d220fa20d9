"""Accuracy of the bundled detectors on the CRCHisto fixed split (PROTOCOL.md §1).

    python benchmarks/detection_accuracy.py [--models micronet udnet] [--bf16]

Test images are touched once, with the xi and peak distance stored in the
weights (tuned on the validation images). Writes
benchmarks/results/detection_accuracy.json and a precision-recall plot, and
prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import RESULTS, machine, save, shared_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["micronet", "udnet"])
    ap.add_argument("--bf16", action="store_true", help="run the models under bf16 autocast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subset", default="test", choices=["test", "validation"])
    args = ap.parse_args()

    from nucleikit.infer.evaluate import run_detector, score_run
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.io.datasets.crchisto import CRCHisto

    samples = list(CRCHisto(shared_data() / "crchisto", split="fixed", subset=args.subset))
    results = {"machine": machine(), "subset": args.subset, "bf16": args.bf16, "models": {}}
    curves = {}
    for name in args.models:
        det = Detector.from_weights(name, config=InferenceConfig(threads=args.threads, bf16=args.bf16))
        run = run_detector(det, samples)
        scored = score_run(run, xi=det.threshold_rel, radii=(6.0, 8.0))
        scored["min_distance"] = det.min_distance
        scored["seconds"] = run.seconds
        scored["num_params"] = det.meta.get("num_params")
        results["models"][name] = scored
        curves[name] = scored["pr_curve"]["6"]
    suffix = "_bf16" if args.bf16 else ""
    path = save(f"detection_accuracy_{args.subset}{suffix}", results)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, c in curves.items():
        ax.plot(c["recall"], c["precision"], marker=".", label=name)
        xi = results["models"][name]["xi"]
        r6 = results["models"][name]["radius"]["6"]
        ax.plot([r6["recall"]], [r6["precision"]], "k*", ms=10)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"CRCHisto {args.subset} (20x), r = 6 px; * = tuned xi")
    ax.set_xlim(0.4, 1)
    ax.set_ylim(0.4, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"detection_pr_{args.subset}{suffix}.png", dpi=120)

    print(f"| model | params | xi | r = 6 px P / R / F1 | mean per-image F1 | ED (px) | r = 8 px F1 |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, s in results["models"].items():
        r6, r8 = s["radius"]["6"], s["radius"]["8"]
        print(f"| {name} | {s['num_params']:,} | {s['xi']:g} | {r6['precision']:.3f} / {r6['recall']:.3f} / "
              f"**{r6['f1']:.3f}** | {r6['mean_image_f1']:.3f} | {r6['ed']:.2f} | {r8['f1']:.3f} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
