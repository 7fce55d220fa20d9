"""Evaluation metrics, as defined in PROTOCOL.md, one module per task.

Modules
-------
* :mod:`~nucleikit.metrics.points` (detection): :func:`match_points` pairs
  predicted and true nucleus centres one-to-one within a radius (the most
  pairs, then the least total distance); :func:`detection_scores`,
  :func:`evaluate_points` and :func:`precision_recall_curve` turn matchings
  into precision, recall, F1 and ED, pooled over images and per image.
* :mod:`~nucleikit.metrics.segmentation` (label images): :func:`label_overlap`
  (sparse contingency table of two label images), :func:`iou_matrix`, pixel
  :func:`dice` and :func:`iou`, :func:`dsb_score`, :func:`aji`,
  :func:`panoptic_quality`, all at once per image with
  :func:`segmentation_scores`, and :func:`evaluate_segmentation` (means over
  images, pooled pixel Dice/IoU).
* :mod:`~nucleikit.metrics.classification`: :func:`classification_report`
  (accuracy, per-class P/R/F1, weighted and macro F1, one-vs-rest ROC AUC and
  AP, confusion matrix), and typed points end to end with
  :func:`typed_point_scores` / :func:`evaluate_typed_points` (F_d, F1 per
  class, type accuracy).

Every public name is re-exported here, so ``from nucleikit.metrics import X``
is the import to use. Points are (N, 2) float64 arrays of (x, y), 0-based
pixel centres, x to the right, y down; distances are Euclidean, in pixels.
This package never imports torch.
"""

from __future__ import annotations

from . import classification, points, segmentation
from .classification import (
    average_precision,
    binary_pr_curve,
    binary_roc_auc,
    binary_roc_curve,
    classification_report,
    confusion_matrix,
    evaluate_typed_points,
    typed_point_scores,
)
from .points import (
    DetectionReport,
    DetectionScores,
    PointMatch,
    detection_scores,
    evaluate_points,
    match_points,
    precision_recall_curve,
)
from .segmentation import (
    DSB_THRESHOLDS,
    LabelOverlap,
    SegmentationReport,
    SegmentationScores,
    aji,
    dice,
    dsb_score,
    evaluate_segmentation,
    iou,
    iou_matrix,
    label_overlap,
    panoptic_quality,
    segmentation_scores,
)

# One list per task module, kept there beside the definitions; this is their union.
__all__ = [*points.__all__, *segmentation.__all__, *classification.__all__]
