"""``nucleikit segment INPUT... -o OUTDIR``: nucleus outlines (instance segmentation)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .detect import IMAGE_SUFFIXES
from .options import add_model_option, add_mpp_option, add_runtime_options, batch_inputs, inference_config
from .report import BatchReport

DESCRIPTION = """Outline every nucleus. For each input image writes OUTDIR/<stem>_labels.tif (uint16
instance labels, 0 = background), OUTDIR/<stem>.geojson (QuPath detection objects with polygon
outlines; label, centroid, area and mean intensity as measurements), OUTDIR/<stem>.csv
(id,x,y,area,mean_intensity; 0-based pixel-centre centroids, area in pixels, mean luminance in
[0, 1]) and OUTDIR/<stem>_overlay.png. Touching nuclei are split by a watershed seeded by the
distance transform or by a nucleikit detector's peaks (--seeds; default: the kind chosen on
validation when the weights were shipped). Models trained without a pixel size (the bundled DSB2018
ones) run at the input's own resolution; --mpp matters for models that record one. INPUT may be
files, folders or glob patterns. A bad file
is reported in one line and skipped; the exit code is 2 if any input failed."""

#: Bundled segmenter used when none is named: U-Net, which beat R2U-Net on the DSB2018
#: validation and test images at this project's training budget (README, "Measured figures").
DEFAULT_SEGMENTER = "unet"

SEED_CHOICES = ("distance", "detector")  # nucleikit.infer.segment.SEED_KINDS, repeated so --help stays light


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (created)")
    add_model_option(p, default=DEFAULT_SEGMENTER)
    add_mpp_option(p)
    p.add_argument("--seeds", choices=SEED_CHOICES, default=None,
                   help="watershed markers: distance-transform maxima or the bundled detector's peaks "
                        "(default: the kind stored with the weights)")
    p.add_argument("--threshold", type=float, default=None, metavar="P",
                   help="foreground probability threshold (default: the value tuned with the weights)")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs")
    add_runtime_options(p)


def run(args: argparse.Namespace) -> int:
    from ..infer.pipelines import segment_file
    from ..infer.segment import Segmenter

    report = BatchReport("segment")
    out = Path(args.out)
    images = batch_inputs(args.inputs, IMAGE_SUFFIXES, report)
    if images:
        # loaded before the batch: missing or damaged weights are one error line, not one per file
        segmenter = Segmenter.from_weights(args.model, inference_config(args), seeds=args.seeds)
        if segmenter.seeds == "detector":
            _ = segmenter.detector
    for path in images:
        with report.item(path):
            res = segment_file(path, segmenter, out, mpp=args.mpp, threshold=args.threshold,
                               overlay=not args.no_overlay)
            where = f"{res.mpp:.3g} um/px ({res.mpp_source})" if res.mpp == res.mpp else "input resolution"
            report.ok(path, f"{res.count} nuclei", seconds=res.seconds, detail=f"{where}, {segmenter.seeds} seeds")
    return report.finish(out)
