"""Turn a training run's best weights into bundled, self-describing weights.

    python tools/ship_weights.py runs/micronet_crchisto --name micronet

1. measures the receptive field of the *trained* network with an impulse
   (a 512 px probe, 1024 px if needed; relative tolerance 1e-4) and stores it as the tiling halo;
2. tunes xi and the peak distance again on the validation images over a
   finer and wider grid than the training loop's (validation only);
3. scores the weights once on the CRCHisto fixed-split test images at
   r = 6 and 8 px with the xi and peak distance tuned on validation;
4. writes src/nucleikit/weights/<name>.safetensors (float16 storage) with the
   training summary and test figures in its metadata, and copies the run's
   log to docs/training/<name>.log.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run folder with best.safetensors and log.jsonl")
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", default="", help="the training command, recorded in the metadata")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from nucleikit.infer.evaluate import run_detector, score_run
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.infer.tiling import measure_halo_grown
    from nucleikit.io.datasets.base import find_shared_dir
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.models.weights import bundled_weights_dir, load_weights, save_weights
    from nucleikit.train.tuning import tune_peaks

    torch.set_num_threads(args.threads)
    model, meta = load_weights(args.run / "best.safetensors")
    # Everything below (halo, tuning, test figures) is measured on the weights as
    # shipped: rounded through float16 storage first.
    out = bundled_weights_dir() / f"{args.name}.safetensors"
    tmp = out.with_name(f".{args.name}.f16.safetensors")
    save_weights(tmp, model, meta, storage="float16")
    shipped, _ = load_weights(tmp)
    tmp.unlink()
    x = torch.randn(1, len(meta["mean"]), 256, 256)
    with torch.inference_mode():
        diff = float((model.eval()(x) - shipped(x)).abs().max())
    print(f"float16 storage: max output difference {diff:.2e} on a random input")
    model = shipped
    log = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines()]

    def forward(batch):
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    halo = measure_halo_grown(forward, in_channels=len(meta["mean"]), sizes=(512, 1024), tol=1e-4)
    meta = dict(meta, name=args.name, halo=int(halo))
    print(f"halo (trained receptive field, tol 1e-4): {halo} px")

    shared = find_shared_dir(REPO)
    if shared is None:
        sys.exit("needs ../shared/data for the validation and test figures")
    root = shared / "data" / "crchisto"
    val = list(CRCHisto(root, split="fixed", subset="validation"))
    det = Detector(model, meta, config=InferenceConfig(threads=args.threads))
    maps = [det.probability_map(s.load_image()) for s in val]
    tuned = tune_peaks(
        maps,
        [s.points for s in val],
        radius=6.0,
        xi_grid=np.round(np.arange(0.05, 0.91, 0.025), 3),
        min_distance_grid=range(2, 11),
    )
    meta["postprocess"] = {"threshold_rel": tuned.threshold_rel, "min_distance": tuned.min_distance}
    meta["validation"] = dict(meta.get("validation", {}), f1=tuned.f1, precision=tuned.precision,
                              recall=tuned.recall, radius_px=6.0, tuned_by="tools/ship_weights.py")
    print(f"validation: xi {tuned.threshold_rel}, min distance {tuned.min_distance}, F1 {tuned.f1:.4f}")
    best = max(log, key=lambda rec: rec["val_f1"])
    meta["training"] = {
        "steps": log[-1]["step"],
        "best_step": best["step"],
        "wall_time_min": round(log[-1]["elapsed_s"] / 60, 1),
        "command": args.command,
        "log": f"docs/training/{args.name}.log.jsonl",
    }
    test = list(CRCHisto(root, split="fixed", subset="test"))
    det = Detector(model, meta, config=InferenceConfig(threads=args.threads))
    scored = score_run(run_detector(det, test), xi=det.threshold_rel, radii=(6.0, 8.0))
    figures = {"split": "crchisto fixed test (20 images)"}
    for r in ("6", "8"):
        d = scored["radius"][r]
        for k in ("precision", "recall", "f1", "ed", "mean_image_f1", "tp", "fp", "fn"):
            figures[f"{k}_r{r}"] = d[k]
    meta["test"] = figures
    save_weights(out, model, meta, storage="float16")
    shutil.copy(args.run / "log.jsonl", REPO / "docs" / "training" / f"{args.name}.log.jsonl")
    print(json.dumps(figures, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
