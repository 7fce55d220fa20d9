"""Segmentation metrics on label images, as defined in PROTOCOL.md section 2.

:func:`label_overlap` (sparse contingency table of two label images),
:func:`iou_matrix`, pixel :func:`dice` and :func:`iou`, :func:`dsb_score`,
:func:`aji`, :func:`panoptic_quality`, all at once per image with
:func:`segmentation_scores`, and :func:`evaluate_segmentation` (means over
images, pooled pixel Dice/IoU). This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import _check_same_length

__all__ = [
    "DSB_THRESHOLDS",
    "LabelOverlap",
    "SegmentationReport",
    "SegmentationScores",
    "aji",
    "dice",
    "dsb_score",
    "evaluate_segmentation",
    "iou",
    "iou_matrix",
    "label_overlap",
    "panoptic_quality",
    "segmentation_scores",
]

# Label images are (H, W) arrays of non-negative integers: 0 is background,
# every other value one instance (values need not be consecutive). Every
# instance score starts from one sparse contingency table of the two images
# (:func:`label_overlap`), built from the flattened label pairs with
# np.bincount, never from a loop over instances.

#: IoU thresholds of the DSB score: 0.50, 0.55, ..., 0.95.
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.50 + 0.05 * k, 2) for k in range(10))
# The same thresholds in percent, so that "IoU > t" is decided exactly in
# integers (100 * |G∩S| > p * |G∪S|) rather than on a rounded float ratio.
_DSB_PERCENT = tuple(50 + 5 * k for k in range(10))
# Largest dense table (T + 1) * (P + 1) bincount is used for; above, np.unique.
_DENSE_TABLE_MAX = 1 << 24


def _check_label_image(name: str, labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) label image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"{name} holds negative labels (down to {arr.min()})")
    return arr


def _check_label_pair(truth: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _check_label_image("truth", truth)
    p = _check_label_image("pred", pred)
    if t.shape != p.shape:
        raise ValueError(f"truth and pred must have the same shape, got truth {t.shape} and pred {p.shape}")
    return t, p


def _compact(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renumber labels 1..K in ascending order of value (0 stays 0).

    Returns the K label values, the renumbered image (intp) and the K areas.
    """
    top = int(flat.max()) if flat.size else 0
    if top <= max(_DENSE_TABLE_MAX, 4 * flat.size):
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
        present = np.flatnonzero(counts[1:]) + 1
        lookup = np.zeros(top + 1, dtype=np.intp)
        lookup[present] = np.arange(1, len(present) + 1)
        return present.astype(np.int64), lookup[flat], counts[present].astype(np.int64)
    values, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if values[0] == 0:
        return values[1:].astype(np.int64), inverse.astype(np.intp), counts[1:].astype(np.int64)
    return values.astype(np.int64), inverse.astype(np.intp) + 1, counts.astype(np.int64)


@dataclass(frozen=True, eq=False)
class LabelOverlap:
    """Sparse contingency table of a truth and a predicted label image.

    Attributes
    ----------
    truth_labels, pred_labels : (T,), (P,) int64 ndarray
        The instance labels present in each image, ascending (0 excluded).
    truth_area, pred_area : (T,), (P,) int64 ndarray
        Their areas in pixels.
    truth_index, pred_index : (E,) intp ndarray
        For every pair of instances that share at least one pixel, the row in
        ``truth_labels`` and in ``pred_labels``; sorted by truth, then pred.
    intersection : (E,) int64 ndarray
        Pixels shared by each pair.
    """

    truth_labels: np.ndarray
    pred_labels: np.ndarray
    truth_area: np.ndarray
    pred_area: np.ndarray
    truth_index: np.ndarray
    pred_index: np.ndarray
    intersection: np.ndarray

    @property
    def n_truth(self) -> int:
        return int(self.truth_labels.shape[0])

    @property
    def n_pred(self) -> int:
        return int(self.pred_labels.shape[0])

    @property
    def union(self) -> np.ndarray:
        """(E,) int64: pixels of the union of each overlapping pair."""
        return self.truth_area[self.truth_index] + self.pred_area[self.pred_index] - self.intersection

    @property
    def iou(self) -> np.ndarray:
        """(E,) float64: IoU of each overlapping pair (all > 0)."""
        return self.intersection / self.union

    def iou_matrix(self) -> np.ndarray:
        """(T, P) float64 dense IoU matrix (0 for pairs that do not overlap)."""
        matrix = np.zeros((self.n_truth, self.n_pred), dtype=np.float64)
        matrix[self.truth_index, self.pred_index] = self.iou
        return matrix


