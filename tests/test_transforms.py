import numpy as np
import pytest

from nucleikit.transforms import (
    channel_stats,
    jitter_stains,
    lab_moments,
    reinhard_normalise,
    resample,
    scale_factor,
    scale_points,
    standardise,
)


def test_scale_factor_rules():
    assert scale_factor(0.25, 0.5) == pytest.approx(0.5)
    assert scale_factor(None, 0.5) == 1.0
    assert scale_factor(0.499, 0.5) == 1.0  # within tolerance: no resampling
    with pytest.raises(ValueError):
        scale_factor(-1.0, 0.5)


def test_scale_points_pixel_centre_convention():
    # Pixel 0 of a 2x-downsampled image covers source pixels 0 and 1: centre 0.5.
    assert np.allclose(scale_points([(0.5, 1.5)], 0.5), [(0.0, 0.5)])
    xy = np.array([[3.2, 7.9]])
    assert np.allclose(scale_points(scale_points(xy, 0.4), 1 / 0.4), xy)


def test_resample_shape_and_mean():
    img = np.random.default_rng(0).random((40, 30, 3)).astype(np.float32)
    out = resample(img, 0.5)
    assert out.shape == (20, 15, 3) and out.dtype == np.float32
    assert out.mean() == pytest.approx(img.mean(), abs=0.01)
    assert resample(img, 1.0) is img


def test_channel_stats_and_standardise():
    a = np.zeros((2, 2, 3), np.float32)
    b = np.ones((2, 2, 3), np.float32)
    mean, std = channel_stats([a, b])
    assert np.allclose(mean, 0.5) and np.allclose(std, 0.5)
    z = standardise(b, mean, std)
    assert np.allclose(z, 1.0)
    with pytest.raises(ValueError):
        standardise(np.zeros((2, 2, 1), np.float32), mean, std)


def test_percentile_normalise_maps_percentiles_to_0_and_1():
    from nucleikit.transforms import percentile_normalise

    image = np.arange(1000, dtype=np.float32).reshape(10, 100) / 999.0
    out = percentile_normalise(image, low=0.0, high=100.0)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out.min() == pytest.approx(0.0, abs=1e-6) and out.max() == pytest.approx(1.0, abs=1e-6)
    dim = 0.05 * image  # a dim fluorescence image stretches to the same range
    np.testing.assert_allclose(percentile_normalise(dim, 1, 99), percentile_normalise(image, 1, 99), atol=1e-5)


def test_percentile_normalise_constant_image_and_bad_percentiles():
    from nucleikit.transforms import percentile_normalise

    assert not percentile_normalise(np.full((4, 4, 3), 0.7)).any()
    with pytest.raises(ValueError):
        percentile_normalise(np.zeros((2, 2)), low=50, high=10)


def test_lab_moments_of_known_colours():
    # pure white is L* = 100, a* = b* = 0; pure black is L* = 0
    white_black = np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8)
    mean, std = lab_moments(white_black)
    assert mean == pytest.approx([50.0, 0.0, 0.0], abs=0.01)
    assert std == pytest.approx([50.0, 0.0, 0.0], abs=0.01)
    # uint8 and the same pixels as float in [0, 1] agree
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 6, 6, 3)).astype(np.uint8)
    assert np.allclose(lab_moments(x)[0], lab_moments(x / 255.0)[0], atol=1e-4)
    with pytest.raises(ValueError, match="RGB"):
        lab_moments(np.zeros((4, 4)))


def test_reinhard_normalise_reaches_the_target_moments_and_keeps_dtype():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, size=(3, 10, 10, 3)).astype(np.float32)
    target_mean, target_std = np.array([70.0, 20.0, -15.0]), np.array([12.0, 8.0, 7.0])
    y = reinhard_normalise(x, target_mean, target_std)
    assert y.shape == x.shape and y.dtype == np.float32 and 0.0 <= y.min() and y.max() <= 1.0
    mean, std = lab_moments(y)
    assert mean == pytest.approx(target_mean, abs=0.5) and std == pytest.approx(target_std, abs=0.5)
    # its own moments as target: the identity (up to uint8 rounding)
    u = (x * 255).astype(np.uint8)
    m, s = lab_moments(u)
    out = reinhard_normalise(u, m, s)
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - u).max() <= 1
    # given source moments are used instead of the pixels' own
    shifted = reinhard_normalise(u, m, s, source=(m - [5.0, 0.0, 0.0], s))
    assert lab_moments(shifted)[0][0] == pytest.approx(m[0] + 5.0, abs=0.5)


def test_stain_jitter_is_exact_at_identity_and_follows_the_deconvolution():
    from skimage.color import hed_from_rgb, rgb_from_hed

    rng = np.random.default_rng(4)
    x = rng.uniform(0.05, 1.0, size=(3, 4, 4, 3)).astype(np.float32)
    ones, zeros = np.ones((3, 1, 1, 3)), np.zeros((3, 1, 1, 3))
    assert np.allclose(jitter_stains(x, ones, zeros), x, atol=1e-6)
    # doubling the haematoxylin density of one pixel, by hand
    pixel = np.array([0.6, 0.4, 0.7])
    stains = -np.log(pixel) @ hed_from_rgb
    expected = np.exp(-(stains * [2.0, 1.0, 1.0]) @ rgb_from_hed)
    got = jitter_stains(pixel.reshape(1, 1, 1, 3), np.array([2.0, 1.0, 1.0]).reshape(1, 1, 1, 3), zeros[:1])
    assert np.allclose(got.ravel(), np.clip(expected, 0, 1), atol=1e-6)
    assert got.ravel()[0] < pixel[0]  # more haematoxylin: less red light


