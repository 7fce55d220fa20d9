"""Add the training stain (L*a*b* moments of the training patches) to classifier weights.

    python tools/stain_moments.py src/nucleikit/weights/dcrn.safetensors src/nucleikit/weights/densenet.safetensors

``nucleikit.train.classify.train_classifier`` stores ``lab_mean``/``lab_std`` with the
weights it writes; this tool adds them to weights trained before it did, from the same
patches: those of the CRCHisto images listed in the metadata's ``train_images``, cut at the
classifier's patch size and resolution. The parameters are rewritten bit for bit (float16
storage as shipped; float32 otherwise), so every figure measured on the weights still holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--data-root", type=Path, default=None, help="folder holding crchisto/ (default: ../shared/data)")
    args = ap.parse_args()

    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.models.weights import load_weights, save_weights
    from nucleikit.train.classify import PatchSet
    from nucleikit.transforms import lab_moments

    root = (args.data_root or REPO.parent / "shared" / "data") / "crchisto"
    if not root.is_dir():
        sys.exit(f"{root}: no CRCHisto folder (use --data-root)")
    samples = {s.id: s for s in CRCHisto(root, split="fixed", subset="all", task="classification")}
    for path in args.weights:
        model, checked = load_weights(path)
        meta = checked.to_dict()  # the JSON object, every key kept, rewritten below
        ids = meta.get("train_images")
        if meta.get("task") != "classification" or not ids:
            sys.exit(f"{path}: not classifier weights listing their train_images")
        missing = sorted(set(ids) - set(samples))
        if missing:
            sys.exit(f"{path}: training image(s) not in CRCHisto: {', '.join(missing[:5])}")
        patches = PatchSet.from_samples([samples[i] for i in ids], classes=tuple(meta["classes"]),
                                        patch=int(meta["patch"]), mpp=float(meta["mpp"]))
        lab_mean, lab_std = lab_moments(patches.patches)
        meta = {**meta, "lab_mean": [float(v) for v in lab_mean], "lab_std": [float(v) for v in lab_std]}
        # Stored float16 parameters come back exactly from float32, so re-storing them changes nothing.
        storage = "float16" if _stored_half(path) else "float32"
        save_weights(path, model, meta, storage=storage)
        print(f"{path}: {len(patches)} training patches, L*a*b* mean {lab_mean.round(2).tolist()} "
              f"std {lab_std.round(2).tolist()} ({storage} storage)")


def _stored_half(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return any(str(f.get_slice(k).get_dtype()) in ("F16", "float16") for k in f.keys())


if __name__ == "__main__":
    main()
