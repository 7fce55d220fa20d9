"""Detector inference: tiled equals untiled on a real image, resolution handling."""

import numpy as np
import pytest

from nucleikit.infer.predict import Detector, InferenceConfig
from nucleikit.metrics import match_points


@pytest.fixture(scope="module")
def crc_image(crchisto_dir):
    from nucleikit.io.datasets.crchisto import CRCHisto

    # the densest validation image: many nuclei, many seams crossed
    s = max(CRCHisto(crchisto_dir, split="fixed", subset="validation"), key=lambda s: len(s.points))
    return s.load_image(), s.points


@pytest.fixture(scope="module")
def micronet():
    return Detector.from_weights("micronet", config=InferenceConfig(threads=2))


def test_bundled_halo_covers_the_trained_receptive_field(micronet):
    # stored by tools/ship_weights.py from an impulse through the trained network
    assert micronet.predictor.halo >= 64 and micronet.predictor.halo % 8 == 0


@pytest.mark.parametrize("tile", [80, 144, 256])
def test_tiled_equals_untiled_on_a_real_image(micronet, crc_image, tile):
    image, _ = crc_image
    untiled = micronet.probability_map(image)  # one tile: the 512 default covers 500x500
    tiled_det = Detector(micronet.predictor.model, micronet.meta, config=InferenceConfig(tile=tile, threads=2))
    tiled = tiled_det.probability_map(image)
    assert np.abs(tiled - untiled).max() < 1e-3
    a, sa, ma = micronet.peaks(untiled)
    b, sb, mb = tiled_det.peaks(tiled)
    assert ma == pytest.approx(mb, abs=1e-3)
    m = match_points(a, b, 1.0)
    assert len(a) > 50
    assert m.fp == 0 and m.fn == 0  # the same nuclei, each within 1 px


def test_resolution_is_handled(micronet, crc_image):
    """A 2x upsampled image declared at half the mpp gives the same nuclei in its own coordinates."""
    from nucleikit.transforms import resample, scale_points

    image, truth = crc_image
    native = micronet.detect(image, mpp=micronet.mpp)
    big = resample(image, 2.0)
    up = micronet.detect(big, mpp=micronet.mpp / 2)
    back = scale_points(up.xy, 0.5)
    m = match_points(native.xy, back, 3.0)
    assert m.tp >= 0.9 * max(len(native.xy), len(back))
    assert up.xy[:, 0].max() > image.shape[1]  # coordinates are in the big image's pixels


def test_bundled_detector_finds_the_nuclei_of_a_real_image(micronet, crc_image):
    image, truth = crc_image
    det = micronet.detect(image, mpp=0.55)
    m = match_points(det.xy, truth, 6.0)
    f1 = 2 * m.tp / (len(det.xy) + len(truth))
    assert f1 > 0.6


def test_detector_refuses_segmenters_and_classifiers_at_once(make_segmenter_weights, tmp_path, capsys):
    from nucleikit.cli.main import main
    from nucleikit.errors import WeightsError
    from nucleikit.infer.predict import Detector

    seg = make_segmenter_weights(model="unet_instance")
    with pytest.raises(WeightsError, match="segmentation model, not a detector"):
        Detector.from_weights(seg)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(image)
    assert main(["detect", str(image), "-o", str(tmp_path / "o"), "--model", "dcrn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classification model, not a detector" in err[0]
    assert not (tmp_path / "o" / "x.csv").exists()
