"""``nucleikit analyze INPUT... -o OUTDIR``: detect, then type every nucleus."""

from __future__ import annotations

import argparse
from pathlib import Path

from .classify import DEFAULT_CLASSIFIER
from .detect import IMAGE_SUFFIXES, SLIDE_ONLY_SUFFIXES, _slide_summary
from .options import (
    DEFAULT_DETECTOR,
    add_mpp_option,
    add_output_option,
    add_peak_options,
    add_runtime_options,
    add_slide_options,
    batch_inputs,
    inference_config,
    positive_int,
)
from .report import BatchReport

DESCRIPTION = """Find and type the nuclei of each image: the detector finds the centres, the
classifier types each one (epithelial, fibroblast, inflammatory, others for the CRCHisto models).
For each input writes OUTDIR/<stem>_typed.csv (x,y,score,class,class_prob; 0-based full-resolution
pixel centres), OUTDIR/<stem>_typed.geojson (QuPath detections classified by type, with the
detection score and each class probability as measurements) and OUTDIR/<stem>_typed_overlay.png
(rings coloured by class); the _typed tag keeps them apart from detect's <stem>.csv in a shared
folder, and `evaluate typed` reads them. Whole slides (SVS, NDPI, SCN, BIF, pyramidal or large tiled
TIFF) are detected as `detect` does them (tissue tiles, bounded memory, resume), then each nucleus
is typed on a patch read from the slide at the classifier's resolution; they give
<stem>_typed.csv, .parquet, .geojson and .sqlite (see --formats; class as text) in level-0 pixels
plus <stem>_typed_tissue.png.
INPUT may be files, folders (their images and slides) or glob patterns. A bad file is reported and
skipped; the exit code is 2 if any input failed."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or slide files, folders or glob patterns")
    add_output_option(p)
    p.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="NAME|PATH",
                   help=f"bundled detector name or a .safetensors file (default: {DEFAULT_DETECTOR})")
    p.add_argument("--classifier", default=DEFAULT_CLASSIFIER, metavar="NAME|PATH",
                   help=f"bundled classifier name or a .safetensors file (default: {DEFAULT_CLASSIFIER})")
    add_mpp_option(p)
    add_peak_options(p)
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs (images only)")
    add_runtime_options(p)
    p.add_argument("--patch-batch", type=positive_int, default=256, metavar="N",
                   help="patches per classifier forward pass (default: 256)")
    p.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=None, metavar="N",
                   help=("classify each nucleus over N flips/rotations of its patch and average (1, 2, 4, 8; "
                         "default: the views the classifier was validated with, 1 for the bundled ones)"))
    p.add_argument("--stain-normalise", action="store_true",
                   help=("match each image's nucleus patches to the classifier's training stain (Reinhard, "
                         "L*a*b* moments) before typing: for H&E from another lab or scanner"))
    add_slide_options(p)


def _load_detector(name: str, config):
    from ..errors import WeightsError
    from ..infer.predict import Detector
    from ..models.weights import read_weights_meta, resolve_weights

    path = resolve_weights(name)
    task = read_weights_meta(path).task
    if task not in (None, "detection"):
        raise WeightsError(path, f"holds a {task} model, not a nucleus detector (--detector)")
    return Detector.from_weights(path, config=config)


def run(args: argparse.Namespace) -> int:
    from ..infer.classify import PatchInferenceConfig
    from ..infer.pipelines import analyze_file
    from .classify import load_classifier

    # Both models are loaded before any input is read: a weights problem stops
    # the command before anything is written.
    detector = _load_detector(args.detector, inference_config(args))
    patch_config = PatchInferenceConfig(batch_size=args.patch_batch, threads=args.threads, precision=args.precision,
                                        stain_normalise=args.stain_normalise, tta=args.tta)
    classifier = load_classifier(args.classifier, patch_config, option="--classifier")
    from ..io.slides import is_slide_path

    report = BatchReport("analyze")
    out = Path(args.out)
    for path in batch_inputs(args.inputs, IMAGE_SUFFIXES + SLIDE_ONLY_SUFFIXES, report):
        if is_slide_path(path):
            _analyze_slide(path, detector, classifier, out, args, report)
            continue
        with report.item(path):
            res = analyze_file(
                path,
                detector,
                classifier,
                out,
                mpp=args.mpp,
                overlay=not args.no_overlay,
                threshold_rel=args.threshold,
                min_distance=args.min_distance,
            )
            counts = _class_counts(res.typed, classifier.classes)
            report.ok(path, f"{res.count} nuclei ({counts})", seconds=res.seconds,
                      detail=f"{res.mpp:.3g} um/px ({res.mpp_source})", mpp=res.mpp, mpp_source=res.mpp_source,
                      precision={"detector": detector.precision, "classifier": classifier.precision})
    return report.finish(out)


def _class_counts(typed, classes) -> str:
    return ", ".join(f"{int((typed.labels == c).sum())} {c}" for c in classes) if typed is not None else ""


def _analyze_slide(path: Path, detector, classifier, out: Path, args: argparse.Namespace, report: BatchReport) -> None:
    from ..infer.pipelines import analyze_slide
    from . import verbosity

    with report.item(path):
        res, typed = analyze_slide(path, detector, classifier, out, mpp=args.mpp, level=args.level, tile=args.tile,
                                   tissue_mask=args.tissue_mask, resume=args.resume, formats=args.formats,
                                   threshold_rel=args.threshold, min_distance=args.min_distance,
                                   progress=not verbosity.quiet())
        summary, detail = _slide_summary(res)
        report.ok(path, f"{summary} ({_class_counts(typed, classifier.classes)})", seconds=res.seconds,
                  detail=detail, mpp=res.mpp, mpp_source=res.mpp_source,
                  precision={"detector": detector.precision, "classifier": classifier.precision})
