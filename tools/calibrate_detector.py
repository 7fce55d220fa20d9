"""Add a score calibration to detector weights already shipped, without touching their tensors.

    python tools/calibrate_detector.py src/nucleikit/weights/micronet.safetensors
    python tools/calibrate_detector.py src/nucleikit/weights/udnet.safetensors

The weights' own maps of the CRCHisto fixed-split validation images (PROTOCOL.md; never the
test images) at their shipped peak distance, every peak above 0.05 x the map maximum (the
lowest xi of the shipping grid), matched at r = 6 px in the images' own pixels; the isotonic
fit (nucleikit.infer.calibration) is written into the metadata's ``calibration`` by
tools/weights_meta.py, which checks the tensor bytes are unchanged. Detectors trained by
``nucleikit experiment pooled`` get theirs from tools/ship_weights.py instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np

    from nucleikit.infer.calibration import fit_map_calibration
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.io.datasets.base import find_shared_dir
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.transforms import scale_factor, scale_points

    shared = find_shared_dir(REPO)
    if shared is None:
        raise SystemExit("needs ../shared/data (CRCHisto validation images)")
    det = Detector.from_weights(args.weights, config=InferenceConfig(threads=args.threads, precision="fp32"))
    val = list(CRCHisto(shared / "data" / "crchisto", split="fixed", subset="validation"))
    maps, truths, radii = [], [], []
    for s in val:
        factor = scale_factor(s.mpp, det.mpp)
        maps.append(det.detect(s.load_image(), mpp=s.mpp, keep_map=True).prob)
        truths.append(scale_points(np.asarray(s.points, float), factor))
        radii.append(6.0 * factor)  # 6 px of the image = the same pairs in the map's pixels
    cal = fit_map_calibration(maps, truths, radii, min_distance=det.min_distance, lowest_xi=0.05,
                              fitted_on="CRCHisto fixed-split validation images, r = 6 px")
    print(f"{args.weights.name}: {cal.n_peaks} validation peaks, {len(cal.map_values)} knots; "
          + ", ".join(f"P(true | {v:.3g}) = {p:.2f}" for v, p in zip(cal.map_values[::8], cal.probabilities[::8])))
    spec = importlib.util.spec_from_file_location("weights_meta", REPO / "tools" / "weights_meta.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(args.weights), "--set", "calibration=" + json.dumps(cal.to_meta())])


if __name__ == "__main__":
    main()
