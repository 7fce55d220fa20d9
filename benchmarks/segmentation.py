"""DSB2018 segmentation: stage1_test accuracy and end-to-end speed, both against the same run.

    python benchmarks/segmentation.py                       # bundled r2unet and unet
    python benchmarks/segmentation.py --weights runs/r2unet_dsb2018/best.safetensors
    python benchmarks/segmentation.py --limit 5             # quick check (not protocol figures)

Accuracy (PROTOCOL.md section 2): the 65 stage1_test images scored against stage1_solution.csv
(mean and pooled Dice, IoU, DSB score, AP50, AJI, PQ) with the post-processing tuned on
validation and stored in the weights, for both seed kinds (distance transform; peaks of the
bundled micronet detector) and marking the kind the weights ship as default.

Speed (PROTOCOL.md section 4) at --threads (2): "end to end" = read the PNG, predict the tiled
map, build the instances, write <stem>_labels.tif, .geojson and .csv
(`nucleikit.infer.pipelines.segment_file` without the overlay) with the shipped seed kind; the
reference is the same network as a plain fp32 eager forward pass (NCHW, `torch.no_grad`, no BN
folding, no tiling) over the same pixels padded to a multiple of the network's downsampling,
excluding reading, post-processing and writing. Throughput is megapixels of input per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import machine, reference_forward, save, shared_data


def accuracy(seg, samples) -> dict:
    """stage1_test figures for both seed kinds at the values tuned with the weights."""
    from nucleikit.infer.segment_eval import run_segmenter, score_instances

    run = run_segmenter(seg, samples, detector_seeds=True)
    tuned = seg.meta.get("postprocess", {}).get("tuned", {})
    out = {"seconds_maps": run.seconds}
    for kind in ("distance", "detector"):
        values = tuned.get(kind, {"threshold": seg.threshold, "min_distance": seg.min_distance})
        out[kind] = {**values, **score_instances(seg, run, seeds=kind, threshold=values["threshold"],
                                                 min_distance=values["min_distance"])}
    out["shipped_seeds"] = seg.seeds
    return out


def speed(source, seg_factory, samples, model, meta, threads: int, repeat: int, tmp: Path) -> dict:
    from nucleikit.infer.pipelines import segment_file

    paths = [s.image_path for s in samples]
    seg = seg_factory()
    pixels = [seg.prepare(s.load_image(mode="rgb"))[0] for s in samples]
    mp = sum(p.shape[0] * p.shape[1] for p in pixels) / 1e6
    mean = np.asarray(meta["mean"], np.float32)
    std = np.asarray(meta["std"], np.float32)
    align = 2 ** (len(getattr(model, "widths", (0,) * 5)) - 1)
    reference_forward(model, pixels[:1], mean, std, align)  # warm-up
    ref = min(reference_forward(model, pixels, mean, std, align) for _ in range(repeat))
    out = tmp / "e2e"
    segment_file(paths[0], seg, out, overlay=False)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            segment_file(p, seg, out, overlay=False)
        best = min(best, time.perf_counter() - t0)
    return {
        "source": str(source),
        "images": len(paths),
        "megapixels": mp,
        "seeds": seg.seeds,
        "reference_fp32_s": ref,
        "e2e_s": best,
        "reference_mp_s": mp / ref,
        "e2e_mp_s": mp / best,
        "e2e_ratio": ref / best,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["r2unet", "unet"], help="bundled segmenter names")
    ap.add_argument("--weights", nargs="+", type=Path, default=None, help="weights files instead of --models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="timed passes (best is kept)")
    ap.add_argument("--limit", type=int, default=None, metavar="N", help="first N test images only (quick check)")
    ap.add_argument("--no-accuracy", action="store_true", help="speed only")
    ap.add_argument("--bf16", action="store_true", help="run nucleikit under bf16 autocast (the reference stays fp32)")
    args = ap.parse_args()

    import torch

    from nucleikit.infer.predict import InferenceConfig
    from nucleikit.infer.segment import Segmenter
    from nucleikit.io.datasets.dsb2018 import DSB2018
    from nucleikit.models.weights import load_weights, resolve_weights

    torch.set_num_threads(args.threads)
    samples = list(DSB2018(shared_data() / "dsb2018", subset="test"))
    if args.limit is not None:
        samples = samples[: args.limit]
    sources = [str(p) for p in args.weights] if args.weights else args.models
    results = {
        "machine": machine(),
        "threads": args.threads,
        "split": f"dsb2018 stage1_test ({len(samples)} images)",
        "protocol": args.limit is None,
        "bf16": args.bf16,
        "models": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="nk-seg-bench-"))
    config = InferenceConfig(threads=args.threads, bf16=args.bf16)
    for source in sources:
        path = resolve_weights(source)
        model, meta = load_weights(path)
        name = str(meta.get("name", Path(source).stem))

        def factory(path=path):
            return Segmenter.from_weights(path, config)

        entry: dict = {"weights": str(path), "num_params": meta.get("num_params")}
        if not args.no_accuracy:
            entry["accuracy"] = accuracy(factory(), samples)
            for kind in ("distance", "detector"):
                a = entry["accuracy"][kind]
                print(f"{name} {kind} seeds: Dice {a['dice']:.4f} (pooled {a['pooled_dice']:.4f})  "
                      f"IoU {a['iou']:.4f}  DSB {a['dsb_score']:.4f}  AP50 {a['ap50']:.4f}  "
                      f"AJI {a['aji']:.4f}  PQ {a['pq']:.4f}")
        entry["speed"] = speed(source, factory, samples, model, meta, args.threads, args.repeat, tmp / name)
        s = entry["speed"]
        print(f"{name}: end to end {s['e2e_mp_s']:.3f} MP/s, reference fp32 forward {s['reference_mp_s']:.3f} MP/s "
              f"(ratio {s['e2e_ratio']:.2f}) over {s['megapixels']:.2f} MP")
        results["models"][name] = entry
    tag = "_".join(results["models"]) + ("_bf16" if args.bf16 else "")
    tag += f"_limit{args.limit}" if args.limit is not None else ""  # quick checks: not for the README
    print(f"wrote {save(f'segmentation_{tag}', results)}")


if __name__ == "__main__":
    main()
