"""Whole-slide detection: end-to-end speed, peak memory at two slide sizes, and 1 vs 2 Dask workers.

    python benchmarks/wsi_speed.py [--model micronet] [--sizes 5000 10000] [--threads 2] [--bf16]
    python benchmarks/wsi_speed.py --quick        # tiny sizes: checks the script, not the machine

Slides: synthetic pyramidal TIFFs (JPEG tiles of 256 px, levels 1, 1/2, 1/4, ... as scanners
write them, 0.55 µm/px) whose level 0 is a grid of the 100 real 500 x 500 CRCHisto images,
each cell a seeded random image in a random one of its 8 flips/transposes, written to
``--workdir`` (default /tmp/nk-wsi-bench) tile by tile, so that building a 10k x 10k slide
never holds it whole.

Each measurement runs in a fresh Python process (``--child``), so its peak resident memory
(``VmHWM`` of ``/proc/self/status``) is that of one run: import, model, slide, outputs.
End to end = ``nucleikit.infer.wsi.detect_slide`` with every tile run (the slides are all
tissue; ``tissue_mask="all"``), writing CSV, Parquet, GeoJSON and SQLite; MP/s is
level-0 megapixels over wall time. The reference is the same network as a plain fp32 eager
forward pass (NCHW, ``torch.no_grad``) over 512 x 512 inputs, in megapixels of model input
per second (PROTOCOL.md §4): the ratio shows what tiling halos, reading, peak finding and
writing cost on top of the network.

Dask: ``--dask-slides`` independent slides of the smaller size through
``detect_slides_dask`` on a LocalCluster of 1, then 2 single-threaded workers (model loaded
once per worker, cluster start-up included in the time); speed-up = t(1) / t(2) and
efficiency = speed-up / 2.

Without bundled ``micronet`` weights an untrained MicroNet of the same architecture is used
(same network cost; its peaks, hence post-processing and output sizes, differ) and the
results say so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import machine, save, shared_data

MPP = 0.55
CELL = 500
TILE = 256


# --------------------------------------------------------------------------- synthetic slides


def _load_cells() -> list[np.ndarray]:
    from PIL import Image

    folder = shared_data() / "crchisto" / "images"
    return [np.asarray(Image.open(folder / f"img{k}.png").convert("RGB")) for k in range(1, 101)]


def _cell(cells: list[np.ndarray], rng_table: np.ndarray, i: int, j: int) -> np.ndarray:
    k, flip = rng_table[i, j]
    img = cells[k]
    if flip & 1:
        img = img[:, ::-1]
    if flip & 2:
        img = img[::-1]
    if flip & 4:
        img = img.transpose(1, 0, 2)
    return img


def _region(cells, table, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Level-0 pixels [y0, y1) x [x0, x1) of the mosaic (inside it)."""
    out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    for i in range(y0 // CELL, (y1 - 1) // CELL + 1):
        for j in range(x0 // CELL, (x1 - 1) // CELL + 1):
            cy0, cx0 = i * CELL, j * CELL
            ys, ye = max(y0, cy0), min(y1, cy0 + CELL)
            xs, xe = max(x0, cx0), min(x1, cx0 + CELL)
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = _cell(cells, table, i, j)[ys - cy0 : ye - cy0,
                                                                                xs - cx0 : xe - cx0]
    return out


def _tiles(cells, table, side: int, factor: int):
    """Tiles of the level downsampled by ``factor`` (box mean), row by row."""
    size = -(-side // factor)
    for ty in range(0, size, TILE):
        for tx in range(0, size, TILE):
            h, w = min(TILE, size - ty), min(TILE, size - tx)
            y0, x0 = ty * factor, tx * factor
            y1, x1 = min((ty + h) * factor, side), min((tx + w) * factor, side)
            block = _region(cells, table, y0, y1, x0, x1).astype(np.float32)
            ph, pw = h * factor - (y1 - y0), w * factor - (x1 - x0)
            if ph or pw:
                block = np.pad(block, ((0, ph), (0, pw), (0, 0)), mode="edge")
            small = block.reshape(h, factor, w, factor, 3).mean(axis=(1, 3)).round().astype(np.uint8)
            tile = np.zeros((TILE, TILE, 3), np.uint8)
            tile[:h, :w] = small
            yield tile


def build_slide(path: Path, side: int, cells: list[np.ndarray], seed: int) -> Path:
    """A side x side pyramidal TIFF at 0.55 µm/px from CRCHisto cells (module docstring)."""
    import tifffile

    if path.exists():
        return path
    n = -(-side // CELL)
    rng = np.random.default_rng(seed)
    table = np.stack([rng.integers(0, len(cells), (n, n)), rng.integers(0, 8, (n, n))], axis=-1)
    px_per_cm = 1e4 / MPP
    factors = [1]
    while side // (factors[-1] * 2) >= 1024:
        factors.append(factors[-1] * 2)
    tmp = path.with_suffix(".part.tif")
    options = dict(tile=(TILE, TILE), photometric="rgb", compression="jpeg", compressionargs={"level": 90},
                   resolutionunit="CENTIMETER", dtype=np.uint8)
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for k, f in enumerate(factors):
            size = -(-side // f)
            extra = dict(subifds=len(factors) - 1) if k == 0 else dict(subfiletype=1)
            tif.write(_tiles(cells, table, side, f), shape=(size, size, 3),
                      resolution=(px_per_cm / f, px_per_cm / f), **options, **extra)
    tmp.rename(path)
    return path


# --------------------------------------------------------------------------- measurements


def _vmhwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_slide(args: argparse.Namespace) -> dict:
    """One detect_slide run in this (fresh) process."""
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.infer.wsi import detect_slide

    det = Detector.from_weights(args.model, config=InferenceConfig(threads=args.threads, bf16=args.bf16))
    t0 = time.perf_counter()
    res = detect_slide(args.child, det, args.out, tissue_mask="all", resume=False, progress=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "count": res.count, "tiles": res.tiles_tissue, "model_shape": res.model_shape,
            "peak_rss_mib": _vmhwm_mib()}


def child_dask(args: argparse.Namespace) -> dict:
    from nucleikit.infer.distributed import SlideFailure, detect_slides_dask
    from nucleikit.infer.predict import InferenceConfig

    slides = [Path(p) for p in args.child.split(",")]
    t0 = time.perf_counter()
    results = detect_slides_dask(slides, args.model, args.out, workers=args.dask_workers, tissue_mask="all",
                                 resume=False, formats=("csv",), config=InferenceConfig(threads=1, bf16=args.bf16))
    failed = [r.reason for r in results if isinstance(r, SlideFailure)]
    return {"seconds": time.perf_counter() - t0, "failed": failed}


def reference_mp_s(weights: str, threads: int, repeat: int = 3) -> float:
    """Plain fp32 eager forward over 512 x 512 inputs: model megapixels per second."""
    import torch

    from nucleikit.models.weights import load_weights, resolve_weights

    torch.set_num_threads(threads)
    model, _ = load_weights(resolve_weights(weights))
    x = torch.rand(1, 3, 512, 512)
    with torch.no_grad():
        model(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeat):
            model(x)
    return repeat * 512 * 512 / 1e6 / (time.perf_counter() - t0)


def _run_child(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {' '.join(argv)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _weights(requested: str, workdir: Path) -> tuple[str, bool]:
    """The weights to use and whether they are trained."""
    from nucleikit.models.weights import bundled_weights_dir

    if Path(requested).is_file() or (bundled_weights_dir() / f"{requested}.safetensors").is_file():
        return requested, True
    import torch

    from nucleikit.infer.predict import DensePredictor
    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights

    path = workdir / "untrained_micronet.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = build_model("micronet")
        meta = {"name": "untrained", "model": "micronet", "model_kwargs": {}, "mpp": 0.5, "mean": [0.5] * 3,
                "std": [0.25] * 3, "postprocess": {"threshold_rel": 0.5, "min_distance": 3}}
        meta["halo"] = DensePredictor(model, mean=meta["mean"], std=meta["std"]).halo
        save_weights(path, model, meta)
    return str(path), False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="micronet")
    ap.add_argument("--sizes", type=int, nargs=2, default=[5000, 10000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the single-slide runs")
    ap.add_argument("--dask-slides", type=int, default=4, help="independent slides for the Dask runs")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "nk-wsi-bench")
    ap.add_argument("--quick", action="store_true", help="tiny slides (512, 1024; Dask on 2 x 512)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast in the nucleikit runs (not the reference)")
    # internal: one measurement in a fresh process
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--dask-workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child_dask(args) if args.dask_workers else child_slide(args)))
        return

    if args.quick:
        args.sizes, args.dask_slides = [512, 1024], 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    weights, trained = _weights(args.model, args.workdir)
    cells = _load_cells()
    small, large = args.sizes
    results: dict = {"machine": machine(), "model": args.model if trained else "micronet (untrained)",
                     "trained": trained, "threads": args.threads, "bf16": args.bf16, "mpp": MPP, "slides": {}, "dask": {}}
    results["reference_fp32_mp_s"] = reference_mp_s(weights, args.threads)

    for side in (small, large):
        slide = build_slide(args.workdir / f"crc_{side}.tif", side, cells, seed=side)
        row = _run_child(["--child", str(slide), "--out", str(args.workdir / "out"), "--model", weights,
                          "--threads", str(args.threads), *(["--bf16"] if args.bf16 else [])])
        row["megapixels"] = side * side / 1e6
        row["mp_s"] = row["megapixels"] / row["seconds"]
        row["model_megapixels"] = row["model_shape"][0] * row["model_shape"][1] / 1e6
        row["ratio_to_reference"] = (row["model_megapixels"] / row["seconds"]) / results["reference_fp32_mp_s"]
        results["slides"][str(side)] = row
        print(f"{side} x {side}: {row['mp_s']:.2f} MP/s end to end, peak RSS {row['peak_rss_mib']:.0f} MiB, "
              f"{row['count']} nuclei", flush=True)

    batch = [build_slide(args.workdir / f"crc_{small}_{k}.tif", small, cells, seed=1000 + k)
             for k in range(args.dask_slides)]
    for workers in (1, 2):
        row = _run_child(["--child", ",".join(map(str, batch)), "--out", str(args.workdir / f"dask{workers}"),
                          "--model", weights, "--dask-workers", str(workers), *(["--bf16"] if args.bf16 else [])])
        results["dask"][str(workers)] = row
        print(f"Dask, {workers} worker(s), {len(batch)} slides of {small}^2: {row['seconds']:.1f} s", flush=True)
    t1, t2 = results["dask"]["1"]["seconds"], results["dask"]["2"]["seconds"]
    results["dask_speedup"] = t1 / t2
    results["dask_efficiency"] = t1 / t2 / 2

    name = ("wsi_speed_quick" if args.quick else "wsi_speed") + ("_bf16" if args.bf16 else "")
    path = save(name, results)
    print(f"\nreference fp32 forward: {results['reference_fp32_mp_s']:.2f} model MP/s, {args.threads} threads")
    print("| slide | MP | end to end MP/s | model MP/s / reference | peak RSS (MiB) | nuclei |")
    print("|---|---:|---:|---:|---:|---:|")
    for side, r in results["slides"].items():
        print(f"| {side} x {side} | {r['megapixels']:.0f} | {r['mp_s']:.2f} | {r['ratio_to_reference']:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {r['count']} |")
    print(f"Dask 1 -> 2 workers: speed-up {results['dask_speedup']:.2f} (efficiency {results['dask_efficiency']:.2f})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
