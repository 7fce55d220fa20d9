"""Segmenter: colour, resolution, tiling and post-processing read from the weights."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.errors import ConfigError, WeightsError
from nucleikit.infer.predict import Detections, InferenceConfig
from nucleikit.infer.segment import Segmenter, resize_labels

ONE_THREAD = InferenceConfig(threads=1, tile=64)


def two_touching_discs(h: int = 40, w: int = 60) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A probability map of two discs of radius 8 whose centres are 14 px apart (they overlap)."""
    yy, xx = np.mgrid[0:h, 0:w]
    centres = [(22, 20), (36, 20)]
    prob = np.zeros((h, w), np.float32)
    for x, y in centres:
        prob[(xx - x) ** 2 + (yy - y) ** 2 <= 64] = 0.9
    return prob, centres


class FixedDetector:
    """Stands in for a Detector: returns given centres, records what it was given."""

    def __init__(self, xy):
        self.xy = np.asarray(xy, float)
        self.calls = []

    def detect(self, pixels, *, mpp=None, **_):
        self.calls.append((pixels.shape, mpp))
        return Detections(xy=self.xy.copy(), scores=np.ones(len(self.xy), np.float32), map_max=1.0)


@pytest.mark.parametrize("model", ["unet", "r2unet"])
def test_segment_shapes_dtypes_and_measurements(make_segmenter_weights, model, rng):
    seg = Segmenter.from_weights(make_segmenter_weights(model=model), ONE_THREAD)
    image = rng.random((70, 90, 3)).astype(np.float32)
    out = seg.segment(image)
    assert out.prob.shape == (70, 90) and out.prob.dtype == np.float32
    assert out.labels.shape == (70, 90) and out.labels.dtype == np.int32
    m = out.measurements
    assert sorted(m) == ["area", "label", "mean_intensity", "x", "y"]
    assert np.array_equal(m["label"], np.unique(out.labels[out.labels > 0]))
    assert int(m["area"].sum()) == int(np.count_nonzero(out.labels))
    assert np.all((m["x"] >= 0) & (m["x"] <= 89) & (m["y"] >= 0) & (m["y"] <= 69))


def test_tiled_equals_untiled(make_segmenter_weights, rng):
    path = make_segmenter_weights(model="r2unet")
    image = rng.random((100, 130, 3)).astype(np.float32)
    small = Segmenter.from_weights(path, InferenceConfig(threads=1, tile=32)).segment(image)
    whole = Segmenter.from_weights(path, InferenceConfig(threads=1, tile=256)).segment(image)
    assert whole.prob.std() > 1e-3  # the map varies, so equality is a real check
    assert np.abs(small.prob - whole.prob).max() < 1e-4


def test_two_touching_discs_split_into_two_instances(make_segmenter_weights):
    seg = Segmenter.from_weights(make_segmenter_weights(), ONE_THREAD)
    prob, centres = two_touching_discs()
    image = np.full(prob.shape + (3,), 0.8, np.float32)
    image[prob > 0] = 0.2  # dark nuclei: mean luminance 0.2
    out = seg.segment(image, prob=prob)
    assert len(out) == 2
    xs = np.sort(out.measurements["x"])
    assert np.allclose(xs, [c[0] for c in centres], atol=1.5)
    assert np.allclose(out.measurements["mean_intensity"], 0.2, atol=1e-5)
    assert out.measurements["area"].sum() == np.count_nonzero(prob)


def test_detector_seeds_are_the_markers(make_segmenter_weights):
    prob, centres = two_touching_discs()
    image = np.full(prob.shape + (1,), 0.5, np.float32)
    one = FixedDetector([centres[0]])
    seg = Segmenter.from_weights(make_segmenter_weights(), ONE_THREAD, seeds="detector", detector=one)
    assert len(seg.segment(image, prob=prob)) == 1  # one marker floods the joined component
    assert one.calls[0][0] == prob.shape + (3,)  # the detector always sees RGB
    two = FixedDetector(centres)
    seg = Segmenter.from_weights(make_segmenter_weights(), ONE_THREAD, seeds="detector", detector=two)
    out = seg.segment(image, prob=prob)
    assert len(out) == 2 and out.seeds == "detector"


def test_seeds_default_comes_from_the_weights(make_segmenter_weights):
    seg = Segmenter.from_weights(make_segmenter_weights(seeds="detector"), ONE_THREAD, detector=FixedDetector([]))
    assert seg.seeds == "detector"
    assert Segmenter.from_weights(make_segmenter_weights(), ONE_THREAD).seeds == "distance"
    with pytest.raises(ConfigError):
        Segmenter.from_weights(make_segmenter_weights(), ONE_THREAD, seeds="centroids")


