"""`nucleikit segment` end to end against the plain fp32 forward pass of the same network, same run.

    python benchmarks/segmentation_speed.py                         # unet_dsb, 8 DSB2018 test images, 1 thread
    python benchmarks/segmentation_speed.py --model unet --limit 16 --threads 2

Inputs: the first ``--limit`` DSB2018 stage1_test images (PNG files as shipped, in the
reader's order). Measured in one process, so that the ratios hold on a shared machine:

- **reference**: the network as a plain fp32 eager forward pass (NCHW, ``torch.no_grad``, no
  BN folding, no tiling) over each image as the network sees it, reflect-padded bottom/right to
  the network's alignment (``benchmarks/_common.reference_forward``); reading, normalisation,
  post-processing and writing excluded;
- **end to end**: ``nucleikit.infer.pipelines.segment_file`` without the overlay (read the PNG,
  the maps, the instances, measurements and outlines, write ``_labels.tif``, ``.geojson`` and
  ``.csv``) with the shipped post-processing, once with the default ``padding="halo"`` (every
  tile read with the network's receptive field of context: tiled == untiled) and once with
  ``padding="align"`` (an image that fits in one tile padded only to the alignment);
- **stages** of the default path, each timed alone over the same images: prepare (colour,
  percentile normalisation), network maps (tiled with the halo), instances, measurements,
  outlines; "rest" is end to end minus these (reading, writing, bookkeeping).

Throughput is megapixels of input per second; ratios are against the reference of the same
run. The CPU model and flags (``lscpu``) are saved with the figures.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import machine, reference_forward, save, shared_data


def lscpu() -> dict:
    """``Model name`` and ``Flags`` as lscpu prints them ("" when lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: fields.get(key, "").strip() for key in ("Model name", "Flags")}


def best_of(repeat: int, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="unet_dsb")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=8, metavar="N", help="first N stage1_test images")
    ap.add_argument("--repeat", type=int, default=2, help="timed passes (best is kept)")
    ap.add_argument("--keep", type=Path, default=None, help="write the end-to-end outputs here (to compare runs)")
    args = ap.parse_args()

    import torch

    from nucleikit.infer.pipelines import segment_file
    from nucleikit.infer.predict import InferenceConfig
    from nucleikit.infer.segment import Segmenter
    from nucleikit.io.datasets.dsb2018 import DSB2018
    from nucleikit.io.images import convert_mode, read_image
    from nucleikit.models.weights import load_weights, resolve_weights
    from nucleikit.postprocess import label_measurements, label_outlines

    torch.set_num_threads(args.threads)
    samples = list(DSB2018(shared_data() / "dsb2018", subset="test"))[: args.limit]
    paths = [s.image_path for s in samples]
    config = InferenceConfig(threads=args.threads)
    segmenters = {"halo": Segmenter.from_weights(args.model, config)}
    try:
        segmenters["align"] = Segmenter.from_weights(args.model, config, padding="align")
    except TypeError:  # a nucleikit from before padding="align" (for before/after runs)
        pass
    seg = segmenters["halo"]
    model, meta = load_weights(resolve_weights(args.model))
    images = [read_image(p, mode="rgb").pixels for p in paths]
    mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    prepared = [seg.prepare(im)[0] for im in images]
    mean = np.asarray(meta["mean"], np.float32)
    std = np.asarray(meta["std"], np.float32)
    reference_forward(model, prepared[:1], mean, std, model.alignment)  # warm-up
    ref = min(reference_forward(model, prepared, mean, std, model.alignment) for _ in range(args.repeat))

    tmp = Path(tempfile.mkdtemp(prefix="nk-segspeed-"))
    e2e = {}
    for name, s in segmenters.items():
        out = (args.keep / name) if args.keep else tmp / name
        segment_file(paths[0], s, out, overlay=False)  # warm-up
        e2e[name] = best_of(args.repeat, lambda s=s, out=out: [segment_file(p, s, out, overlay=False) for p in paths])

    # the default path's stages, each alone over every image
    maps = [seg.output_maps(w) for w in prepared]
    labels = [seg.segment(im, prob=m).labels for im, m in zip(images, maps)]
    greys = [convert_mode(im, "grey")[:, :, 0] for im in images]

    def instances():
        for im, m in zip(images, maps):
            if seg.head == "instance":
                seg.instances_from_output(m, im.shape[:2], 1.0)
            else:
                seg.labels_at_input(m[0], im.shape[:2])

    stages = {
        "prepare": best_of(args.repeat, lambda: [seg.prepare(im) for im in images]),
        "maps": best_of(args.repeat, lambda: [seg.output_maps(w) for w in prepared]),
        "instances": best_of(args.repeat, instances),
        "measurements": best_of(args.repeat, lambda: [label_measurements(lb, g) for lb, g in zip(labels, greys)]),
        "outlines": best_of(args.repeat, lambda: [label_outlines(lb) for lb in labels]),
    }
    stages["rest"] = max(e2e["halo"] - sum(stages.values()), 0.0)

    results = {
        "machine": {**machine(), "lscpu": lscpu()},
        "model": args.model,
        "threads": args.threads,
        "images": len(paths),
        "megapixels": mp,
        "nuclei": int(sum(int(lb.max(initial=0)) for lb in labels)),
        "reference_fp32_s": ref,
        "reference_mp_s": mp / ref,
        "e2e_s": e2e,
        "e2e_mp_s": {k: mp / v for k, v in e2e.items()},
        "e2e_ratio": {k: ref / v for k, v in e2e.items()},
        "stages_s": stages,
    }
    path = save(f"segmentation_speed_{args.model}_limit{args.limit}_t{args.threads}", results)
    print(f"{args.model}, {len(paths)} DSB2018 stage1_test images ({mp:.2f} MP), {args.threads} thread(s), "
          f"{results['machine']['cpu']}")
    print("| run | MP/s | ratio to the forward pass |")
    print("|---|---:|---:|")
    print(f"| reference fp32 eager forward | {mp / ref:.3f} | 1.00 |")
    for k in e2e:
        print(f"| segment end to end, padding={k} | {mp / e2e[k]:.3f} | {ref / e2e[k]:.2f} |")
    print("stages of padding=halo (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
          + f"; reference {ref:.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
