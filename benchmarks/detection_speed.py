"""End-to-end detection speed against a plain fp32 eager forward pass, same run.

    python benchmarks/detection_speed.py [--model micronet] [--threads 2]

Inputs: the 20 CRCHisto test images (500x500 PNG) and one 2000x2000 mosaic of
16 of them, as files on disk. "End to end" = read the file, resample if
needed, standardise, tile, run the network, find peaks, write CSV and GeoJSON
(`nucleikit.infer.pipelines.detect_file` without the overlay), in fp32 with and
without channels_last and in bf16 (BN folding on in all three). The reference is
the same network as a plain fp32 eager forward pass (NCHW, no channels_last,
`torch.no_grad`) over the same pixels padded to a multiple of 16, excluding
reading and writing. Throughput is megapixels of input per second (PROTOCOL §4).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import machine, reference_forward, save, shared_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="micronet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="timed passes (best is kept)")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from nucleikit.infer.pipelines import detect_file
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.models.weights import load_weights, resolve_weights

    torch.set_num_threads(args.threads)
    samples = list(CRCHisto(shared_data() / "crchisto", split="fixed", subset="test"))
    tmp = Path(tempfile.mkdtemp(prefix="nk-speed-"))
    files = []
    tiles = []
    for s in samples:
        px = (s.load_image() * 255).round().astype(np.uint8)
        tiles.append(px)
        p = tmp / f"{s.id}.png"
        Image.fromarray(px).save(p)
        files.append(p)
    mosaic = np.concatenate([np.concatenate(tiles[r * 4 : r * 4 + 4], axis=1) for r in range(4)], axis=0)
    mosaic_path = tmp / "mosaic.png"
    Image.fromarray(mosaic).save(mosaic_path)

    sets = {"crchisto_500": files, "mosaic_2000": [mosaic_path]}
    results = {"machine": machine(), "model": args.model, "threads": args.threads, "sets": {}}
    model, meta = load_weights(resolve_weights(args.model))
    mean = np.asarray(meta["mean"], np.float32)
    std = np.asarray(meta["std"], np.float32)
    for set_name, paths in sets.items():
        pixels = [np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in paths]
        mp = sum(p.shape[0] * p.shape[1] for p in pixels) / 1e6
        row = {"megapixels": mp}
        reference_forward(model, pixels[:1], mean, std)  # warm-up
        row["reference_fp32_s"] = min(reference_forward(model, pixels, mean, std) for _ in range(args.repeat))
        variants = (("e2e_fp32_nchw", False, False), ("e2e_fp32", False, True), ("e2e_bf16", True, True))
        for variant, bf16, channels_last in variants:
            config = InferenceConfig(threads=args.threads, bf16=bf16, channels_last=channels_last)
            det = Detector.from_weights(args.model, config=config)
            out = tmp / variant
            detect_file(paths[0], det, out, overlay=False)  # warm-up
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                for p in paths:
                    detect_file(p, det, out, overlay=False)
                best = min(best, time.perf_counter() - t0)
            row[f"{variant}_s"] = best
        row["reference_mp_s"] = mp / row["reference_fp32_s"]
        for variant, _, _ in variants:
            row[f"{variant}_mp_s"] = mp / row[f"{variant}_s"]
            row[f"{variant}_ratio"] = row[f"{variant}_mp_s"] / row["reference_mp_s"]
        results["sets"][set_name] = row
    path = save(f"detection_speed_{args.model}", results)
    print(f"model {args.model}, {args.threads} threads")
    print("| input | reference fp32 forward | fp32 NCHW | fp32 channels_last | bf16 channels_last |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results["sets"].items():
        cells = " | ".join(f"{r[v + '_mp_s']:.2f} ({r[v + '_ratio']:.2f}x)" for v in ("e2e_fp32_nchw", "e2e_fp32", "e2e_bf16"))
        print(f"| {name} ({r['megapixels']:.2f} MP) | {r['reference_mp_s']:.2f} | {cells} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
