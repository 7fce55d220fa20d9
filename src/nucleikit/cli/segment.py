"""``nucleikit segment INPUT... -o OUTDIR``: nucleus outlines (instance segmentation) of images and whole slides."""

from __future__ import annotations

import argparse
from pathlib import Path

from .detect import IMAGE_SUFFIXES, SLIDE_ONLY_SUFFIXES
from .options import (
    add_model_option,
    add_mpp_option,
    add_output_option,
    add_runtime_options,
    add_slide_options,
    batch_inputs,
    inference_config,
    probability,
)
from .report import BatchReport

DESCRIPTION = """Outline every nucleus. For each input image writes OUTDIR/<stem>_labels.tif (uint16
instance labels, 0 = background), OUTDIR/<stem>_outlines.geojson (QuPath detection objects with
polygon outlines; label, centroid, area and mean intensity as measurements),
OUTDIR/<stem>_outlines.csv (id,x,y,area,mean_intensity; 0-based pixel-centre centroids, area in
pixels, mean luminance in [0, 1]) and OUTDIR/<stem>_outlines_overlay.png: the _outlines tag keeps
them apart from detect's <stem>.csv in a shared folder. Whole slides (SVS, NDPI, SCN, BIF, pyramidal
or large tiled TIFF) are segmented tile by tile on their tissue, with a progress bar and in bounded
memory, and give <stem>_outlines.csv, .parquet and .sqlite (outlines as WKB) and .geojson (see
--formats) in level-0 pixels, plus <stem>_outlines_tissue.png; a nucleus crossing a tile seam is kept once, by the tile holding its
centroid, and an interrupted slide resumes from its finished tiles. Touching nuclei are split by a
watershed: the bundled H&E model (unet_he) marks each nucleus's core on its foreground, boundary and
distance maps; Alom et al.'s binary models (unet, r2unet) seed it by the distance transform or by a
nucleikit detector's peaks (--seeds). --model auto (the default) picks per image: unet_he for stained
bright-field images (H&E and the like: coloured, bright background), the DSB2018 unet_dsb for
fluorescence and grey images; slides always get unet_he; name a model to force it. unet_he runs at
0.5 um/px and resamples the input (--mpp, else the file's metadata, else assumed 0.5); the DSB2018
models record no pixel size and run at the input's own resolution.
INPUT may be files, folders or glob patterns. A bad file is reported in one line and skipped; the
exit code is 2 if any input failed."""

#: ``--model auto``: the bundled model is chosen per image by
#: :func:`nucleikit.infer.segment.image_kind` (:data:`nucleikit.infer.segment.AUTO_SEGMENTERS`).
DEFAULT_SEGMENTER = "auto"
#: Slides are stained bright field: ``auto`` gives them the H&E model.
SLIDE_AUTO_KIND = "stained"

SEED_CHOICES = ("distance", "detector")  # nucleikit.infer.segment.SEED_KINDS, repeated so --help stays light
PADDING_CHOICES = ("halo", "align")  # nucleikit.infer.segment.PADDINGS, likewise