def label_overlap(truth: Any, pred: Any) -> LabelOverlap:
    """Contingency table of two label images (areas and pairwise intersections).

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background; a bool mask counts as one instance.

    Returns
    -------
    LabelOverlap

    Raises
    ------
    ValueError
        Not 2-D, not integer, negative labels, or different shapes (both given).

    Notes
    -----
    Cost O(H W) plus the table: each image is renumbered 1..K with a
    bincount lookup, and the pairs of pixels where both are foreground are
    counted with one bincount of ``t * (P + 1) + p`` (``np.unique`` when that
    table would exceed 2**24 cells).
    """
    t, p = _check_label_pair(truth, pred)
    t_labels, t_flat, t_area = _compact(t.ravel())
    p_labels, p_flat, p_area = _compact(p.ravel())
    width = len(p_labels) + 1
    both = (t_flat > 0) & (p_flat > 0)
    keys = t_flat[both].astype(np.int64) * width + p_flat[both]
    if (len(t_labels) + 1) * width <= _DENSE_TABLE_MAX:
        table = np.bincount(keys, minlength=(len(t_labels) + 1) * width)
        pair_keys = np.flatnonzero(table)
        counts = table[pair_keys]
    else:
        pair_keys, counts = np.unique(keys, return_counts=True)
    ti, pi = np.divmod(pair_keys, width)
    return LabelOverlap(
        truth_labels=t_labels,
        pred_labels=p_labels,
        truth_area=t_area,
        pred_area=p_area,
        truth_index=(ti - 1).astype(np.intp),
        pred_index=(pi - 1).astype(np.intp),
        intersection=counts.astype(np.int64),
    )


