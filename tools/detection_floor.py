"""Add the absolute detection floor (``postprocess.threshold_abs``) to detector weights.

    python tools/detection_floor.py src/nucleikit/weights/micronet.safetensors src/nucleikit/weights/udnet.safetensors

The training loop and ``tools/ship_weights.py`` tune the floor with xi; this tool adds it to
weights tuned before the floor existed, keeping their xi and peak distance: on the CRCHisto
fixed-split validation images, the largest floor that costs at most ``--tolerance`` of the
F1 at the weights' xi and of the recall at the lowest xi of the ship tool's grid
(:func:`nucleikit.train.tuning.tune_floor`; r = 6 px). It also records the highest map value
of blank tiles (white, black, white and dark with noise, 1 x 1), which the floor must exceed
for them to give no nuclei, and says so when it does not. The parameters are rewritten bit
for bit (float16 storage as shipped; float32 otherwise); only the metadata changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: Lowest xi of the grid tools/ship_weights.py tunes xi over (np.arange(0.05, 0.91, 0.025)).
LOWEST_XI = 0.05
RADIUS_PX = 6.0


def blank_tiles(seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs without a nucleus, as uint8 (H, W, 3): what a detector must find nothing in."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 12.0, (500, 500, 3))
    return {
        "white": np.full((500, 500, 3), 255, np.uint8),
        "black": np.zeros((500, 500, 3), np.uint8),
        "white_noise": np.clip(242 + noise, 0, 255).astype(np.uint8),
        "dark_noise": np.clip(20 + noise, 0, 255).astype(np.uint8),
        "1x1": np.full((1, 1, 3), 255, np.uint8),
    }


def blank_maxima(detector) -> dict[str, float]:
    """Highest map value of each blank tile (a peak there passes only a floor below it)."""
    out = {}
    for name, tile in blank_tiles().items():
        prob = detector.probability_map(tile)
        out[name] = float(prob.max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--data-root", type=Path, default=None, help="folder holding crchisto/ (default: ../shared/data)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.models.weights import load_weights, save_weights
    from nucleikit.train.tuning import FLOOR_GRID, FLOOR_TOLERANCE, tune_floor

    torch.set_num_threads(args.threads)
    root = (args.data_root or REPO.parent / "shared" / "data") / "crchisto"
    if not root.is_dir():
        sys.exit(f"{root}: no CRCHisto folder (use --data-root)")
    val = list(CRCHisto(root, split="fixed", subset="validation"))
    for path in args.weights:
        model, checked = load_weights(path)
        if checked.task != "detection":
            sys.exit(f"{path}: not detector weights (task {checked.task!r})")
        det = Detector(model, checked, config=InferenceConfig(threads=args.threads))
        meta = checked.to_dict()  # the JSON object, every key kept, rewritten below
        maps = [det.probability_map(s.load_image()) for s in val]  # CRCHisto is at the detectors' 0.55 um/px
        res = tune_floor(maps, [s.points for s in val], radius=RADIUS_PX, xi=det.threshold_rel,
                         min_distance=det.min_distance, lowest_xi=LOWEST_XI, threshold_abs_grid=FLOOR_GRID,
                         tolerance=FLOOR_TOLERANCE)
        blanks = blank_maxima(det)
        zero = res.table[0]
        # weights that record no post-processing (a converted state dict) get the xi and distance they ran with
        post = {"threshold_rel": det.threshold_rel, "min_distance": det.min_distance, **meta.get("postprocess", {})}
        meta = {**meta, "postprocess": {**post, "threshold_abs": res.threshold_abs}}
        meta["validation"] = {**meta.get("validation", {}), "floor": {
            "threshold_abs": res.threshold_abs,
            "criterion": (f"largest floor costing <= {FLOOR_TOLERANCE} of F1 at xi {det.threshold_rel:g} and of "
                          f"recall at xi {LOWEST_XI:g} (r = {RADIUS_PX:g} px)"),
            "f1": res.f1, "precision": res.precision, "recall": res.recall,
            "f1_without_floor": zero["f1"],
            "recall_lowest_xi": next(r["recall_lowest_xi"] for r in res.table if r["threshold_abs"] == res.threshold_abs),
            "recall_lowest_xi_without_floor": zero["recall_lowest_xi"],
            "blank_map_max": blanks,
            "images": [str(s.id) for s in val],
            "tuned_by": "tools/detection_floor.py",
        }}
        storage = "float16" if _stored_half(path) else "float32"
        save_weights(path, model, meta, storage=storage)
        print(f"{path}: threshold_abs {res.threshold_abs:g} (validation F1 {zero['f1']:.4f} -> {res.f1:.4f}, "
              f"recall at xi {LOWEST_XI:g} {zero['recall_lowest_xi']:.4f} -> "
              f"{meta['validation']['floor']['recall_lowest_xi']:.4f}); blank tiles' map maxima "
              + ", ".join(f"{k} {v:.4g}" for k, v in blanks.items()) + f" ({storage} storage)")
        for row in res.table:
            print(f"  floor {row['threshold_abs']:<7g} F1 {row['f1']:.4f}  recall@xi{LOWEST_XI:g} "
                  f"{row['recall_lowest_xi']:.4f}")
        high = [k for k, v in blanks.items() if v > res.threshold_abs]
        if high:
            print(f"  note: the floor does not clear the map maximum of: {', '.join(high)}")


def _stored_half(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return any(str(f.get_slice(k).get_dtype()) in ("F16", "float16") for k in f.keys())


if __name__ == "__main__":
    main()
