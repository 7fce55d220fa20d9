"""File pipelines inherit the detector's absolute floor: blank inputs give no nuclei."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nucleikit.infer.predict import Detector, InferenceConfig


@pytest.fixture(scope="module")
def micronet():
    return Detector.from_weights("micronet", config=InferenceConfig(threads=1))


@pytest.fixture(scope="module")
def classifier():
    from nucleikit.infer.classify import Classifier

    return Classifier.from_weights("densenet")


def test_analyze_on_a_blank_tile_types_no_nuclei(micronet, classifier, tmp_path):
    from nucleikit.infer.pipelines import analyze_file, analyze_image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((300, 300, 3), 255, np.uint8)).save(blank)
    res = analyze_file(blank, micronet, classifier, tmp_path / "out", overlay=False)
    assert res.count == 0 and res.outputs["csv"].read_text().splitlines() == ["x,y,score,class,class_prob"]
    typed = analyze_image(np.full((300, 300), 255, np.uint8), micronet, classifier)  # grey uint8 array
    assert len(typed) == 0 and typed.probs.shape[0] == 0


def test_analyze_image_takes_uint8_as_the_file_reader_does(micronet, classifier):
    from nucleikit.infer.pipelines import analyze_image
    from nucleikit.io.images import read_image, sample_image_path

    image = read_image(sample_image_path())
    arr8 = np.asarray(Image.open(sample_image_path()).convert("RGB"))
    a = analyze_image(image.pixels, micronet, classifier, mpp=image.mpp)
    b = analyze_image(arr8, micronet, classifier, mpp=image.mpp)
    assert len(a) > 20
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_detect_file_on_a_blank_tile_finds_no_nuclei(micronet, tmp_path):
    from nucleikit.infer.pipelines import detect_file

    blank = tmp_path / "dark.png"
    noise = np.random.default_rng(0).normal(0.0, 12.0, (300, 300, 3))
    Image.fromarray(np.clip(20 + noise, 0, 255).astype(np.uint8)).save(blank)
    res = detect_file(blank, micronet, tmp_path / "out", overlay=False)
    assert res.count == 0 and res.outputs["csv"].read_text() == "x,y,score\n"
