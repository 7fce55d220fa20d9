"""Test-time augmentation on validation images: a segmenter's figures with 1, 2, 4 and 8 views.

    python benchmarks/tta_validation.py --model unet_he            # MoNuSeg per-organ validation (6 images)
    python benchmarks/tta_validation.py --model unet_dsb --views 1 8  # DSB2018 validation (134 images)

The post-processing stays the one stored with the weights (tuned on one view), so the figures
show what ``segment --tta N`` gives as shipped. Validation only: the choice of N is made here,
the test split is scored once by ``benchmarks/segmentation.py --tta N``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import machine, save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="unet_he", help="bundled instance-head segmenter or weights file")
    ap.add_argument("--views", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from ship_weights import instance_data

    from nucleikit.infer.predict import InferenceConfig
    from nucleikit.infer.segment import Segmenter
    from nucleikit.infer.segment_eval import run_segmenter, score_postprocess

    torch.set_num_threads(args.threads)
    config = InferenceConfig(threads=args.threads)
    base = Segmenter.from_weights(args.model, config)
    if base.head != "instance":
        sys.exit(f"{args.model} is a {base.head!r} head; this script scores instance heads")
    val, _, (split, _), _, _ = instance_data(base.meta, None)
    post = {k: base.meta["postprocess"][k] for k in ("threshold", "markers", "marker_threshold")}
    rows = {}
    for n in args.views:
        seg = Segmenter.from_weights(args.model, config, tta=n)
        t0 = time.perf_counter()
        run = run_segmenter(seg, val)
        seconds = time.perf_counter() - t0
        figures = score_postprocess(seg, run, **post)
        rows[n] = {"network_s": seconds, **{k: figures[k] for k in ("aji", "pq", "dice", "dsb_score")}}
        print(f"{seg.name} tta {n}: AJI {figures['aji']:.4f}  PQ {figures['pq']:.4f}  Dice {figures['dice']:.4f}  "
              f"DSB {figures['dsb_score']:.4f}  (maps {seconds:.1f} s)", flush=True)
    print(f"wrote {save(f'tta_validation_{base.name}', {'machine': machine(), 'split': split, 'images': len(val), 'postprocess': post, 'views': rows})}")


if __name__ == "__main__":
    main()
