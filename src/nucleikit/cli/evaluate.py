"""``nucleikit evaluate detection|typed --pred DIR --truth DIR --radius R [--json]``,
``nucleikit evaluate segmentation --pred DIR --truth DIR|FILE.csv [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, InputError
from .options import finite_float, positive_float, require_folder

DESCRIPTION = """Score predicted points against truth points as PROTOCOL.md says: one-to-one pairs
within RADIUS pixels, the most pairs and then the least total distance; precision, recall and F1
pooled over all images (TP, FP, FN summed first), the mean of per-image F1, and ED (mean distance
of the pairs). Predictions are the OUTDIR/<stem>.csv files `nucleikit detect` writes (other
commands' tagged files in the same folder, <stem>_outlines.csv, <stem>_typed.csv,
<stem>_classified.csv, are left out); truth files are <stem>.csv, .geojson, .json or .mat (also <stem>_detection.mat, searched recursively).

`evaluate typed` scores typed nuclei end to end (PROTOCOL.md): F_d (detection F1 of all predictions
against all classified truth points), F1_c per class (predictions of class c against truth of class
c), their support-weighted mean, and the type accuracy of the detection pairs. Predictions are the
<stem>_typed.csv files of `nucleikit analyze` or the <stem>_classified.csv files of `nucleikit
classify` (a class column); truth is <stem>.csv with a class column,
a QuPath <stem>.geojson with classifications, or a CRCHisto folder <stem>/ of <stem>_<class>.mat
files (e.g. --truth .../crchisto/Classification). Every point must carry one of --classes."""

POINT_SUFFIXES = (".csv", ".geojson", ".json", ".mat")
#: The commands whose point tables each evaluation scores (their tags: nucleikit.export.OUTPUT_TAGS).
SCORED_BY = {"detection": ("detect",), "typed": ("analyze", "classify")}
#: Where to send the outputs of each command instead.
_EVALUATED_BY = {"detect": "evaluate detection", "analyze": "evaluate typed", "classify": "evaluate typed",
                 "segment": "evaluate segmentation"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=["detection", "typed", "segmentation"], help="what to evaluate")
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted point files (label TIFFs)")
    p.add_argument("--truth", required=True, metavar="DIR",
                   help="folder of truth point files (searched recursively) or label images / mask folders; "
                        "segmentation also takes an RLE .csv file")
    p.add_argument("--radius", type=positive_float, default=None, metavar="R",
                   help="matching radius in pixels (detection and typed: required)")
    p.add_argument("--json", action="store_true", help="print one JSON object (precision, recall, f1, ed, tp, fp, fn, ...)")
    p.add_argument("--per-image", action="store_true", help="include per-image figures in the JSON")
    p.add_argument("--min-score", type=finite_float, default=None, help="ignore predictions scored below this")
    p.add_argument("--classes", default=None, metavar="A,B,...",
                   help="typed: class names (default: epithelial,fibroblast,inflammatory,others)")


def _truth_candidates(folder: Path) -> dict[str, list[Path]]:
    """Every truth file under ``folder`` by image stem (``img1_detection.mat`` is ``img1``'s)."""
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.rglob("*")):
        # a FIFO or a dangling link is kept, so that reading it names the problem
        if p.suffix.lower() in POINT_SUFFIXES and not p.is_dir():
            stem = p.stem[: -len("_detection")] if p.stem.endswith("_detection") else p.stem
            found.setdefault(stem, []).append(p)
    return found


def _truth_index(folder: Path) -> dict[str, Path]:
    """The one truth file of each stem; a stem with several is a :class:`_Ambiguous` entry."""
    return {stem: paths[0] if len(paths) == 1 else _Ambiguous(paths)
            for stem, paths in _truth_candidates(folder).items()}


class _Ambiguous(list):
    """Several truth files for one image: an error only if that image is scored."""


