"""as_float_image: arrays in memory normalised exactly as read_image normalises files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nucleikit.errors import InputError
from nucleikit.io.images import as_float_image, read_image


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_uint8_rgb_equals_the_file_reader(tmp_path, rng):
    arr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    from_file = read_image(_png(tmp_path / "a.png", arr)).pixels
    got = as_float_image(arr)
    assert got.dtype == np.float32 and got.shape == (7, 5, 3)
    np.testing.assert_array_equal(got, from_file)
    assert got[0, 0, 0] == np.float32(arr[0, 0, 0]) / np.float32(255)


def test_uint16_grey_equals_the_file_reader_in_both_modes(tmp_path, rng):
    arr = rng.integers(0, 65536, (6, 4), dtype=np.uint16)
    path = _png(tmp_path / "g.png", arr)
    for mode in ("rgb", "grey"):
        np.testing.assert_array_equal(as_float_image(arr, mode=mode), read_image(path, mode=mode).pixels)
    assert as_float_image(arr).shape == (6, 4, 3)  # grey (H, W) replicated to RGB
    assert as_float_image(arr[:, :, None], mode="grey").shape == (6, 4, 1)


def test_rgba_is_composited_over_white_as_the_file_reader(tmp_path, rng):
    arr = rng.integers(0, 256, (5, 5, 4), dtype=np.uint8)
    arr[0, 0] = (0, 0, 0, 0)  # fully transparent black: white after compositing
    got = as_float_image(arr)
    np.testing.assert_array_equal(got, read_image(_png(tmp_path / "rgba.png", arr)).pixels)
    np.testing.assert_array_equal(got[0, 0], [1.0, 1.0, 1.0])


def test_float_in_unit_range_passes_unchanged_and_is_a_copy():
    arr = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float64)
    got = as_float_image(arr)
    np.testing.assert_array_equal(got, [[[0.0, 0.5, 1.0]]])
    f32 = arr.astype(np.float32)
    out = as_float_image(f32)
    out[0, 0, 0] = 0.25
    assert f32[0, 0, 0] == 0.0  # the caller's array is never written through


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((4, 4, 3), 255.0), r"span \[255, 255\], outside \[0, 1\]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.zeros((2, 4, 4, 3), np.uint8), r"image of shape \(2, 4, 4, 3\)"),
        (np.zeros(5, np.uint8), r"image of shape \(5,\)"),
        (np.zeros((4, 4, 2), np.uint8), "2 channels"),
        (np.zeros((0, 4, 3), np.uint8), "zero-sized"),
        (np.zeros((4, 4, 3), np.int64), "unsupported sample type int64"),
    ],
)
def test_refusals_name_the_array_in_one_line(array, message):
    with pytest.raises(InputError, match=message) as info:
        as_float_image(array)
    assert str(info.value).startswith("image array: ") and "\n" not in str(info.value)
