"""``nucleikit demo``: the bundled sample image through the default detector."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_model_option, add_runtime_options, inference_config, output_folder

DESCRIPTION = """Detect nuclei in the small H&E sample shipped with nucleikit (CC0, a region of
OpenSlide's CMU-1 slide at 0.499 um/px) and print a summary; outputs go to OUTDIR."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default="nucleikit-demo", type=output_folder, metavar="OUTDIR",
                   help="output folder (default: nucleikit-demo)")
    add_model_option(p)
    add_runtime_options(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..infer.pipelines import detect_file
    from ..infer.predict import Detector
    from ..io.images import sample_image_path

    sample = sample_image_path()
    detector = Detector.from_weights(args.model, config=inference_config(args))
    res = detect_file(sample, detector, Path(args.out))
    det = res.detections
    print(f"sample: {sample.name} ({res.mpp:g} um/px from {res.mpp_source}); model: {detector.name} "
          f"(trained at {detector.mpp:g} um/px, xi={detector.threshold_rel:g}, min distance {detector.min_distance:g} px); "
          f"precision {detector.precision.used} ({detector.precision.reason})")
    if det is not None and len(det):
        print(f"found {res.count} nuclei in {res.seconds:.2f} s; score median {float(np.median(det.scores)):.3f}")
    else:
        print(f"found {res.count} nuclei in {res.seconds:.2f} s")
    for kind, path in res.outputs.items():
        print(f"  {kind:8s} {path}")
    return 0