def iou_matrix(truth: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense IoU of every truth instance with every predicted instance.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    ious : (T, P) float64 ndarray
        ``ious[i, j]`` = IoU of ``truth_labels[i]`` and ``pred_labels[j]``.
    truth_labels, pred_labels : (T,), (P,) int64 ndarray
        The labels of the rows and columns, ascending.
    """
    overlap = label_overlap(truth, pred)
    return overlap.iou_matrix(), overlap.truth_labels, overlap.pred_labels


def _ratio_or_one(numerator: float, denominator: float) -> float:
    """numerator / denominator; 1.0 for 0/0 (nothing to find, nothing found)."""
    return float(numerator / denominator) if denominator > 0 else 1.0


def _pixel_counts(overlap: LabelOverlap) -> tuple[int, int, int]:
    """|G ∩ S|, |G|, |S| of the foregrounds (instances are disjoint within an image)."""
    return int(overlap.intersection.sum()), int(overlap.truth_area.sum()), int(overlap.pred_area.sum())


def dice(truth: Any, pred: Any) -> float:
    """Pixel Dice of the foregrounds: 2|G∩S| / (|G| + |S|); both empty gives 1.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int or bool
        Label images or masks; foreground is any non-zero pixel.
    """
    inter, g, s = _pixel_counts(label_overlap(truth, pred))
    return _ratio_or_one(2 * inter, g + s)


def iou(truth: Any, pred: Any) -> float:
    """Pixel IoU (Jaccard) of the foregrounds: |G∩S| / |G∪S|; both empty gives 1.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int or bool
        Label images or masks; foreground is any non-zero pixel.
    """
    inter, g, s = _pixel_counts(label_overlap(truth, pred))
    return _ratio_or_one(inter, g + s - inter)


def _dsb_from_overlap(overlap: LabelOverlap) -> dict[str, Any]:
    # For t >= 0.5 every instance has at most one partner with IoU > t (two
    # disjoint predictions cannot each cover more than half of one union), so
    # the one-to-one pairs are simply the pairs above t: no assignment needed.
    inter, union = overlap.intersection, overlap.union
    tp = [int(np.count_nonzero(100 * inter > percent * union)) for percent in _DSB_PERCENT]
    fp = [overlap.n_pred - k for k in tp]
    fn = [overlap.n_truth - k for k in tp]
    scores = [_ratio_or_one(a, a + b + c) for a, b, c in zip(tp, fp, fn)]
    return {
        "score": float(np.mean(scores)),
        "ap50": scores[0],
        "thresholds": list(DSB_THRESHOLDS),
        "scores": scores,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_truth": overlap.n_truth,
        "n_pred": overlap.n_pred,
    }


def dsb_score(truth: Any, pred: Any) -> dict[str, Any]:
    """2018 Data Science Bowl score of one image (PROTOCOL.md section 2).

    For each t in 0.50, 0.55, ..., 0.95, instances pair one-to-one when their
    IoU is **strictly greater** than t; ``score_t = TP / (TP + FP + FN)``.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    dict
        ``score`` (mean of the ten ``score_t``), ``ap50`` (``score_t`` at
        0.5), ``thresholds``, ``scores``, ``tp``, ``fp``, ``fn`` (lists, one
        entry per threshold), ``n_truth``, ``n_pred``. An image with no truth
        and no prediction scores 1 at every t; with only one of them, 0.

    Notes
    -----
    "IoU > t" is decided in integers (``100 |G∩S| > 100 t |G∪S|``), so an
    IoU of exactly 0.55 never counts at t = 0.55 whatever the float rounding.
    """
    return _dsb_from_overlap(label_overlap(truth, pred))


def _aji_from_overlap(overlap: LabelOverlap) -> float:
    if overlap.n_truth == 0 and overlap.n_pred == 0:
        return 1.0
    ious = overlap.iou
    # Best prediction of each truth instance: highest IoU, ties to the lowest
    # predicted label (pairs are sorted by truth, then -IoU, then pred).
    order = np.lexsort((overlap.pred_index, -ious, overlap.truth_index))
    truth_sorted = overlap.truth_index[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = truth_sorted[1:] != truth_sorted[:-1]
    best = order[first]
    intersection = int(overlap.intersection[best].sum())
    union = int(overlap.union[best].sum())
    # A truth instance overlapping no prediction is paired with nothing: |G|.
    paired_truth = np.zeros(overlap.n_truth, dtype=bool)
    paired_truth[overlap.truth_index[best]] = True
    union += int(overlap.truth_area[~paired_truth].sum())
    taken = np.zeros(overlap.n_pred, dtype=bool)
    taken[overlap.pred_index[best]] = True
    union += int(overlap.pred_area[~taken].sum())
    return intersection / union


def aji(truth: Any, pred: Any) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017), as PROTOCOL.md section 2.

    Each truth instance G takes the prediction S of highest IoU with it;
    ``C += |G∩S|``, ``U += |G∪S|``. Afterwards ``U +=`` the area of every
    prediction never taken. AJI = C / U.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    float
        In [0, 1]. Both images empty gives 1; only one empty gives 0.

    Notes
    -----
    A truth instance that overlaps no prediction adds ``|G|`` to U (its best
    IoU is 0 and there is nothing to pair it with). Ties in IoU go to the
    lowest predicted label. A prediction taken by several truth instances is
    counted in each of their unions (Kumar's definition; AJI+ differs).
    """
    return _aji_from_overlap(label_overlap(truth, pred))


def _pq_from_overlap(overlap: LabelOverlap) -> tuple[float, float, float]:
    if overlap.n_truth == 0 and overlap.n_pred == 0:
        return 1.0, 1.0, 1.0
    matched = 2 * overlap.intersection > overlap.union  # IoU > 0.5: unique pairs
    tp = int(np.count_nonzero(matched))
    iou_sum = float(overlap.iou[matched].sum())
    fp, fn = overlap.n_pred - tp, overlap.n_truth - tp
    denominator = tp + 0.5 * fp + 0.5 * fn
    sq = iou_sum / tp if tp else 0.0
    return iou_sum / denominator, sq, tp / denominator


def panoptic_quality(truth: Any, pred: Any) -> tuple[float, float, float]:
    """Panoptic quality (Kirillov et al. 2019) of one image's nuclei.

    Instances pair when their IoU is strictly greater than 0.5 (such pairs
    are unique). ``PQ = Σ IoU(pairs) / (TP + FP/2 + FN/2) = SQ x RQ``.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    pq, sq, rq : float
        ``SQ`` = mean IoU of the pairs (0 when there is none),
        ``RQ = TP / (TP + FP/2 + FN/2)``. Both images empty gives (1, 1, 1).
    """
    return _pq_from_overlap(label_overlap(truth, pred))


@dataclass(frozen=True)
class SegmentationScores:
    """Segmentation scores of one image (PROTOCOL.md section 2).

    Attributes
    ----------
    dice, iou : float
        Pixel Dice and IoU of the foregrounds.
    dsb, ap50 : float
        DSB score (mean over the ten IoU thresholds) and its value at 0.5.
    aji : float
        Aggregated Jaccard Index.
    pq, sq, rq : float
        Panoptic, segmentation and recognition quality.
    n_truth, n_pred : int
        Instances in each image.
    intersection, truth_pixels, pred_pixels : int
        ``|G∩S|``, ``|G|``, ``|S|`` of the foregrounds, for pooling.
    """

    dice: float
    iou: float
    dsb: float
    ap50: float
    aji: float
    pq: float
    sq: float
    rq: float
    n_truth: int
    n_pred: int
    intersection: int
    truth_pixels: int
    pred_pixels: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain, JSON-serialisable dict of every field."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


_MEAN_FIELDS = ("dice", "iou", "dsb", "ap50", "aji", "pq", "sq", "rq")


def segmentation_scores(truth: Any, pred: Any) -> SegmentationScores:
    """All segmentation scores of one image, from one contingency table.

    Parameters
    ----------
    truth, pred : (H, W) array_like of int
        Label images, 0 = background.

    Returns
    -------
    SegmentationScores
        As :func:`dice`, :func:`iou`, :func:`dsb_score`, :func:`aji` and
        :func:`panoptic_quality` would give one by one.
    """
    overlap = label_overlap(truth, pred)
    inter, g, s = _pixel_counts(overlap)
    dsb = _dsb_from_overlap(overlap)
    pq, sq, rq = _pq_from_overlap(overlap)
    return SegmentationScores(
        dice=_ratio_or_one(2 * inter, g + s),
        iou=_ratio_or_one(inter, g + s - inter),
        dsb=dsb["score"],
        ap50=dsb["ap50"],
        aji=_aji_from_overlap(overlap),
        pq=pq,
        sq=sq,
        rq=rq,
        n_truth=overlap.n_truth,
        n_pred=overlap.n_pred,
        intersection=inter,
        truth_pixels=g,
        pred_pixels=s,
    )


@dataclass(frozen=True)
class SegmentationReport:
    """Segmentation scores of a set of images.

    Attributes
    ----------
    per_image : tuple of SegmentationScores
        One entry per image, in input order.
    dice, iou, dsb, ap50, aji, pq, sq, rq : float
        **Means over images** of the per-image scores (PROTOCOL.md's figures).
    pooled_dice, pooled_iou : float
        Dice and IoU over all pixels of all images (intersections and areas
        summed first); both 1 when no image has any foreground.
    """

    per_image: tuple[SegmentationScores, ...]
    dice: float
    iou: float
    dsb: float
    ap50: float
    aji: float
    pq: float
    sq: float
    rq: float
    pooled_dice: float
    pooled_iou: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict: n_images, mean, pooled, per_image."""
        return {
            "n_images": len(self.per_image),
            "mean": {name: float(getattr(self, name)) for name in _MEAN_FIELDS},
            "pooled": {"dice": float(self.pooled_dice), "iou": float(self.pooled_iou)},
            "per_image": [s.to_dict() for s in self.per_image],
        }


def evaluate_segmentation(truths: Sequence[Any], preds: Sequence[Any]) -> SegmentationReport:
    """Score the predicted label images of several images.

    Parameters
    ----------
    truths, preds : sequence of (H_i, W_i) array_like of int
        Truth and predicted label images of each image, 0 = background.

    Returns
    -------
    SegmentationReport
        Per-image scores, their means, and pooled pixel Dice/IoU.

    Raises
    ------
    ValueError
        Sequences of different lengths or empty, or as :func:`label_overlap`.
    """
    _check_same_length("truths", truths, "preds", preds)
    per_image = tuple(segmentation_scores(t, p) for t, p in zip(truths, preds))
    inter = sum(s.intersection for s in per_image)
    total = sum(s.truth_pixels + s.pred_pixels for s in per_image)
    means = {name: float(np.mean([getattr(s, name) for s in per_image])) for name in _MEAN_FIELDS}
    return SegmentationReport(
        per_image=per_image,
        pooled_dice=_ratio_or_one(2 * inter, total),
        pooled_iou=_ratio_or_one(inter, total - inter),
        **means,
    )