def test_threshold_override(make_segmenter_weights):
    seg = Segmenter.from_weights(make_segmenter_weights(), ONE_THREAD)
    prob, _ = two_touching_discs()
    image = np.zeros(prob.shape + (3,), np.float32)
    assert len(seg.segment(image, prob=prob, threshold=0.95)) == 0
    assert len(seg.segment(image, prob=prob, threshold=0.5)) == 2


def test_grey_weights_take_rgb_and_grey_input(make_segmenter_weights, rng):
    seg = Segmenter.from_weights(make_segmenter_weights(colour="grey"), ONE_THREAD)
    grey = rng.random((48, 40, 1)).astype(np.float32)
    a = seg.segment(np.repeat(grey, 3, axis=2))
    b = seg.segment(grey)
    assert np.allclose(a.prob, b.prob, atol=1e-5)
    rgb_seg = Segmenter.from_weights(make_segmenter_weights(colour="rgb"), ONE_THREAD)
    assert rgb_seg.segment(grey).labels.shape == (48, 40)


def test_percentile_intensity_from_the_weights(make_segmenter_weights, rng):
    """Percentile normalisation (as trained) makes the map blind to a gain and offset of the input."""
    image = rng.random((40, 48, 3)).astype(np.float32)
    dim = 0.2 * image + 0.05  # a dim fluorescence-like copy
    seg = Segmenter.from_weights(make_segmenter_weights(model="r2unet", intensity="percentile"), ONE_THREAD)
    assert np.abs(seg.segment(image).prob - seg.segment(dim).prob).max() < 1e-4
    plain = Segmenter.from_weights(make_segmenter_weights(model="r2unet"), ONE_THREAD)
    assert np.abs(plain.segment(image).prob - plain.segment(dim).prob).max() > 1e-3
    work, _ = seg.prepare(dim)
    assert np.percentile(work, 1.0) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(work, 99.8) == pytest.approx(1.0, abs=1e-5)


def test_unknown_intensity_is_a_weights_error(make_segmenter_weights):
    from nucleikit.models.weights import load_weights

    model, meta = load_weights(make_segmenter_weights())
    with pytest.raises(WeightsError, match="intensity"):
        Segmenter(model, dict(meta, intensity="zscore"), config=ONE_THREAD)


def test_mpp_resampling_maps_labels_back(make_segmenter_weights, rng):
    seg = Segmenter.from_weights(make_segmenter_weights(mpp=0.5), ONE_THREAD)
    image = rng.random((80, 64, 3)).astype(np.float32)
    out = seg.segment(image, mpp=0.25)  # a 2x finer input: the model sees half the pixels
    assert out.prob.shape == (40, 32)
    assert out.labels.shape == (80, 64)
    same = seg.segment(image)  # unknown input resolution: the model's own is assumed
    assert same.prob.shape == (80, 64)


def test_no_mpp_in_weights_runs_at_input_resolution(make_segmenter_weights, rng):
    seg = Segmenter.from_weights(make_segmenter_weights(mpp=None), ONE_THREAD)
    assert seg.segment(rng.random((30, 50, 3)).astype(np.float32), mpp=0.25).prob.shape == (30, 50)


def test_resize_labels_nearest_neighbour():
    small = np.array([[1, 2], [3, 0]], np.int32)
    big = resize_labels(small, (4, 4))
    assert np.array_equal(big, np.kron(small, np.ones((2, 2), np.int32)))
    assert np.array_equal(resize_labels(big, (2, 2)), small)
    assert resize_labels(small, (2, 2)) is small


def test_rejects_a_detector_as_segmenter(tmp_path):
    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights

    path = save_weights(tmp_path / "det.safetensors", build_model("micronet", width=4),
                        {"model": "micronet", "model_kwargs": {"width": 4}, "task": "detection", "mpp": 0.5,
                         "mean": [0.5] * 3, "std": [0.25] * 3})
    with pytest.raises(WeightsError, match="not a segmentation model"):
        Segmenter.from_weights(path, ONE_THREAD)


def test_missing_bundled_name_is_a_weights_error():
    with pytest.raises(WeightsError, match="no-such-segmenter"):
        Segmenter.from_weights("no-such-segmenter", ONE_THREAD)