def _truth_for(truths: dict, stem: str, folder: Path) -> Path:
    """The truth file of ``stem``; two candidates are refused rather than picked by sort order."""
    found = truths[stem]
    if isinstance(found, _Ambiguous):
        names = " and ".join(str(p.relative_to(folder)) for p in found[:2])
        more = f" (and {len(found) - 2} more)" if len(found) > 2 else ""
        raise InputError(folder, f"{len(found)} truth files for {stem}: {names}{more}; keep one, or point "
                                 "--truth at the folder holding the right one")
    return found


def _command_of(stem: str) -> tuple[str, str]:
    """(command that wrote a table of this file stem, the input's stem): the longest tag it ends with."""
    from ..export import OUTPUT_TAGS

    tagged = [(tag, cmd) for cmd, tag in OUTPUT_TAGS.items() if tag and stem.endswith(tag) and stem != tag]
    if not tagged:
        return "detect", stem
    tag, cmd = max(tagged, key=lambda item: len(item[0]))
    return cmd, stem[: -len(tag)]


def prediction_tables(folder: Path, task: str) -> dict[str, Path]:
    """The prediction CSVs of ``folder`` that ``evaluate <task>`` scores, by input stem (sorted).

    A folder may hold several commands' outputs (``detect``'s ``<stem>.csv`` beside
    ``segment``'s ``<stem>_outlines.csv``...); only the tables of :data:`SCORED_BY` ``[task]``
    are kept.

    Raises
    ------
    InputError
        No CSV at all; only other commands' tables (one line saying whose and which evaluation
        reads them); or one image with two typed tables (``analyze``'s and ``classify``'s).
    """
    from ..export import OUTPUT_TAGS

    wanted = SCORED_BY[task]
    found: dict[str, Path] = {}
    others: dict[str, int] = {}
    csvs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and not p.is_dir())
    for p in csvs:
        command, stem = _command_of(p.stem)
        if command not in wanted:
            others[command] = others.get(command, 0) + 1
        elif stem in found:
            raise InputError(folder, f"two typed tables for {stem}: {found[stem].name} and {p.name}; keep one, "
                                     "or move one to another folder")
        else:
            found[stem] = p
    if found:
        return found
    if not others:
        raise InputError(folder, "no prediction .csv files in this folder")
    theirs = ", ".join(f"{n} {cmd} table(s) <stem>{OUTPUT_TAGS[cmd]}.csv" for cmd, n in others.items())
    ours = " or ".join(f"{cmd}'s <stem>{OUTPUT_TAGS[cmd]}.csv" for cmd in wanted)
    hint = "; ".join(f"{_EVALUATED_BY[cmd]} scores {cmd}'s" for cmd in others if _EVALUATED_BY[cmd] != f"evaluate {task}")
    raise InputError(folder, f"holds {theirs}, not {ours}" + (f" ({hint})" if hint else ""))


def _typed_points(path: Path, classes: tuple[str, ...]):
    """(xy, labels) of a typed point file, or of a CRCHisto folder of per-class .mat files."""
    import numpy as np

    from ..io.points import read_points

    if path.is_dir():
        from ..io.datasets.crchisto import merge_class_points
        from ..io.mat import read_mat_points

        files = {c: path / f"{path.name}_{c}.mat" for c in classes}
        found = {c: f for c, f in files.items() if f.is_file()}
        if not found:
            raise InputError(path, f"no per-class files {path.name}_<class>.mat for the classes {', '.join(classes)}")
        return merge_class_points({c: read_mat_points(f) for c, f in found.items()})
    points = read_points(path, allow_empty=True)
    if len(points) and points.labels is None:
        raise InputError(path, "the points carry no class (a class column or QuPath classification is needed)")
    labels = points.labels if points.labels is not None else np.zeros(0, dtype=str)
    unclassified = int(np.count_nonzero(labels == ""))
    if unclassified:
        raise InputError(path, f"{unclassified} of {len(labels)} points have no class")
    unknown = sorted(set(labels.tolist()) - set(classes))
    if unknown:
        raise InputError(path, f"unknown class {unknown[0]!r} (expected one of {', '.join(classes)})")
    return points.xy, labels


