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


def test_import_nucleikit_loads_no_heavy_module():
    # not a timing (the machine may be busy): the modules that make an import slow stay out
    heavy = ("torch", "numpy", "scipy", "skimage", "pandas", "pyarrow", "matplotlib", "tifffile", "PIL")
    code = ("import sys, nucleikit; "
            f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {heavy!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_api_without_a_model_needs_no_torch():
    code = ("import sys, nucleikit; nucleikit.to_dataframe; nucleikit.classification_dataframe; "
            "nucleikit.napari_csv; nucleikit.read_image; nucleikit.sample_image_path; "
            "assert 'torch' not in sys.modules, 'torch'; assert 'pandas' not in sys.modules, 'pandas'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_every_exported_name_resolves():
    import nucleikit

    for name in nucleikit.__all__:
        assert getattr(nucleikit, name) is not None, name


def test_unknown_attribute_and_dir():
    import nucleikit

    assert "Segmenter" in dir(nucleikit)
    with pytest.raises(AttributeError, match="no_such"):
        nucleikit.no_such  # noqa: B018


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "nucleikit", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "segment" in out.stdout
