"""The metrics package keeps one import path for every public name."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nucleikit.metrics as metrics
from nucleikit.metrics import classification, points, segmentation


@pytest.mark.parametrize("module", [points, segmentation, classification], ids=lambda m: m.__name__)
def test_every_public_name_of_a_task_module_is_re_exported(module):
    missing = sorted(set(module.__all__) - set(metrics.__all__))
    assert missing == []
    for name in module.__all__:
        assert getattr(metrics, name) is getattr(module, name)


#: The public names of nucleikit.metrics when it was one module (before the split).
NAMES_BEFORE_SPLIT = (
    "PointMatch match_points DetectionScores detection_scores DetectionReport evaluate_points "
    "precision_recall_curve DSB_THRESHOLDS LabelOverlap SegmentationReport SegmentationScores aji dice "
    "dsb_score evaluate_segmentation iou iou_matrix label_overlap panoptic_quality segmentation_scores "
    "average_precision binary_pr_curve binary_roc_auc binary_roc_curve classification_report "
    "confusion_matrix evaluate_typed_points typed_point_scores"
).split()


def test_every_name_of_the_single_module_still_imports_from_the_package():
    assert sorted(metrics.__all__) == sorted(NAMES_BEFORE_SPLIT)
    assert len(metrics.__all__) == len(set(metrics.__all__))  # no name defined by two task modules
    for name in NAMES_BEFORE_SPLIT:
        assert hasattr(metrics, name), name


def test_metrics_never_imports_torch():
    code = "import sys, nucleikit.metrics; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
