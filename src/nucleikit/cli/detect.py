"""``nucleikit detect INPUT... -o OUTDIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_model_option, add_mpp_option, add_runtime_options, expand_inputs, inference_config
from .report import BatchReport

DESCRIPTION = """Find nucleus centres. For each input image writes OUTDIR/<stem>.csv (x,y,score;
0-based full-resolution pixel centres), OUTDIR/<stem>.geojson (QuPath detection objects) and
OUTDIR/<stem>_overlay.png. INPUT may be files, folders (their images) or glob patterns.
A bad file is reported and skipped; the exit code is 2 if any input failed."""

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (created)")
    add_model_option(p)
    add_mpp_option(p)
    p.add_argument("--threshold", type=float, default=None, metavar="XI",
                   help="keep peaks above XI times the map maximum (default: the value tuned with the weights)")
    p.add_argument("--min-distance", type=float, default=None, metavar="PX",
                   help="minimum distance between peaks in model pixels (default: tuned with the weights)")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs")
    add_runtime_options(p)


def run(args: argparse.Namespace) -> int:
    from ..infer.pipelines import detect_file
    from ..infer.predict import Detector

    files, problems = expand_inputs(args.inputs, IMAGE_SUFFIXES)
    report = BatchReport("detect")
    for item, reason in problems:
        report.fail(item, reason)
    detector = Detector.from_weights(args.model, config=inference_config(args))
    out = Path(args.out)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            report.fail(path, f"same name as {stems[path.stem]}: outputs would overwrite each other")
            continue
        stems[path.stem] = path
        with report.item(path):
            res = detect_file(
                path,
                detector,
                out,
                mpp=args.mpp,
                overlay=not args.no_overlay,
                threshold_rel=args.threshold,
                min_distance=args.min_distance,
            )
            report.ok(path, f"{res.count} nuclei", seconds=res.seconds,
                      detail=f"{res.mpp:.3g} um/px ({res.mpp_source})")
    return report.finish(out)
