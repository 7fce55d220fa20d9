import numpy as np
import pytest

from nucleikit.targets import gaussian_density_map, point_raster, proximity_map, proximity_radius_px


def test_proximity_map_values_hand_computed():
    # One centre on pixel (x=5, y=4); d = 4, alpha = 3.
    m = proximity_map([(5.0, 4.0)], (10, 12), d=4.0, alpha=3.0)
    assert m.shape == (10, 12) and m.dtype == np.float32
    assert m[4, 5] == pytest.approx(1.0)
    # Pixel (x=7, y=4) is at D = 2: (e^{3*(1-0.5)} - 1) / (e^3 - 1)
    assert m[4, 7] == pytest.approx((np.exp(1.5) - 1) / (np.exp(3) - 1), rel=1e-6)
    # D = 4 exactly gives 0, beyond d gives 0.
    assert m[4, 9] == pytest.approx(0.0, abs=1e-7)
    assert m[4, 10] == 0.0 and m[0, 0] == 0.0


def test_proximity_map_uses_nearest_centre():
    m = proximity_map([(2.0, 2.0), (6.0, 2.0)], (5, 9), d=5.0)
    # (x=4, y=2) is 2 from both; (x=5, y=2) is 1 from the second centre.
    expected = (np.exp(3 * (1 - 1 / 5)) - 1) / (np.exp(3) - 1)
    assert m[2, 5] == pytest.approx(expected, rel=1e-6)
    assert m[2, 3] == pytest.approx(expected, rel=1e-6)


def test_proximity_map_subpixel_and_empty():
    m = proximity_map([(1.5, 1.0)], (3, 4), d=2.0)
    assert m[1, 1] == pytest.approx(m[1, 2])  # symmetric around x = 1.5
    assert m[1, 1] < 1.0
    assert not proximity_map(np.zeros((0, 2)), (3, 4), d=2.0).any()
    with pytest.raises(ValueError):
        proximity_map([(1.0, 1.0, 1.0)], (3, 4), d=2.0)


def test_proximity_radius_scales_with_resolution():
    assert proximity_radius_px(0.25) == pytest.approx(15.0)
    assert proximity_radius_px(0.5) == pytest.approx(7.5)


def test_point_raster_clips_points_just_outside():
    r = point_raster([(-0.8, 0.2), (9.4, 4.6)], (5, 10))
    assert r[0, 0] and r[4, 9] and r.sum() == 2


def test_gaussian_density_isolated_peak_is_one():
    m = gaussian_density_map([(10.0, 10.0)], (21, 21), sigma=2.0, dilation=5)
    assert m.max() == pytest.approx(1.0, rel=1e-5)
    assert np.unravel_index(m.argmax(), m.shape) == (10, 10)
    assert m[10, 12] < 1.0 and m[0, 0] < 1e-3
    # symmetric
    assert np.allclose(m, m.T, atol=1e-6)


def test_gaussian_density_bad_dilation():
    with pytest.raises(ValueError):
        gaussian_density_map([(1.0, 1.0)], (5, 5), dilation=4)
