"""``nucleikit evaluate detection --pred DIR --truth DIR --radius R [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError

DESCRIPTION = """Score predicted points against truth points as PROTOCOL.md says: one-to-one pairs
within RADIUS pixels, the most pairs and then the least total distance; precision, recall and F1
pooled over all images (TP, FP, FN summed first), the mean of per-image F1, and ED (mean distance
of the pairs). Predictions are OUTDIR/<stem>.csv files as `nucleikit detect` writes them; truth
files are <stem>.csv, .geojson, .json or .mat (also <stem>_detection.mat, searched recursively)."""

POINT_SUFFIXES = (".csv", ".geojson", ".json", ".mat")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=["detection"], help="what to evaluate")
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted point files")
    p.add_argument("--truth", required=True, metavar="DIR", help="folder of truth point files (searched recursively)")
    p.add_argument("--radius", required=True, type=float, metavar="R", help="matching radius in pixels")
    p.add_argument("--json", action="store_true", help="print one JSON object (precision, recall, f1, ed, tp, fp, fn, ...)")
    p.add_argument("--per-image", action="store_true", help="include per-image figures in the JSON")
    p.add_argument("--min-score", type=float, default=None, help="ignore predictions scored below this")


def _truth_index(folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in POINT_SUFFIXES:
            stem = p.stem[: -len("_detection")] if p.stem.endswith("_detection") else p.stem
            index.setdefault(stem, p)
    return index


def run(args: argparse.Namespace) -> int:
    from ..io.points import read_points
    from ..metrics import evaluate_points

    pred_dir, truth_dir = Path(args.pred), Path(args.truth)
    for d in (pred_dir, truth_dir):
        if not d.is_dir():
            raise InputError(d, "not a folder")
    if not args.radius > 0:
        raise InputError(str(args.radius), "the radius must be positive")
    preds = sorted(p for p in pred_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not preds:
        raise InputError(pred_dir, "no prediction .csv files in this folder")
    truths = _truth_index(truth_dir)
    missing = [p.name for p in preds if p.stem not in truths]
    if missing:
        raise InputError(truth_dir, f"no truth file for {len(missing)} prediction(s), e.g. {missing[0]}")
    pred_xy, truth_xy, names = [], [], []
    for p in preds:
        ps = read_points(p, allow_empty=True)
        xy = ps.xy
        if args.min_score is not None:
            if ps.scores is None:
                raise InputError(p, "--min-score given but the file has no score column")
            xy = xy[ps.scores >= args.min_score]
        pred_xy.append(xy)
        truth_xy.append(read_points(truths[p.stem], allow_empty=True).xy)
        names.append(p.stem)
    report = evaluate_points(pred_xy, truth_xy, args.radius)
    pooled = report.pooled.to_dict()
    result = {
        "precision": pooled["precision"],
        "recall": pooled["recall"],
        "f1": pooled["f1"],
        "ed": pooled["ed"],
        "tp": pooled["tp"],
        "fp": pooled["fp"],
        "fn": pooled["fn"],
        "mean_image_f1": report.mean_f1,
        "images": len(names),
        "radius": args.radius,
    }
    if args.per_image:
        result["per_image"] = {n: s.to_dict() for n, s in zip(names, report.per_image)}
    if args.json:
        # JSON has no NaN: an undefined ED (no true positive) is null.
        clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in result.items()}
        json.dump(clean, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"{len(names)} images, radius {args.radius:g} px")
        print(f"precision {result['precision']:.4f}  recall {result['recall']:.4f}  F1 {result['f1']:.4f}"
              f"  (mean per-image F1 {result['mean_image_f1']:.4f})")
        ed = result["ed"]
        print(f"TP {result['tp']}  FP {result['fp']}  FN {result['fn']}  ED {ed:.2f} px" if ed == ed else
              f"TP {result['tp']}  FP {result['fp']}  FN {result['fn']}  ED n/a")
    return 0
