"""The package's top level: lazy main API, ``python -m nucleikit``."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_main_api_is_exported_lazily():
    code = ("import sys, nucleikit; assert 'torch' not in sys.modules; "
            "from nucleikit import Detector, Segmenter, AutoSegmenter, Classifier, read_image, InferenceConfig; "
            "from nucleikit.infer.segment import Segmenter as S; assert Segmenter is S; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_unknown_attribute_and_dir():
    import nucleikit

    assert "Segmenter" in dir(nucleikit)
    with pytest.raises(AttributeError, match="no_such"):
        nucleikit.no_such  # noqa: B018


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "nucleikit", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "segment" in out.stdout