def test_bad_pixels_shape(make_segmenter_weights):
    seg = Segmenter.from_weights(make_segmenter_weights(), ONE_THREAD)
    # a grey (H, W) array is an image (issue 16); five channels are not
    with pytest.raises(ValueError, match="5 channels"):
        seg.segment(np.zeros((10, 10, 5), np.float32))


# --- instance heads -----------------------------------------------------------------------------


def test_instance_head_maps_are_resized_to_the_input_and_cut_by_the_marker_watershed(make_segmenter_weights, rng):
    from nucleikit.targets import instance_targets

    seg = Segmenter.from_weights(make_segmenter_weights(model="unet_instance", mpp=0.5, markers="distance",
                                                        marker_threshold=0.5), ONE_THREAD)
    assert seg.head == "instance" and seg.markers == "distance"
    # a 0.25 um/px input runs at half size; the maps come back at the input's pixels
    image = rng.random((80, 100, 3)).astype(np.float32)
    out = seg.segment(image, mpp=0.25)
    assert out.maps.shape == (3, 40, 50) and out.prob.shape == (40, 50)
    assert out.labels.shape == (80, 100) and out.labels.dtype == np.int32
    # given maps (two touching discs at model resolution) skip the network: two nuclei at the input's size
    yy, xx = np.mgrid[0:40, 0:50]
    truth = np.zeros((40, 50), np.int32)
    truth[(xx - 18) ** 2 + (yy - 20) ** 2 <= 64] = 1
    truth[((xx - 31) ** 2 + (yy - 20) ** 2 <= 64) & (truth == 0)] = 2
    maps = np.moveaxis(instance_targets(truth), -1, 0)
    two = seg.segment(image, mpp=0.25, prob=maps)
    assert len(two) == 2
    assert np.allclose(sorted(two.measurements["x"]), [2 * 18 + 0.5, 2 * 31 + 0.5], atol=1.5)
    # min_size is in model pixels: 4 model px = 16 input px; an area of about 4 x pi 8^2 each
    assert np.all(two.measurements["area"] > 600)


def test_instance_head_rejects_wrong_maps_and_bad_markers(make_segmenter_weights):
    from nucleikit.models.weights import load_weights

    path = make_segmenter_weights(model="unet_instance")
    seg = Segmenter.from_weights(path, ONE_THREAD)
    with pytest.raises(ValueError, match="3 maps"):
        seg.segment(np.zeros((20, 20, 3), np.float32), prob=np.zeros((20, 20), np.float32))
    model, meta = load_weights(path)
    with pytest.raises(WeightsError, match="markers"):
        Segmenter(model, {**meta, "postprocess": {"markers": "peaks"}})
    with pytest.raises(WeightsError, match="not a segmenter"):
        Segmenter(model, {**meta, "target": "proximity"})


# --- image_kind ---------------------------------------------------------------------------------


def test_image_kind_of_made_up_images():
    from nucleikit.infer.segment import image_kind

    rng = np.random.default_rng(0)
    pink = np.clip(np.array([0.9, 0.6, 0.8], np.float32) + rng.normal(0, 0.05, (50, 60, 3)), 0, 1)
    assert image_kind(pink) == "stained"
    dark_grey = np.repeat(rng.uniform(0, 0.2, (50, 60, 1)).astype(np.float32), 3, axis=2)
    assert image_kind(dark_grey) == "fluorescence"
    blue_dapi = np.zeros((50, 60, 3), np.float32)
    blue_dapi[10:20, 10:20, 2] = 1.0  # coloured but dark: fluorescence
    assert image_kind(blue_dapi) == "fluorescence"
    assert image_kind(dark_grey[..., :1]) == "fluorescence"
    with pytest.raises(ValueError):
        image_kind(pink[..., :2])


def test_image_kind_on_the_shared_data(shared_dir):
    from nucleikit.infer.segment import image_kind
    from nucleikit.io.images import read_image

    data = shared_dir / "data"
    stained = sorted((data / "monuseg" / "train" / "images").glob("*.png"))[::3]
    stained += sorted((data / "crchisto" / "images").glob("img*"))[:40:8]
    assert len(stained) >= 14
    for path in stained:
        assert image_kind(read_image(path).pixels) == "stained", path.name
    fluorescent = 0
    for path in sorted((data / "dsb2018" / "stage1_test").glob("*/images/*.png")):
        pixels = read_image(path).pixels
        if np.ptp(pixels, axis=2).max() == 0 and np.median(pixels) < 0.3:  # grey on black: fluorescence
            assert image_kind(pixels) == "fluorescence", path.name
            fluorescent += 1
    assert fluorescent >= 40


