"""Fractions of training data as central windows."""

import numpy as np
import pytest

from nucleikit.errors import ConfigError
from nucleikit.experiments.subsets import central_window, fraction_of
from nucleikit.io.datasets.base import PointSample


def test_central_window_covers_the_fraction_of_the_area():
    r0, r1, c0, c1 = central_window((100, 200), 0.25)
    assert (r1 - r0, c1 - c0) == (50, 100) and (r0, c0) == (25, 50)


def test_window_keeps_and_shifts_the_points_inside(tmp_path):
    from PIL import Image

    img = np.zeros((100, 100, 3), np.uint8)
    img[30, 40] = 255
    Image.fromarray(img).save(tmp_path / "i.png")
    s = PointSample("i", tmp_path / "i.png", np.array([[40.0, 30.0], [5.0, 5.0], [74.4, 74.4], [74.6, 50.0]]), 0.5)
    (w,) = fraction_of([s], 0.25)  # rows/cols 25..74
    np.testing.assert_allclose(w.points, [[15.0, 5.0], [49.4, 49.4]])
    pix = w.load_image()
    assert pix.shape == (50, 50, 3) and pix[5, 15].max() == 1.0
    assert fraction_of([s], 1.0)[0] is s
    with pytest.raises(ConfigError):
        fraction_of([s], 0.0)
