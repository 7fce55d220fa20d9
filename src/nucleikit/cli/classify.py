"""``nucleikit classify IMAGE --points FILE -o OUTDIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_mpp_option, add_output_option, add_precision_options, positive_int

#: Bundled classifier weights used when none is named (nucleikit/weights/dcrn.safetensors).
DEFAULT_CLASSIFIER = "dcrn"

DESCRIPTION = """Type given nucleus centres (epithelial, fibroblast, inflammatory, others for the
CRCHisto classifiers). Reads IMAGE and the centres in FILE (.csv with x,y columns in 0-based pixel
centres, QuPath .geojson, or .mat) and writes OUTDIR/<image stem>_classified.csv with header
x,y,class,class_prob, one row per centre in the order given (so `detect -o DIR` then `classify
--points DIR/<stem>.csv -o DIR` keeps both files; `evaluate typed` reads it). A points file without points, or a
point more than 1 px outside the image, is an error (exit 2) and nothing is written; points less than 1 px
outside (an annotation tool's rounding) are typed at the pixel on the edge, and the summary says how many."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="image file (png, tif, bmp, jpg)")
    p.add_argument("--points", required=True, metavar="FILE", help="nucleus centres (.csv, .geojson, .json, .mat)")
    add_output_option(p)
    p.add_argument(
        "--model",
        default=DEFAULT_CLASSIFIER,
        metavar="NAME|PATH",
        help=f"bundled classifier name or a .safetensors file (default: {DEFAULT_CLASSIFIER})",
    )
    add_mpp_option(p)
    g = p.add_argument_group("runtime")
    g.add_argument("--threads", type=positive_int, default=2, help="CPU threads for torch (default: 2)")
    # patches per pass are --patch-batch, as in analyze; --batch-size is tiles per pass elsewhere (issue 16)
    g.add_argument("--patch-batch", "--batch-size", dest="batch_size", type=positive_int, default=256, metavar="N",
                   help="patches per forward pass (default: 256); --batch-size is the older name")
    add_precision_options(g)
    p.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=None, metavar="N",
                   help=("classify each nucleus over N flips/rotations of its patch and average (1, 2, 4, 8; "
                         "default: the views the classifier was validated with, 1 for the bundled ones)"))
    p.add_argument("--stain-normalise", action="store_true",
                   help=("match the image's nucleus patches to the classifier's training stain (Reinhard, "
                         "L*a*b* moments) before typing: for H&E from another lab or scanner"))


def run(args: argparse.Namespace) -> int:
    from ..infer.classify import PatchInferenceConfig
    from ..infer.pipelines import classify_file
    from .options import require_file

    image = require_file(args.image)
    points = require_file(args.points)
    config = PatchInferenceConfig(batch_size=args.batch_size, threads=args.threads, precision=args.precision,
                                  stain_normalise=args.stain_normalise, tta=args.tta)
    classifier = load_classifier(args.model, config, option="--model")
    out = Path(args.out)
    res = classify_file(image, points, classifier, out, mpp=args.mpp)
    counts = _class_counts(res.typed.labels, classifier.classes) if res.typed is not None else ""
    print(f"{image}: {res.count} nuclei typed ({counts}) in {res.seconds:.2f} s, "
          f"{res.mpp:.3g} um/px ({res.mpp_source}); wrote {res.outputs['csv']}" + _clipped_note(res.clipped))
    write_run_record(out, "classify", {str(image): {"mpp": res.mpp, "mpp_source": res.mpp_source,
                                                    "precision": classifier.precision}})
    return 0


def _clipped_note(clipped: int) -> str:
    """The summary's note on points a fraction of a pixel outside the image, or ``""``."""
    if not clipped:
        return ""
    which = "1 point lies" if clipped == 1 else f"{clipped} points lie"
    return f"; {which} less than 1 px outside the image: typed at the pixel on its edge"


def write_run_record(out: Path, command: str, inputs: dict) -> None:
    """``OUTDIR/<command>_run.json`` for a one-input command (:class:`~nucleikit.cli.report.BatchReport`'s record)."""
    from .report import BatchReport

    report = BatchReport(command)
    for item, entry in inputs.items():
        report.record(item, **entry)
    report.write_run_record(out)


def load_classifier(name: str, config, *, option: str):
    """The classifier of ``name``; a clear error when the default is not bundled.

    Raises
    ------
    ConfigError
        ``name`` is the default and this installation bundles no classifier.
    WeightsError
        Any other missing or unusable weights.
    """
    from ..errors import ConfigError
    from ..infer.classify import Classifier
    from ..models.weights import bundled_weights_dir

    if name == DEFAULT_CLASSIFIER and not Path(name).is_file():
        if not (bundled_weights_dir() / f"{name}.safetensors").is_file():
            raise ConfigError(
                f"no classifier weights are bundled with this nucleikit ({name!r} not found): train one with "
                f"`nucleikit train classification ...` and pass its best.safetensors with {option} PATH"
            )
    return Classifier.from_weights(name, config=config)


def _class_counts(labels, classes) -> str:
    import numpy as np

    return ", ".join(f"{int(np.count_nonzero(labels == c))} {c}" for c in classes)
