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


# --- the absolute floor -------------------------------------------------------------------


def _blank_tiles() -> dict[str, np.ndarray]:
    """Inputs without a nucleus (uint8): before the floor, 961 to 1,984 "nuclei" each, 1 for 1 x 1."""
    noise = np.random.default_rng(0).normal(0.0, 12.0, (500, 500, 3))
    return {
        "white": np.full((500, 500, 3), 255, np.uint8),
        "black": np.zeros((500, 500, 3), np.uint8),
        "white_noise": np.clip(242 + noise, 0, 255).astype(np.uint8),
        "dark_noise": np.clip(20 + noise, 0, 255).astype(np.uint8),
        "1x1": np.full((1, 1, 3), 255, np.uint8),
    }


@pytest.fixture(scope="module")
def udnet():
    return Detector.from_weights("udnet", config=InferenceConfig(threads=2))


@pytest.mark.parametrize("name", ["micronet", "udnet", "micronet_he"])
def test_bundled_detectors_find_no_nuclei_in_blank_tiles(name, micronet, udnet):
    det = ({"micronet": micronet, "udnet": udnet}.get(name)
           or Detector.from_weights(name, config=InferenceConfig(threads=2)))
    assert det.threshold_abs > 0  # tuned on validation images, stored in the weights
    for tile_name, tile in _blank_tiles().items():
        found = det.detect(tile)
        assert len(found) == 0, tile_name
        # the relative rule alone would keep this tile's background ripples
        assert len(det.detect(tile, threshold_abs=0.0)) >= 1, tile_name


def test_floor_combines_with_xi_and_tiled_equals_untiled(micronet, crc_image):
    """Peaks above max(xi * M, floor), M the whole image's maximum, tiled as untiled."""
    from nucleikit.postprocess import find_peaks

    image, _ = crc_image
    prob = micronet.probability_map(image)
    pmax = float(prob.max())
    floor = 0.6 * pmax  # stricter than xi * M (0.525 M): it decides
    every, every_scores = find_peaks(prob, min_distance=micronet.min_distance, threshold=0.0)
    a, sa, _ = micronet.peaks(prob, threshold_abs=floor)
    expected = every[every_scores > np.float32(floor)]
    np.testing.assert_array_equal(a, expected)
    assert 20 < len(a) < len(micronet.peaks(prob)[0])
    tiled = Detector(micronet.predictor.model, micronet.meta, config=InferenceConfig(tile=144, threads=2))
    b, sb, _ = tiled.peaks(tiled.probability_map(image), threshold_abs=floor)
    m = match_points(a, b, 1.0)
    assert m.fp == 0 and m.fn == 0  # the same nuclei, each within 1 px


def test_weights_without_a_floor_behave_as_before(micronet, crc_image):
    """Old metadata (no threshold_abs) -> floor 0 -> exactly the peaks above xi * max."""
    from nucleikit.postprocess import find_peaks

    image, _ = crc_image
    post = {k: v for k, v in micronet.meta["postprocess"].items() if k != "threshold_abs"}
    old = Detector(micronet.predictor.model, {**micronet.meta, "postprocess": post},
                   config=InferenceConfig(threads=2))
    assert old.threshold_abs == 0.0
    prob = old.probability_map(image)
    xy, scores, pmax = old.peaks(prob)
    ref, ref_scores = find_peaks(prob, min_distance=old.min_distance, threshold=old.threshold_rel * pmax)
    np.testing.assert_array_equal(xy, ref)
    np.testing.assert_array_equal(scores, ref_scores)
    assert len(old.detect(np.full((64, 64, 3), 255, np.uint8))) > 0  # the old behaviour, blank tiles included


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "high"])
def test_bad_floor_in_weights_is_a_weights_error_and_as_an_option_a_config_error(micronet, bad):
    from nucleikit.errors import ConfigError, WeightsError

    post = {**micronet.meta["postprocess"], "threshold_abs": bad}
    with pytest.raises(WeightsError, match="threshold_abs"):
        Detector(micronet.predictor.model, {**micronet.meta, "postprocess": post})
    with pytest.raises(ConfigError, match="threshold_abs"):
        micronet.detect(np.zeros((8, 8, 3), np.uint8), threshold_abs=bad)


