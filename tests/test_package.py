"""The package's top level: lazy main API, ``python -m nucleikit``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
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


# --- every public entry point takes the arrays the file readers take (issue 16) ------------------
#
# Before: Segmenter.segment read a uint8 array's 0-255 values as if in [0, 1] (7 nuclei on a tile
# where the float image gives 85) and refused grey, RGBA and bool arrays; Classifier.classify
# clipped uint16 and float > 1 to white and refused grey and RGBA; image_kind called a uint8 H&E
# tile "fluorescence".


@pytest.fixture(scope="module")
def he_tile():
    """A 96 x 96 H&E tile (uint8 RGB), cut from the bundled sample."""
    from PIL import Image

    import nucleikit

    with Image.open(nucleikit.sample_image_path()) as im:
        return np.asarray(im.convert("RGB"))[200:296, 200:296].copy()


def _arrays(u8):
    """The same image as every array type the readers accept, with the float image it must equal."""
    grey8 = np.asarray(np.rint(u8 @ np.array([0.299, 0.587, 0.114])), np.uint8)
    rgba = np.dstack([u8, np.full(u8.shape[:2], 255, np.uint8)])
    return {
        "uint8": (u8, u8 / np.float32(255)),
        "uint16": (u8.astype(np.uint16) * 257, u8 / np.float32(255)),
        "float64": (u8 / 255.0, u8 / np.float32(255)),
        "rgba": (rgba, u8 / np.float32(255)),
        "grey2d": (grey8, np.repeat((grey8 / np.float32(255))[:, :, None], 3, axis=2)),
        "bool": (grey8 > 128, np.repeat((grey8 > 128)[:, :, None], 3, axis=2).astype(np.float32)),
    }


BAD_ARRAYS = [("float_0_255", lambda u8: u8.astype(float), r"span \[\d+, 255\], outside \[0, 1\]"),
              ("five_channels", lambda u8: np.zeros((20, 20, 5), np.uint8), "5 channels"),
              ("int64", lambda u8: u8.astype(np.int64), "unsupported sample type int64")]


@pytest.mark.parametrize("kind", ["uint8", "uint16", "float64", "rgba", "grey2d", "bool"])
def test_segmenter_takes_every_array_the_readers_take(he_tile, kind):
    from nucleikit import Segmenter
    from nucleikit.infer.predict import InferenceConfig

    seg = Segmenter.from_weights("unet_he", InferenceConfig(threads=1))
    given, as_float = _arrays(he_tile)[kind]
    got = seg.segment(given, mpp=0.5)
    want = seg.segment(as_float.astype(np.float32), mpp=0.5)
    np.testing.assert_array_equal(got.labels, want.labels)
    if kind == "uint8":
        assert got.labels.max() > 20  # the tile's nuclei (7 before the fix, from 0-255 taken as [0, 1])


@pytest.mark.parametrize("kind", ["uint8", "uint16", "float64", "rgba", "grey2d", "bool"])
def test_classifier_takes_every_array_the_readers_take(he_tile, kind):
    from nucleikit import Classifier
    from nucleikit.infer.classify import PatchInferenceConfig

    clf = Classifier.from_weights("densenet", config=PatchInferenceConfig(threads=1))
    xy = np.array([[30.0, 40.0], [70.5, 20.0], [0.0, 95.0]])
    given, as_float = _arrays(he_tile)[kind]
    np.testing.assert_array_equal(clf.patches(given, xy, mpp=0.5), clf.patches(as_float.astype(np.float32), xy, mpp=0.5))
    labels, probs = clf.classify(given, xy, mpp=0.5)
    want_labels, want_probs = clf.classify(as_float.astype(np.float32), xy, mpp=0.5)
    assert labels.tolist() == want_labels.tolist()
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)


def test_analyze_image_and_image_kind_take_uint8(he_tile):
    import nucleikit
    from nucleikit.infer.segment import image_kind

    assert image_kind(he_tile) == image_kind(he_tile / 255.0) == "stained"  # uint8 was "fluorescence"
    assert image_kind(he_tile[:, :, 0]) == "fluorescence"  # grey (H, W)
    detector = nucleikit.Detector.from_weights("micronet_he")
    clf = nucleikit.Classifier.from_weights("densenet")
    got = nucleikit.analyze_image(he_tile.astype(np.uint16) * 257, detector, clf, mpp=0.5)
    want = nucleikit.analyze_image(he_tile / 255.0, detector, clf, mpp=0.5)
    np.testing.assert_array_equal(got.xy, want.xy)
    assert got.labels.tolist() == want.labels.tolist()


@pytest.mark.parametrize("name, make, message", BAD_ARRAYS, ids=[b[0] for b in BAD_ARRAYS])
def test_every_entry_point_refuses_other_arrays_in_one_line(he_tile, name, make, message):
    import nucleikit
    from nucleikit.errors import ArrayError, InputError
    from nucleikit.infer.segment import image_kind

    bad = make(he_tile)
    detector = nucleikit.Detector.from_weights("micronet_he")
    clf = nucleikit.Classifier.from_weights("densenet")
    calls = {
        "Detector.detect": lambda: detector.detect(bad),
        "Segmenter.segment": lambda: nucleikit.Segmenter.from_weights("unet_he").segment(bad),
        "Classifier.classify": lambda: clf.classify(bad, np.array([[5.0, 5.0]])),
        "analyze_image": lambda: nucleikit.analyze_image(bad, detector, clf),
        "image_kind": lambda: image_kind(bad),
    }
    for call in calls.values():
        with pytest.raises(ArrayError, match=message) as info:
            call()
        assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
        assert str(info.value).startswith("image array: ") and "\n" not in str(info.value)
