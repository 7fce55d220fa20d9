"""Segmentation: test accuracy next to the classical floor, and end-to-end speed, in one run.

    python benchmarks/segmentation.py                                   # DSB2018, bundled r2unet and unet
    python benchmarks/segmentation.py --dataset monuseg --models unet_he unet
    python benchmarks/segmentation.py --weights runs/r2unet_dsb2018/best.safetensors
    python benchmarks/segmentation.py --limit 5                         # quick check (not protocol figures)
    python benchmarks/segmentation.py --dataset monuseg --models unet_he --tta 8 --no-classical   # test-time augmentation

DSB2018 (PROTOCOL.md section 2): the 65 stage1_test images scored against stage1_solution.csv
(mean and pooled Dice, IoU, DSB score, AP50, AJI, PQ) with the post-processing tuned on
validation and stored in the weights; for binary (mask) heads both seed kinds (distance
transform; peaks of the bundled micronet detector), marking the kind the weights ship.

MoNuSeg (PROTOCOL.md section 3): the eight per-organ test images (breast, kidney, lung,
prostate; two each), per image, per organ and their mean: Dice, AJI, PQ (DQ = RQ, SQ), DSB
score; predictions are compared at the label image's own resolution. The three TCGA-HE kidney
images are read at 0.5 um/px (they look scanned at 20x: ``LOOKS_20X_MPP``, data README), as the
H&E segmenter was trained and tuned; ``--no-20x-override`` scores them at the nominal 0.25.

Both data sets get the classical floor (:func:`nucleikit.infer.classical.otsu_watershed`:
Otsu on the haematoxylin channel for H&E; for DSB2018 on the channel that fits each image:
haematoxylin for stained tissue, luminance for fluorescence, negated luminance for grey bright
field; then the distance-transform watershed), its seed distance and smallest object tuned on the same validation images as the
networks, and the papers' rows as published (other splits: for orientation only).

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

#: Published figures, as reported (other splits than ours; orientation only).
PAPER_ROWS = {
    "dsb2018": [
        {"name": "U-Net (Alom et al. 2022), as reported", "dice": 0.904},
        {"name": "R2U-Net (Alom et al. 2022), as reported", "dice": 0.919},
    ],
    "monuseg": [
        {"name": "HoVer-Net (Graham et al. 2019), Kumar test set, as reported", "aji": 0.641, "pq": 0.597},
        {"name": "MoNuSeg 2018 winner (Kumar et al. 2020), challenge test set, as reported", "aji": 0.691},
    ],
}
#: Classical floor values tried on validation: (min_distance, min_size) in input pixels.
CLASSICAL_GRID = [(md, ms) for md in (4, 6, 8, 10, 12) for ms in (15, 30, 60)]


def data(dataset: str, limit: int | None, override_20x: bool = True):
    """(validation, test, channel of the classical floor, organ of each test id)."""
    root = shared_data()
    if dataset == "dsb2018":
        from nucleikit.io.datasets.dsb2018 import DSB2018

        val = list(DSB2018(root / "dsb2018", subset="validation"))
        test = list(DSB2018(root / "dsb2018", subset="test"))
        organ_of = {}
        channel = "auto"  # DSB2018 mixes fluorescence, grey bright field and stained tissue
    else:
        from nucleikit.io.datasets.monuseg import LOOKS_20X_MPP, per_organ_labels

        overrides = LOOKS_20X_MPP if override_20x else {}
        val, _ = per_organ_labels(root / "monuseg", "validation", mpp_overrides=overrides)
        test, organ_of = per_organ_labels(root / "monuseg", "test", mpp_overrides=overrides)
        channel = "haematoxylin"
    if limit is not None:
        val, test = val[:limit], test[:limit]
    return val, test, channel, organ_of


def classical(val, test, channel: str, organ_of: dict) -> dict:
    """The Otsu + watershed floor: tuned on validation (mean AJI), scored once on test."""
    from nucleikit.infer.classical import otsu_watershed
    from nucleikit.infer.segment_eval import per_image_scores, summarise_by_organ

    val_px = [(s.load_image(mode="rgb"), s.load_labels()) for s in val]
    best = None
    for md, ms in CLASSICAL_GRID:
        recs = per_image_scores([t for _, t in val_px],
                                [otsu_watershed(p, channel=channel, min_distance=md, min_size=ms) for p, _ in val_px],
                                [s.id for s in val])
        aji = float(np.mean([r["aji"] for r in recs]))
        if best is None or aji > best[0]:
            best = (aji, md, ms)
    _, md, ms = best
    preds, truths = [], []
    for s in test:
        preds.append(otsu_watershed(s.load_image(mode="rgb"), channel=channel, min_distance=md, min_size=ms))
        truths.append(s.load_labels())
    per_image = per_image_scores(truths, preds, [s.id for s in test])
    return {"channel": channel, "min_distance": md, "min_size": ms, "val_aji": best[0],
            **summarise_by_organ(per_image, organ_of)}


def head_accuracy(seg, samples, organ_of: dict) -> dict:
    """Test figures of an instance head at the post-processing stored with its weights."""
    from nucleikit.infer.segment_eval import head_labels, per_image_scores, run_segmenter, summarise_by_organ

    run = run_segmenter(seg, samples)
    per_image = per_image_scores(run.truths, head_labels(seg, run), run.ids)
    return {"postprocess": dict(seg.meta.get("postprocess", {})), "seconds_maps": run.seconds,
            **summarise_by_organ(per_image, organ_of)}


def mask_accuracy(seg, samples) -> dict:
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
    mpps = [getattr(s, "mpp", None) for s in samples]
    seg = seg_factory()
    images = [s.load_image(mode="rgb") for s in samples]
    # megapixels of input; the reference runs on what the network sees (resampled to its mpp)
    mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    pixels = [seg.prepare(im, mpp)[0] for im, mpp in zip(images, mpps)]
    del images
    mean = np.asarray(meta["mean"], np.float32)
    std = np.asarray(meta["std"], np.float32)
    align = model.alignment  # the network's downsampling, declared in the registry
    reference_forward(model, pixels[:1], mean, std, align)  # warm-up
    ref = min(reference_forward(model, pixels, mean, std, align) for _ in range(repeat))
    out = tmp / "e2e"
    segment_file(paths[0], seg, out, mpp=mpps[0], overlay=False)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p, mpp in zip(paths, mpps):
            segment_file(p, seg, out, mpp=mpp, overlay=False)
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
    ap.add_argument("--dataset", choices=["dsb2018", "monuseg"], default="dsb2018")
    ap.add_argument("--models", nargs="+", default=None,
                    help="bundled segmenter names (default: r2unet unet for dsb2018, unet_he unet for monuseg)")
    ap.add_argument("--weights", nargs="+", type=Path, default=None, help="weights files instead of --models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="timed passes (best is kept)")
    ap.add_argument("--limit", type=int, default=None, metavar="N", help="first N images only (quick check)")
    ap.add_argument("--no-accuracy", action="store_true", help="speed only")
    ap.add_argument("--no-classical", action="store_true", help="skip the classical floor")
    ap.add_argument("--no-speed", action="store_true", help="accuracy only (e.g. while the machine is busy)")
    ap.add_argument("--no-20x-override", action="store_true",
                    help="MoNuSeg: read the three TCGA-HE images at the nominal 0.25 um/px")
    ap.add_argument("--bf16", action="store_true", help="run nucleikit under bf16 autocast (the reference stays fp32)")
    ap.add_argument("--padding", choices=("halo", "align"), default="halo",
                    help="context of images no larger than one read window (Segmenter padding; the reference "
                         "is always padded to the alignment only)")
    ap.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=1,
                    help="test-time augmentation views of nucleikit's segmenters (the reference stays one pass)")
    args = ap.parse_args()

    import torch

    from nucleikit.infer.predict import InferenceConfig
    from nucleikit.infer.segment import Segmenter
    from nucleikit.models.weights import load_weights, resolve_weights

    torch.set_num_threads(args.threads)
    val, samples, channel, organ_of = data(args.dataset, args.limit, not args.no_20x_override)
    default_models = ["r2unet", "unet"] if args.dataset == "dsb2018" else ["unet_he", "unet"]
    sources = [str(p) for p in args.weights] if args.weights else (args.models or default_models)
    results = {
        "machine": machine(),
        "threads": args.threads,
        "dataset": args.dataset,
        "split": f"{args.dataset} test ({len(samples)} images)",
        "protocol": args.limit is None,
        "bf16": args.bf16,
        "tta": args.tta,
        "padding": args.padding,
        "mpp_20x_override": args.dataset == "monuseg" and not args.no_20x_override,
        "papers": PAPER_ROWS[args.dataset],
        "models": {},
    }
    if not args.no_accuracy and not args.no_classical:
        results["classical"] = c = classical(val, samples, channel, organ_of)
        m = c["mean"]
        print(f"classical floor (min distance {c['min_distance']}, min size {c['min_size']}): Dice {m['dice']:.4f}  "
              f"DSB {m['dsb']:.4f}  AJI {m['aji']:.4f}  PQ {m['pq']:.4f}")
    tmp = Path(tempfile.mkdtemp(prefix="nk-seg-bench-"))
    config = InferenceConfig(threads=args.threads, bf16=args.bf16)
    for source in sources:
        path = resolve_weights(source)
        model, meta = load_weights(path)
        name = str(meta.get("name", Path(source).stem))

        def factory(path=path):
            return Segmenter.from_weights(path, config, tta=args.tta, padding=args.padding)

        entry: dict = {"weights": str(path), "num_params": meta.get("num_params"), "head": meta.get("target")}
        if not args.no_accuracy:
            seg = factory()
            if seg.head == "instance":
                entry["accuracy"] = a = head_accuracy(seg, samples, organ_of)
                m = a["mean"]
                print(f"{name} ({seg.markers} markers): Dice {m['dice']:.4f}  DSB {m['dsb']:.4f}  "
                      f"AP50 {m['ap50']:.4f}  AJI {m['aji']:.4f}  PQ {m['pq']:.4f}")
                for organ, o in a.get("per_organ", {}).items():
                    print(f"    {organ}: Dice {o['dice']:.4f}  AJI {o['aji']:.4f}  PQ {o['pq']:.4f}")
            else:
                entry["accuracy"] = mask_accuracy(seg, samples)
                for kind in ("distance", "detector"):
                    a = entry["accuracy"][kind]
                    print(f"{name} {kind} seeds: Dice {a['dice']:.4f} (pooled {a['pooled_dice']:.4f})  "
                          f"IoU {a['iou']:.4f}  DSB {a['dsb_score']:.4f}  AP50 {a['ap50']:.4f}  "
                          f"AJI {a['aji']:.4f}  PQ {a['pq']:.4f}")
        if not args.no_speed:
            entry["speed"] = speed(source, factory, samples, model, meta, args.threads, args.repeat, tmp / name)
            s = entry["speed"]
            print(f"{name}: end to end {s['e2e_mp_s']:.3f} MP/s, reference fp32 forward {s['reference_mp_s']:.3f} "
                  f"MP/s (ratio {s['e2e_ratio']:.2f}) over {s['megapixels']:.2f} MP")
        results["models"][name] = entry
    tag = ("monuseg_" if args.dataset == "monuseg" else "") + "_".join(results["models"]) + ("_bf16" if args.bf16 else "")
    tag += "_nominal_mpp" if results["mpp_20x_override"] is False and args.dataset == "monuseg" else ""
    tag += f"_tta{args.tta}" if args.tta > 1 else ""
    tag += f"_{args.padding}" if args.padding != "halo" else ""
    tag += f"_limit{args.limit}" if args.limit is not None else ""  # quick checks: not for the README
    print(f"wrote {save(f'segmentation_{tag}', results)}")


if __name__ == "__main__":
    main()