# --- arrays as the file readers read them (issue 16) -----------------------------------------


@pytest.fixture(scope="module")
def sample():
    from nucleikit.io.images import read_image, sample_image_path

    return read_image(sample_image_path())


def test_uint8_uint16_and_float_arrays_give_the_nuclei_of_the_file(micronet, sample):
    from PIL import Image

    from nucleikit.infer.pipelines import detect_file

    arr8 = np.asarray(Image.open(sample.path).convert("RGB"))
    assert arr8.dtype == np.uint8
    on_file = micronet.detect(sample.pixels, mpp=sample.mpp)
    assert len(on_file) > 20
    for arr in (arr8, arr8.astype(np.uint16) * 257, arr8.astype(np.float32) / 255, arr8.astype(np.float64) / 255):
        found = micronet.detect(arr, mpp=sample.mpp)
        np.testing.assert_array_equal(found.xy, on_file.xy, err_msg=str(arr.dtype))
        np.testing.assert_array_equal(found.scores, on_file.scores)
    rgba = np.concatenate([arr8, np.full(arr8.shape[:2] + (1,), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(micronet.detect(rgba, mpp=sample.mpp).xy, on_file.xy)


def test_grey_arrays_are_replicated_to_rgb(micronet, sample):
    grey = (sample.pixels[:, :, 1] * 255).round().astype(np.uint8)  # (H, W)
    replicated = np.repeat(grey[:, :, None], 3, axis=2)
    a = micronet.detect(grey, mpp=sample.mpp)
    np.testing.assert_array_equal(a.xy, micronet.detect(replicated, mpp=sample.mpp).xy)
    np.testing.assert_array_equal(micronet.detect(grey[:, :, None], mpp=sample.mpp).xy, a.xy)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((32, 32, 3), 200.0, np.float32), r"outside \[0, 1\]"),
        (np.zeros((2, 32, 32, 3), np.uint8), "expected"),
        (np.zeros((32, 32, 2), np.uint8), "2 channels"),
        (np.zeros((32, 32, 3), np.int32), "unsupported sample type"),
    ],
)
def test_arrays_it_cannot_read_are_refused_in_one_line(micronet, array, message):
    from nucleikit.errors import InputError

    with pytest.raises(InputError, match=message):
        micronet.detect(array)
    with pytest.raises(InputError, match=message):
        micronet.probability_map(array)


def test_dense_predictor_needs_the_network_alignment():
    import torch

    from nucleikit.errors import ConfigError
    from nucleikit.infer.predict import DensePredictor
    from nucleikit.models import build_model

    plain = torch.nn.Conv2d(3, 1, 3, padding=1)  # not built by the registry: declares nothing
    with pytest.raises(ConfigError, match="declares no alignment"):
        DensePredictor(plain, mean=[0, 0, 0], std=[1, 1, 1], halo=0)
    assert DensePredictor(plain, mean=[0, 0, 0], std=[1, 1, 1], halo=0, align=1).align == 1
    deep = build_model("unet", widths=[4, 4, 4, 4, 4, 4])  # five poolings
    predictor = DensePredictor(deep, mean=[0, 0, 0], std=[1, 1, 1], halo=40)
    assert predictor.align == 32
    assert predictor(np.zeros((50, 70, 3), np.float32)).shape == (1, 50, 70)


# --- tile and batch sizes from a memory budget (issue 15) ------------------------------------


def test_bytes_per_pixel_probe_and_plans_within_the_budget(micronet):
    from nucleikit.infer.predict import WORKSPACE_FACTOR

    # fp32 whatever the CPU (auto would pick bf16 on an AMX machine: half the bytes)
    p = Detector(micronet.predictor.model, micronet.meta, config=InferenceConfig(threads=2, precision="fp32")).predictor
    # tensor bytes at the peak of MicroNet's lean fp32 inference: 326 per pixel (774 on the
    # standard route; test_probe_sees_the_peak_of_an_allocation_trace), times the workspace factor
    assert p.bytes_per_pixel == pytest.approx(326 * WORKSPACE_FACTOR, rel=0.05)
    plan = p.plan((4000, 4000))
    assert plan.window_bytes <= p.config.memory and plan.batch_size >= 1
    assert plan.tile[0] % p.align == 0 and plan.rule == "memory"  # MicroNet fp32: 1 GiB cannot hold 1.3x
    assert p.plan((500, 500)).rule == "one window"


