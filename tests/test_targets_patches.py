"""Tests of nucleikit.targets.extract_patches (classification patches)."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.targets import extract_patches

# 5 rows x 6 columns, value = 6 * row + col
IMAGE = np.arange(30).reshape(5, 6)


def _reflect(i: int, n: int) -> int:
    """numpy.pad(mode="reflect") index: mirror about the edge pixels, period 2(n-1)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i %= period
    return i if i < n else period - i


def _slow_patches(image: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """Reference: one patch at a time, one pixel at a time."""
    h, w = image.shape[:2]
    out = np.zeros((len(points), size, size) + image.shape[2:], image.dtype)
    for n, (x, y) in enumerate(points):
        col, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        for i in range(size):
            for j in range(size):
                out[n, i, j] = image[_reflect(row - size // 2 + i, h), _reflect(col - size // 2 + j, w)]
    return out


def test_odd_size_is_centred_on_the_point():
    patch = extract_patches(IMAGE, np.array([[2.0, 3.0]]), 3)
    assert patch.shape == (1, 3, 3)
    assert patch[0].tolist() == [[13, 14, 15], [19, 20, 21], [25, 26, 27]]


def test_even_size_puts_the_point_at_index_size_over_2():
    patch = extract_patches(IMAGE, np.array([[3.0, 2.0]]), 4)[0]
    # rows 0..3, columns 1..4: two pixels before the centre, one after
    assert patch.tolist() == [[1, 2, 3, 4], [7, 8, 9, 10], [13, 14, 15, 16], [19, 20, 21, 22]]
    assert patch[2, 2] == IMAGE[2, 3]


def test_reflect_padding_at_the_top_left_corner():
    patch = extract_patches(IMAGE, np.array([[0.0, 0.0]]), 4)[0]
    # rows/columns -2, -1, 0, 1 mirror (edge not repeated) to 2, 1, 0, 1
    assert patch.tolist() == [[14, 13, 12, 13], [8, 7, 6, 7], [2, 1, 0, 1], [8, 7, 6, 7]]


def test_reflect_padding_at_the_bottom_right_corner_with_channels():
    image = np.stack([IMAGE, 100 + IMAGE], axis=-1).astype(np.uint8)
    patch = extract_patches(image, np.array([[5.0, 4.0]]), 3)
    assert patch.shape == (1, 3, 3, 2) and patch.dtype == np.uint8
    # rows 3, 4, 3 (reflected) and columns 4, 5, 4
    assert patch[0, ..., 0].tolist() == [[22, 23, 22], [28, 29, 28], [22, 23, 22]]
    assert np.array_equal(patch[0, ..., 1], patch[0, ..., 0] + 100)


def test_points_are_rounded_half_up():
    # (1.5, 0.49) -> column 2, row 0; (2.49, 1.5) -> column 2, row 2
    patches = extract_patches(IMAGE, np.array([[1.5, 0.49], [2.49, 1.5]]), 1)
    assert patches[:, 0, 0].tolist() == [2, 14]


def test_many_points_equal_the_slow_reference(rng):
    image = rng.integers(0, 256, size=(7, 9, 3)).astype(np.uint8)
    # every pixel, plus the extreme positions that still round into the image
    yy, xx = np.mgrid[0:7, 0:9]
    points = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
    points = np.vstack([points, [[-0.5, -0.5], [8.49, 6.49]], rng.uniform(-0.5, 6.49, size=(20, 2))])
    for size in (1, 2, 5, 8, 15, 32):  # 15 and 32 reach beyond the whole image
        fast = extract_patches(image, points, size)
        assert fast.shape == (len(points), size, size, 3)
        assert np.array_equal(fast, _slow_patches(image, points, size)), size


def test_no_points_gives_an_empty_stack():
    out = extract_patches(np.zeros((4, 4, 3), np.float32), np.zeros((0, 2)), 32)
    assert out.shape == (0, 32, 32, 3) and out.dtype == np.float32


def test_points_outside_the_image_are_counted_in_the_error():
    points = np.array([[-0.51, 0.0], [5.5, 1.0], [1.0, 1.0], [0.0, 4.5]])  # W = 6, H = 5
    with pytest.raises(ValueError, match=r"3 of 4 points lie outside the 6 x 5 \(W x H\) image"):
        extract_patches(IMAGE, points, 3)


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="size must be a positive integer"):
        extract_patches(IMAGE, np.array([[1.0, 1.0]]), 0)


def test_bad_points_shape_is_refused():
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\)"):
        extract_patches(IMAGE, np.array([[1.0, 1.0, 1.0]]), 3)
