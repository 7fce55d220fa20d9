"""``nucleikit evaluate segmentation``: predicted label images against truth (PROTOCOL.md section 2).

Kept apart from :mod:`nucleikit.cli.evaluate` (points) because its inputs are label images,
found in three truth layouts: label image files, Kaggle mask folders, an RLE CSV.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError

__all__ = ["PRED_SUFFIX", "prediction_files", "truth_index", "load_truth", "run_segmentation"]

#: What ``nucleikit segment`` names its label images: ``<stem>_labels.tif``.
PRED_SUFFIX = "_labels.tif"
_LABEL_SUFFIXES = (".png", ".tif", ".tiff")


def prediction_files(folder: Path) -> dict[str, Path]:
    """``<stem>_labels.tif`` files of a folder, by stem (sorted)."""
    # a FIFO or a dangling link is kept, so that reading it names the problem
    return {p.name[: -len(PRED_SUFFIX)]: p for p in sorted(folder.iterdir())
            if p.name.endswith(PRED_SUFFIX) and not p.is_dir()}


def _other_outputs(folder: Path) -> str:
    """A hint when ``folder`` holds point tables (another command's outputs), else ``""``."""
    if any(p.is_file() and p.suffix.lower() == ".csv" for p in folder.iterdir()):
        return (" (it holds point tables: `evaluate detection` scores detect's <stem>.csv, `evaluate typed` "
                "analyze's <stem>_typed.csv; segment writes <stem>_labels.tif)")
    return ""


def truth_index(folder: Path) -> dict[str, Path]:
    """Truth of each stem in a folder: a label image file or a Kaggle ``<stem>/masks/`` folder.

    Files ``<stem>.png``, ``<stem>.tif``, ``<stem>.tiff`` and ``<stem>_labels.png|tif|tiff`` directly in
    ``folder`` are label images (not searched recursively: a Kaggle folder's
    ``<stem>/images/<stem>.png`` is an image, not a label); ``<stem>/masks`` folders hold one
    binary mask per nucleus. A label file wins over a mask folder of the same stem; two label
    files of one stem (``a.png`` and ``a_labels.tif``) are an error when that stem is scored
    (:func:`truth_for`), never a choice by sort order.
    """
    index: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in _LABEL_SUFFIXES and not p.is_dir():
            stem = p.stem[: -len("_labels")] if p.stem.endswith("_labels") else p.stem
            if stem in index:
                index[stem] = _Ambiguous([*(index[stem] if isinstance(index[stem], _Ambiguous) else [index[stem]]), p])
            else:
                index[stem] = p
    for d in sorted(folder.iterdir()):
        if d.is_dir() and (d / "masks").is_dir():
            index.setdefault(d.name, d / "masks")
    return index


class _Ambiguous(list):
    """Several label files for one image: an error only if that image is scored."""


def truth_for(truths: dict, stem: str, folder: Path) -> Path:
    """The truth of ``stem``; two label files of that stem are refused rather than picked by sort order."""
    found = truths[stem]
    if isinstance(found, _Ambiguous):
        names = " and ".join(p.name for p in found[:2])
        more = f" (and {len(found) - 2} more)" if len(found) > 2 else ""
        raise InputError(folder, f"{len(found)} truth label images for {stem}: {names}{more}; keep one, or point "
                                 "--truth at a folder holding only the label images")
    return found


def load_truth(source: Path, stem: str, shape: tuple[int, int], table=None) -> np.ndarray:
    """The (H, W) int32 truth label image of ``stem``, checked against the prediction's ``shape``.

    ``source`` is a label file or a ``masks`` folder, or the RLE CSV whose parsed ``table``
    (:class:`~nucleikit.io.rle.RLETable`) is given.

    Raises
    ------
    InputError
        Unreadable truth, or a truth of another height and width (the truth file is named).
    """
    from ..io.labels import read_label_image, read_mask_folder

    if table is not None:
        # RLE files without Height/Width take the prediction's; with them a mismatch is named there
        return table.labels(stem, shape=shape)
    truth = read_mask_folder(source) if source.is_dir() else read_label_image(source)
    if truth.shape != tuple(shape):
        # sizes as every nucleikit message gives them: width x height
        raise InputError(source, f"truth is {truth.shape[1]} x {truth.shape[0]} px (W x H) but the prediction of "
                                 f"{stem} is {shape[1]} x {shape[0]} px")
    return truth


def run_segmentation(args: argparse.Namespace) -> int:
    from ..io.labels import read_label_image
    from ..io.rle import read_rle_csv
    from ..infer.segment_eval import segmentation_summary
    from ..metrics import evaluate_segmentation

    if args.radius is not None or args.min_score is not None or args.classes is not None:
        raise ConfigError("--radius, --min-score and --classes do not apply to `evaluate segmentation`")
    from .options import require_file, require_folder

    pred_dir, truth_src = require_folder(args.pred), require_file(args.truth)
    preds = prediction_files(pred_dir)
    if not preds:
        raise InputError(pred_dir, f"no prediction *{PRED_SUFFIX} files in this folder" + _other_outputs(pred_dir))
    table = None
    if truth_src.is_file() and truth_src.suffix.lower() == ".csv":
        table = read_rle_csv(truth_src)
        truths = {stem: truth_src for stem in preds if stem in table}
    elif truth_src.is_dir():
        truths = truth_index(truth_src)
    else:
        raise InputError(truth_src, "not a folder or an RLE .csv file")
    missing = [stem for stem in preds if stem not in truths]
    if missing:
        raise InputError(truth_src, f"no truth for {len(missing)} prediction(s), e.g. {preds[missing[0]].name}")
    pred_labels, truth_labels, names = [], [], []
    for stem, path in preds.items():
        pred = read_label_image(path)
        source = truths[stem] if table is not None else truth_for(truths, stem, truth_src)
        truth_labels.append(load_truth(source, stem, pred.shape, table))
        pred_labels.append(pred)
        names.append(stem)
    report = evaluate_segmentation(truth_labels, pred_labels)
    result = segmentation_summary(report)
    if args.per_image:
        result["per_image"] = {n: s.to_dict() for n, s in zip(names, report.per_image)}
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(f"{len(names)} images")
    print(f"Dice {result['dice']:.4f} (pooled {result['pooled_dice']:.4f})  "
          f"IoU {result['iou']:.4f} (pooled {result['pooled_iou']:.4f})")
    print(f"DSB score {result['dsb_score']:.4f}  AP50 {result['ap50']:.4f}  AJI {result['aji']:.4f}  "
          f"PQ {result['pq']:.4f} (SQ {result['sq']:.4f}, RQ {result['rq']:.4f})")
    if args.per_image:
        for n, s in zip(names, report.per_image):
            print(f"  {n}: Dice {s.dice:.4f}  DSB {s.dsb:.4f}  AJI {s.aji:.4f}  PQ {s.pq:.4f}  "
                  f"{s.n_pred} predicted / {s.n_truth} true nuclei")
    return 0
