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


# --- instance_targets ------------------------------------------------------------------------


def _discs(shape, discs):
    """Label image of discs (x, y, r), later discs over earlier ones."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k, (x, y, r) in enumerate(discs, start=1):
        labels[(cols - x) ** 2 + (rows - y) ** 2 <= r * r] = k
    return labels


def test_instance_targets_of_one_disc_by_hand():
    from nucleikit.targets import INSTANCE_CHANNELS, instance_targets

    labels = _discs((21, 21), [(10, 10, 5)])
    t = instance_targets(labels)
    assert INSTANCE_CHANNELS == ("foreground", "boundary", "distance")
    assert t.shape == (21, 21, 3) and t.dtype == np.float32
    assert np.array_equal(t[..., 0], labels > 0)
    # inner boundary: the disc's pixels with a background 8-neighbour. (10, 14) is on it, since its
    # diagonal neighbour (9, 15) lies outside (1 + 25 > 25); (10, 13) is not
    assert t[10, 15, 1] == 1 and t[10, 5, 1] == 1 and t[5, 10, 1] == 1 and t[10, 14, 1] == 1
    assert t[10, 13, 1] == 0 and t[10, 10, 1] == 0 and t[10, 16, 1] == 0
    # distance: 1 at the centre (the farthest pixel from the border), 1/max on the rim, 0 outside
    d = t[..., 2]
    assert d[10, 10] == pytest.approx(1.0)
    # boundary pixels count 1; the centre is 4 px from the nearest boundary pixel (10, 14): 4 + 1 = 5
    assert d[10, 15] == pytest.approx(1.0 / 5.0) and d[10, 14] == pytest.approx(1.0 / 5.0)
    assert d[10, 13] == pytest.approx(2.0 / 5.0)
    assert d[0, 0] == 0.0 and d[10, 16] == 0.0


def test_instance_targets_separate_touching_discs():
    from nucleikit.targets import instance_targets

    # Two discs of radius 6, centres 10 px apart: they share a straight seam at x = 15/16
    labels = _discs((20, 32), [(10, 10, 6), (20, 10, 6)])
    t = instance_targets(labels)
    # both sides of the seam are boundary pixels, so the interiors do not touch
    seam = (labels[:, :-1] != labels[:, 1:]) & (labels[:, :-1] > 0) & (labels[:, 1:] > 0)
    rows, cols = np.nonzero(seam)
    assert rows.size > 0
    assert np.all(t[rows, cols, 1] == 1) and np.all(t[rows, cols + 1, 1] == 1)
    interior = (t[..., 0] == 1) & (t[..., 1] == 0)
    from scipy import ndimage

    _, n = ndimage.label(interior, structure=np.ones((3, 3)))
    assert n == 2
    # each disc is normalised on its own: both reach 1 (the cut disc off its centre), 0 < d <= 1 inside
    assert t[..., 2][labels == 1].max() == pytest.approx(1.0) and t[10, 20, 2] == pytest.approx(1.0)
    assert t[10, 10, 2] < 1.0  # the first disc lost its right part to the second: its core moved left
    inside = labels > 0
    assert np.all((t[..., 2][inside] > 0) & (t[..., 2][inside] <= 1))


def test_instance_targets_empty_and_bad_input():
    from nucleikit.targets import instance_targets

    t = instance_targets(np.zeros((5, 7), np.uint16))
    assert t.shape == (5, 7, 3) and not t.any()
    with pytest.raises(ValueError):
        instance_targets(np.zeros((5, 7), np.float32))
    with pytest.raises(ValueError):
        instance_targets(np.zeros((5, 7, 2), np.int32))