def _typed_truth_index(folder: Path, classes: tuple[str, ...]) -> dict[str, Path]:
    """Truth files by stem, plus CRCHisto-style folders ``<stem>/<stem>_<class>.mat``."""
    index = _truth_index(folder)
    for d in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        if any((d / f"{d.name}_{c}.mat").is_file() for c in classes):
            index[d.name] = d  # the per-class folder wins over a detection file of the same stem
    return index


def _run_typed(args: argparse.Namespace, pred_dir: Path, truth_dir: Path, preds: dict[str, Path]) -> int:
    from ..io.datasets.crchisto import CLASSES
    from ..metrics import evaluate_typed_points

    if args.min_score is not None:
        raise ConfigError("--min-score applies to `evaluate detection` only")
    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else CLASSES
    if any(not c for c in classes) or len(set(classes)) != len(classes):
        raise ConfigError(f"--classes must be distinct, non-empty names separated by commas, got {args.classes!r}")
    truths = _typed_truth_index(truth_dir, classes)
    missing = [p.name for stem, p in preds.items() if stem not in truths]
    if missing:
        raise InputError(truth_dir, f"no truth for {len(missing)} prediction(s), e.g. {missing[0]}")
    pred_xy, pred_cls, truth_xy, truth_cls, names = [], [], [], [], []
    for stem, p in preds.items():
        xy, cls = _typed_points(p, classes)
        txy, tcls = _typed_points(_truth_for(truths, stem, truth_dir), classes)
        pred_xy.append(xy)
        pred_cls.append(cls)
        truth_xy.append(txy)
        truth_cls.append(tcls)
        names.append(stem)
    result = evaluate_typed_points(pred_xy, pred_cls, truth_xy, truth_cls, args.radius, classes)
    if args.per_image:
        from ..metrics import typed_point_scores

        result["per_image"] = {
            n: typed_point_scores(*item, args.radius, classes)
            for n, item in zip(names, zip(pred_xy, pred_cls, truth_xy, truth_cls))
        }
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        return 0

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    print(f"{len(names)} images, radius {args.radius:g} px")
    det = result["detection"]
    print(f"F_d {result['f_d']:.4f}  (TP {det['tp']}  FP {det['fp']}  FN {det['fn']})"
          f"  type accuracy {fmt(result['type_accuracy'])}  weighted F1_c {fmt(result['weighted_f1_c'])}")
    for c in classes:
        r = result["per_class"][c]
        print(f"  {c:14s} F1 {r['f1']:.4f}  P {r['precision']:.4f}  R {r['recall']:.4f}  support {r['support']}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..io.points import read_points
    from ..metrics import evaluate_points

    if args.task == "segmentation":
        from .evaluate_segmentation import run_segmentation

        return run_segmentation(args)
    pred_dir, truth_dir = require_folder(args.pred), require_folder(args.truth)
    if args.radius is None:
        raise ConfigError(f"evaluate {args.task} needs --radius R (the matching radius in pixels)")
    preds = prediction_tables(pred_dir, args.task)
    if args.task == "typed":
        return _run_typed(args, pred_dir, truth_dir, preds)
    if args.classes is not None:
        raise ConfigError("--classes applies to `evaluate typed` only")
    truths = _truth_index(truth_dir)
    missing = [p.name for stem, p in preds.items() if stem not in truths]
    if missing:
        raise InputError(truth_dir, f"no truth file for {len(missing)} prediction(s), e.g. {missing[0]}")
    pred_xy, truth_xy, names = [], [], []
    for stem, p in preds.items():
        ps = read_points(p, allow_empty=True)
        xy = ps.xy
        if args.min_score is not None:
            if ps.scores is None:
                raise InputError(p, "--min-score given but the file has no score column")
            xy = xy[ps.scores >= args.min_score]
        pred_xy.append(xy)
        truth_xy.append(read_points(_truth_for(truths, stem, truth_dir), allow_empty=True).xy)
        names.append(stem)
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
        ed = result["ed"]  # None or NaN without a true positive
        defined = ed is not None and ed == ed
        print(f"TP {result['tp']}  FP {result['fp']}  FN {result['fn']}  ED {ed:.2f} px" if defined else
              f"TP {result['tp']}  FP {result['fp']}  FN {result['fn']}  ED n/a")
    return 0