def test_probe_sees_the_peak_of_an_allocation_trace(micronet):
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from nucleikit.infer.predict import WORKSPACE_FACTOR

    p = Detector(micronet.predictor.model, micronet.meta, config=InferenceConfig(threads=2, precision="fp32")).predictor
    model = p.model
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    live: dict = {}
    peak = 0

    class Trace(TorchDispatchMode):  # every tensor any operation reads or makes, the weights aside
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal peak
            out = func(*args, **(kwargs or {}))
            for t in torch.utils._pytree.tree_leaves((args, kwargs, out)):
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in weights:
                    live.setdefault(t.untyped_storage().data_ptr(), (weakref.ref(t), t.untyped_storage().nbytes()))
            for key in [k for k, (ref, _) in live.items() if ref() is None]:
                del live[key]
            peak = max(peak, sum(n for _, n in live.values()))
            return out

    # 256 px: at the probe's 128 px the folded transposed-conv kernels (2 MiB, any window) would count
    x = torch.rand(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), Trace():
        model(x)
    # the module hooks see every map alive at the peak of the lean route, none is made out of their sight
    assert p.bytes_per_pixel / WORKSPACE_FACTOR == pytest.approx(peak / 256**2, rel=0.01)


def test_auto_tiles_equal_given_tiles(micronet):
    from nucleikit.infer.predict import Detector, InferenceConfig

    rng = np.random.default_rng(0)
    image = rng.random((700, 900, 3), dtype=np.float32)
    budget = 150 * 2**20  # forces a few tiles of ~100-150 px
    auto = Detector(micronet.predictor.model, micronet.meta, config=InferenceConfig(threads=2, memory=budget,
                                                                                 precision="fp32"))
    plan = auto.predictor.plan(image.shape[:2])
    assert plan.tile[0] < 700 and plan.rule == "memory"
    given = Detector(micronet.predictor.model, micronet.meta, config=InferenceConfig(threads=2, tile=1024,
                                                                                  precision="fp32"))
    # the measured halo (tolerance 1e-3) keeps tiled maps within 1e-3 of untiled ones (README)
    np.testing.assert_allclose(auto.probability_map(image), given.probability_map(image), atol=1e-3)


# --- calibrated scores (issue 13 item 4) -------------------------------------------------------


def test_calibrated_weights_write_validation_precision_and_keep_raw_values(micronet, crc_image):
    from nucleikit.infer.calibration import ScoreCalibration

    image, _ = crc_image
    plain = Detector(micronet.predictor.model, {k: v for k, v in micronet.meta.items() if k != "calibration"},
                     config=InferenceConfig(threads=2))
    cal = ScoreCalibration((0.0, 0.5, 1.0), (0.0, 0.2, 1.0))
    calibrated = Detector(micronet.predictor.model, {**plain.meta, "calibration": cal.to_meta()},
                          config=InferenceConfig(threads=2))
    a, b = plain.detect(image), calibrated.detect(image)
    np.testing.assert_array_equal(a.xy, b.xy)  # the thresholds compare raw values: same nuclei
    np.testing.assert_array_equal(b.map_values, a.scores)
    np.testing.assert_array_equal(b.raw_scores, a.raw_scores)
    np.testing.assert_allclose(b.scores, np.interp(a.scores, [0, 0.5, 1], [0, 0.2, 1]), rtol=1e-6)
    assert a.map_values is None


def test_bad_calibration_in_weights_is_a_weights_error(micronet):
    from nucleikit.errors import WeightsError

    bad = {"map_values": [0.5, 0.1], "probabilities": [0.1, 0.2]}
    with pytest.raises(WeightsError, match="calibration"):
        Detector(micronet.predictor.model, {**micronet.meta, "calibration": bad})
