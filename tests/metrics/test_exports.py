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


def test_package_exports_only_the_task_modules_names():
    by_modules = set(points.__all__) | set(segmentation.__all__) | set(classification.__all__)
    assert set(metrics.__all__) == by_modules
    assert len(metrics.__all__) == len(set(metrics.__all__))


def test_metrics_never_imports_torch():
    code = "import sys, nucleikit.metrics; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