#: A slide tile is segmented as one window, its core (--tile) plus a margin on each side; the
#: segmenter used for slides tiles its input by this many cores, so that a window (up to 1.5
#: cores of margin a side) reaches the network whole rather than cut again with the
#: segmenter's own halo recomputed on every piece (2.4x slower on CMU-1-Small-Region.svs).
SLIDE_WINDOW_TILES = 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or slide files, folders or glob patterns")
    add_output_option(p)
    add_model_option(p, default=DEFAULT_SEGMENTER)
    add_mpp_option(p)
    p.add_argument("--seeds", choices=SEED_CHOICES, default=None,
                   help="watershed markers: distance-transform maxima or the bundled detector's peaks "
                        "(default: the kind stored with the weights)")
    p.add_argument("--prob-threshold", "--threshold", dest="threshold", type=probability, default=None, metavar="P",
                   help="foreground probability threshold, 0 to 1 (default: the value tuned with the weights); "
                        "--threshold is the older name")
    p.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=1, metavar="N",
                   help="test-time augmentation: average the network's maps over N flipped/transposed views "
                        "(1, 2, 4 or 8; N times the network's work; default 1). unet_he on MoNuSeg validation: "
                        "AJI 0.615 with 1 view, 0.622 with 4, 0.624 with 8")
    p.add_argument("--padding", choices=PADDING_CHOICES, default="halo",
                   help="context of an image no larger than one tile's window: halo (default) reads the "
                        "network's receptive field of reflected context around it, so maps equal a tiled "
                        "pass's exactly; align pads it only to the network's alignment (fewer pixels, faster; "
                        "maps near the border differ). Larger images and slides are tiled with the halo")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs (images only)")
    add_runtime_options(p)
    add_slide_options(p)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..io.slides import is_slide_path

    report = BatchReport("segment")
    out = Path(args.out)
    images: list[Path] = []
    slides: list[Path] = []
    for path in batch_inputs(args.inputs, IMAGE_SUFFIXES + SLIDE_ONLY_SUFFIXES, report):
        (slides if is_slide_path(path) else images).append(path)
    # loaded before the batch: missing or damaged weights are one error line, not one per file
    config = inference_config(args)
    if images:
        segmenter = _load_segmenter(args, config)
        for path in images:
            _segment_image(path, segmenter, out, args, report)
    if slides:
        # Without --tile the slide's tiles are planned so that each window fits the memory budget whole.
        slide_config = replace(config, tile=SLIDE_WINDOW_TILES * args.tile) if args.tile else config
        segmenter = _load_segmenter(args, slide_config, slides=True)
        for path in slides:
            _segment_slide(path, segmenter, out, args, report)
    return report.finish(out)


def _load_segmenter(args: argparse.Namespace, config, *, slides: bool = False):
    from ..infer.segment import AutoSegmenter, Segmenter

    if args.model == "auto":
        auto = AutoSegmenter(config, seeds=args.seeds, tta=args.tta, padding=args.padding)
        if slides:
            return auto.load(SLIDE_AUTO_KIND)
        for kind in auto.models:  # all loaded now: damaged bundled weights fail before the batch
            auto.load(kind)
        return auto
    segmenter = Segmenter.from_weights(args.model, config, seeds=args.seeds, tta=args.tta, padding=args.padding)
    if segmenter.seeds == "detector":
        _ = segmenter.detector
    return segmenter


def _segment_image(path: Path, segmenter, out: Path, args: argparse.Namespace, report: BatchReport) -> None:
    from ..infer.pipelines import segment_file

    with report.item(path):
        res = segment_file(path, segmenter, out, mpp=args.mpp, threshold=args.threshold,
                           overlay=not args.no_overlay)
        where = f"{res.mpp:.3g} um/px ({res.mpp_source})" if res.mpp == res.mpp else "input resolution"
        seg = res.segmentation
        report.ok(path, f"{res.count} nuclei", seconds=res.seconds, detail=f"{res.model}, {where}, {seg.seeds} markers",
                  mpp=res.mpp, mpp_source=res.mpp_source, precision=_precision_of(segmenter, res.model))


def _segment_slide(path: Path, segmenter, out: Path, args: argparse.Namespace, report: BatchReport) -> None:
    from ..infer.wsi_segment import segment_slide
    from . import verbosity
    from .detect import _slide_summary

    with report.item(path):
        res = segment_slide(path, segmenter, out, mpp=args.mpp, level=args.level, tile=args.tile,
                            tissue_mask=args.tissue_mask, resume=args.resume, formats=args.formats,
                            threshold=args.threshold, progress=not verbosity.quiet())
        summary, detail = _slide_summary(res)
        report.ok(path, summary, seconds=res.seconds, detail=f"{segmenter.name}, {detail}", mpp=res.mpp,
                  mpp_source=res.mpp_source, precision=segmenter.precision)


def _precision_of(segmenter, model_name: str):
    """The precision of the model that segmented an image (``auto`` picks one per image)."""
    for candidate in getattr(segmenter, "loaded", {}).values():
        if candidate.name == model_name:
            return candidate.precision
    return getattr(segmenter, "precision", None)
