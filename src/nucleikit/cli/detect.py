"""``nucleikit detect INPUT... -o OUTDIR``: images and whole slides."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    add_model_option,
    add_mpp_option,
    add_output_option,
    add_peak_options,
    add_runtime_options,
    add_scale_out_options,
    add_slide_options,
    batch_inputs,
    inference_config,
)
from .report import BatchReport

DESCRIPTION = """Find nucleus centres. For each input image writes OUTDIR/<stem>.csv (x,y,score;
0-based full-resolution pixel centres), OUTDIR/<stem>.geojson (QuPath detection objects) and
OUTDIR/<stem>_overlay.png. Whole slides (SVS, NDPI, SCN, BIF, pyramidal or large tiled TIFF) are
processed tile by tile on their tissue, with a progress bar and in bounded memory, and give
<stem>.csv, .parquet, .geojson and .sqlite (see --formats) in level-0 pixels plus <stem>_tissue.png;
an interrupted slide resumes from its finished tiles. --scheduler spreads slides over Dask workers.
INPUT may be files, folders (their images and slides) or glob patterns. A bad file is reported and
skipped; the exit code is 2 if any input failed."""

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
# Suffixes always read as slides (nucleikit.io.slides.SLIDE_SUFFIXES; repeated so --help stays light).
SLIDE_ONLY_SUFFIXES = (".svs", ".ndpi", ".scn", ".bif")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or slide files, folders or glob patterns")
    add_output_option(p)
    add_model_option(p)
    add_mpp_option(p)
    add_peak_options(p)
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs (images only)")
    add_runtime_options(p)
    add_slide_options(p)
    add_scale_out_options(p)


def run(args: argparse.Namespace) -> int:
    from ..io.slides import is_slide_path

    report = BatchReport("detect")
    out = Path(args.out)
    images: list[Path] = []
    slides: list[Path] = []
    for path in batch_inputs(args.inputs, IMAGE_SUFFIXES + SLIDE_ONLY_SUFFIXES, report):
        (slides if is_slide_path(path) else images).append(path)

    detector = None
    if images or (slides and args.scheduler is None):
        from ..infer.predict import Detector

        detector = Detector.from_weights(args.model, config=inference_config(args))
    for path in images:
        _detect_image(path, detector, out, args, report)
    if slides and args.scheduler is not None:
        _detect_slides_dask(slides, out, args, report)
    else:
        for path in slides:
            _detect_slide(path, detector, out, args, report)
    return report.finish(out)


def _detect_image(path: Path, detector, out: Path, args: argparse.Namespace, report: BatchReport) -> None:
    from ..infer.pipelines import detect_file

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
                  detail=f"{res.mpp:.3g} um/px ({res.mpp_source})", mpp=res.mpp, mpp_source=res.mpp_source,
                  precision=detector.precision)


def _slide_options(args: argparse.Namespace) -> dict:
    return dict(mpp=args.mpp, level=args.level, tissue_mask=args.tissue_mask, resume=args.resume,
                formats=args.formats, threshold_rel=args.threshold, min_distance=args.min_distance)


def _slide_summary(res) -> tuple[str, str]:
    mpp = f"{res.mpp:.3g} um/px ({res.mpp_source})" if res.mpp is not None else "um/px unknown"
    resumed = f", {res.tiles_resumed} resumed" if res.tiles_resumed else ""
    detail = f"level {res.level}, {mpp}, {res.tiles_tissue} of {res.tiles_total} tiles with tissue{resumed}"
    return f"{res.count} nuclei", detail


def _detect_slide(path: Path, detector, out: Path, args: argparse.Namespace, report: BatchReport) -> None:
    from ..infer.wsi import detect_slide
    from . import verbosity

    with report.item(path):
        res = detect_slide(path, detector, out, tile=args.tile, progress=not verbosity.quiet(),
                           **_slide_options(args))
        summary, detail = _slide_summary(res)
        report.ok(path, summary, seconds=res.seconds, detail=detail, mpp=res.mpp, mpp_source=res.mpp_source,
                  precision=detector.precision)


def _detect_slides_dask(slides: list[Path], out: Path, args: argparse.Namespace, report: BatchReport) -> None:
    from ..infer.distributed import SlideFailure, detect_slides_dask
    from ..infer.predict import InferenceConfig

    def record(res) -> None:
        if isinstance(res, SlideFailure):
            report.fail(res.path, res.reason)
        else:
            summary, detail = _slide_summary(res)
            report.ok(res.path, summary, seconds=res.seconds, detail=detail)

    # One thread per worker: the workers are the parallelism.
    # Each worker resolves --precision auto for its own CPU.
    config = InferenceConfig(tile=args.tile, batch_size=args.batch_size, threads=1, precision=args.precision,
                             memory=args.memory)
    detect_slides_dask(slides, args.model, out, scheduler=args.scheduler, workers=args.workers, config=config,
                       tile=args.tile, on_result=record, **_slide_options(args))