def test_resize_maps_is_bilinear_on_pixel_centres_with_edge_values():
    from nucleikit.infer.segment import resize_maps

    maps = np.array([[[0.0, 1.0]], [[2.0, 2.0]]], np.float32)  # (2, 1, 2)
    big = resize_maps(maps, (1, 4))
    # x_small = (x + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> edge, 0.25, 0.75, edge
    assert big.shape == (2, 1, 4) and big.dtype == np.float32
    assert np.allclose(big[0, 0], [0.0, 0.25, 0.75, 1.0]) and np.allclose(big[1], 2.0)
    assert resize_maps(maps, (1, 2)) is maps


def test_auto_segmenter_picks_per_image_kind_and_loads_each_model_once():
    from nucleikit.infer.segment import AUTO_SEGMENTERS, AutoSegmenter

    assert AUTO_SEGMENTERS == {"stained": "unet_he", "fluorescence": "unet_dsb"}
    rng = np.random.default_rng(0)
    pink = np.clip(np.array([0.9, 0.6, 0.8], np.float32) + rng.normal(0, 0.05, (50, 60, 3)), 0, 1).astype(np.float32)
    dark = np.repeat(rng.uniform(0, 0.2, (50, 60, 1)).astype(np.float32), 3, axis=2)
    auto = AutoSegmenter(ONE_THREAD)
    he, fluo = auto.for_image(pink), auto.for_image(dark)
    assert (he.name, fluo.name) == ("unet_he", "unet_dsb")
    assert he.head == fluo.head == "instance"
    assert auto.for_image(pink) is he  # loaded once
    with pytest.raises(ConfigError):
        AutoSegmenter(models={"brightfield": "unet"})
    with pytest.raises(ConfigError):
        AutoSegmenter(models={"stained": "unet_he"}).load("fluorescence")


def test_tta_averages_the_maps_of_flipped_views(make_segmenter_weights, rng):
    from nucleikit.infer.tta import average_over_transforms

    path = make_segmenter_weights(model="unet_instance")
    image = rng.random((50, 70, 3)).astype(np.float32)
    plain = Segmenter.from_weights(path, ONE_THREAD)
    for n in (2, 8):
        seg = Segmenter.from_weights(path, ONE_THREAD, tta=n)
        maps = seg.output_maps(image)
        assert maps.shape == plain.output_maps(image).shape == (3, 50, 70)
        assert np.allclose(maps, average_over_transforms(plain.predictor, image, n), atol=1e-6)
        assert not np.allclose(maps, plain.output_maps(image), atol=1e-4)  # a random net is not equivariant
        out = seg.segment(image)
        assert np.allclose(out.maps, maps, atol=1e-6) and out.labels.shape == (50, 70)
    with pytest.raises(ConfigError, match="views"):
        Segmenter.from_weights(path, ONE_THREAD, tta=3)
    from nucleikit.infer.segment import AutoSegmenter

    with pytest.raises(ConfigError):
        AutoSegmenter(ONE_THREAD, tta=0)


def test_padding_align_runs_a_one_tile_image_in_one_aligned_window(make_segmenter_weights, rng):
    from nucleikit.infer.tiling import predict_aligned
    from nucleikit.transforms import standardise

    path = make_segmenter_weights(model="unet_instance")
    halo = Segmenter.from_weights(path, ONE_THREAD)
    align = Segmenter.from_weights(path, ONE_THREAD, padding="align")
    assert (halo.padding, align.padding) == ("halo", "align")
    read = halo.predictor.halo * 2 + 64
    small = rng.random((50, read - 3, 3)).astype(np.float32)  # more than one 64-px tile, less than its read window
    p = align.predictor
    want = predict_aligned(p.forward, standardise(small, p.mean, p.std), halo=p.halo, align=p.align)
    np.testing.assert_array_equal(align.output_maps(small), want)
    assert not np.allclose(align.output_maps(small), halo.output_maps(small), atol=1e-4)  # the border differs
    out = align.segment(small)
    np.testing.assert_array_equal(out.maps, want)
    assert out.labels.shape == small.shape[:2]
    large = rng.random((read + 5, 90, 3)).astype(np.float32)  # larger than a read window: tiled with the halo
    np.testing.assert_array_equal(align.output_maps(large), halo.output_maps(large))
    with pytest.raises(ConfigError, match="padding"):
        Segmenter.from_weights(path, ONE_THREAD, padding="none")
