"""Tests for nucleikit.io.images: formats, sample types, colour rules, mpp, bad input."""

from __future__ import annotations

import hashlib
import os
import json
import struct
import warnings
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, PngImagePlugin

from nucleikit.errors import ConfigError, InputError
from nucleikit.io.images import MAX_PIXELS, read_image, sample_image_path

RGB = np.array(
    [[[0, 128, 255], [10, 20, 30], [255, 255, 255]], [[1, 2, 3], [200, 100, 50], [0, 0, 0]]], dtype=np.uint8
)  # (2, 3, 3): H = 2, W = 3


def _png(path: Path, array: np.ndarray, **save) -> Path:
    Image.fromarray(array).save(path, **save)
    return path


def _tif(path: Path, array: np.ndarray, **write) -> Path:
    tifffile.imwrite(path, array, **write)
    return path


# --- formats and sample types ------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff", ".PNG"])
def test_uint8_rgb_round_trip_is_exact(tmp_path, suffix):
    path = tmp_path / f"image{suffix}"
    if suffix.lower() in (".tif", ".tiff"):
        _tif(path, RGB, photometric="rgb")
    else:
        _png(path, RGB)
    image = read_image(path)
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (2, 3, 3)
    np.testing.assert_array_equal(image.pixels, RGB.astype(np.float32) / np.float32(255))
    assert image.original_dtype == "uint8"
    assert image.original_mode == "rgb"
    assert image.path == path
    assert image.shape == (2, 3)


def test_jpeg_reads_close_to_what_was_written(tmp_path):
    flat = np.full((16, 16, 3), (200, 120, 60), dtype=np.uint8)
    path = _png(tmp_path / "image.jpg", flat, quality=95)
    image = read_image(path)
    assert image.pixels.shape == (16, 16, 3)
    np.testing.assert_allclose(image.pixels, flat / 255.0, atol=3 / 255)
    assert image.mpp is None  # Pillow writes JFIF density 1:1 (aspect only)


def test_uint16_grey_png_divides_by_65535_and_replicates_to_rgb(tmp_path):
    grey = np.array([[0, 65535], [1000, 32768]], dtype=np.uint16)
    image = read_image(_png(tmp_path / "grey16.png", grey))
    assert image.original_dtype == "uint16"
    assert image.original_mode == "grey"
    assert image.pixels.shape == (2, 2, 3)
    expected = grey.astype(np.float32) / np.float32(65535)
    for channel in range(3):
        np.testing.assert_array_equal(image.pixels[:, :, channel], expected)


def test_uint16_rgb_png_keeps_all_16_bits(tmp_path):
    # Pillow alone would keep only the high byte: 7 -> 0.
    rgb16 = np.array([[[7, 1000, 65535]]], dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(imagecodecs.png_encode(rgb16))
    image = read_image(path)
    assert image.original_dtype == "uint16"
    np.testing.assert_array_equal(image.pixels[0, 0], np.array([7, 1000, 65535], np.float32) / np.float32(65535))


def test_uint16_grey_tiff(tmp_path):
    grey = np.array([[0, 65535, 257]], dtype=np.uint16)
    image = read_image(_tif(tmp_path / "grey16.tif", grey), mode="grey")
    assert image.pixels.shape == (1, 3, 1)
    np.testing.assert_array_equal(image.pixels[0, :, 0], grey[0] / np.float32(65535))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_tiff_within_unit_range_is_kept(tmp_path, dtype):
    values = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=dtype)
    image = read_image(_tif(tmp_path / "float.tif", values), mode="grey")
    assert image.original_dtype == np.dtype(dtype).name
    np.testing.assert_array_equal(image.pixels[:, :, 0], values.astype(np.float32))


def test_float_tiff_outside_unit_range_is_refused(tmp_path):
    path = _tif(tmp_path / "float.tif", np.array([[0.0, 1.5]], dtype=np.float32))
    with pytest.raises(InputError, match=r"span \[0, 1.5\], outside \[0, 1\]"):
        read_image(path)


def test_float_tiff_with_nan_is_refused(tmp_path):
    path = _tif(tmp_path / "nan.tif", np.array([[0.0, np.nan]], dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        read_image(path)


def test_signed_integer_tiff_is_refused(tmp_path):
    path = _tif(tmp_path / "int16.tif", np.zeros((2, 2), dtype=np.int16))
    with pytest.raises(InputError, match="unsupported sample type int16"):
        read_image(path)


def test_bilevel_png_gives_zero_and_one(tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(np.array([[True, False, True]])).save(path)
    image = read_image(path, mode="grey")
    assert image.original_dtype == "bool"
    np.testing.assert_array_equal(image.pixels[0, :, 0], [1.0, 0.0, 1.0])


def test_bool_tiff_minisblack_gives_zero_and_one(tmp_path):
    path = _tif(tmp_path / "mask.tif", np.array([[True, False]]), photometric="minisblack")
    np.testing.assert_array_equal(read_image(path, mode="grey").pixels[0, :, 0], [1.0, 0.0])


def test_miniswhite_tiff_is_inverted(tmp_path):
    path = _tif(tmp_path / "mw.tif", np.array([[0, 255]], dtype=np.uint8), photometric="miniswhite")
    np.testing.assert_array_equal(read_image(path, mode="grey").pixels[0, :, 0], [1.0, 0.0])


# --- colour rules -------------------------------------------------------------


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.array([[[0, 0, 255, 0], [0, 0, 255, 255], [255, 0, 0, 51]]], dtype=np.uint8)
    image = read_image(_png(tmp_path / "rgba.png", rgba))
    assert image.original_mode == "rgba"
    alpha = np.float32(51) / np.float32(255)
    expected = np.array(
        [[[1, 1, 1], [0, 0, 1], [1, 1 - alpha, 1 - alpha]]], dtype=np.float32
    )  # transparent -> white; opaque -> itself; c * a + (1 - a)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-7)


def test_opaque_rgba_keeps_colours_exactly(tmp_path):
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    image = read_image(_png(tmp_path / "opaque.png", rgba))
    np.testing.assert_array_equal(image.pixels, RGB / np.float32(255))


def test_rgba_tiff_is_composited(tmp_path):
    rgba = np.array([[[0, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    image = read_image(_tif(tmp_path / "rgba.tif", rgba, photometric="rgb"))
    np.testing.assert_array_equal(image.pixels[0], [[1, 1, 1], [0, 0, 0]])


def test_grey_alpha_png_is_composited(tmp_path):
    path = tmp_path / "la.png"
    Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), mode="LA").save(path)
    image = read_image(path, mode="grey")
    assert image.original_mode == "grey+alpha"
    np.testing.assert_array_equal(image.pixels[0, :, 0], [1.0, 0.0])


def test_grey_mode_uses_bt601_luminance(tmp_path):
    pure = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    image = read_image(_png(tmp_path / "rgb.png", pure), mode="grey")
    assert image.pixels.shape == (1, 4, 1)
    np.testing.assert_allclose(image.pixels[0, :, 0], [0.299, 0.587, 0.114, 1.0], rtol=1e-6)
    assert image.pixels.max() <= 1.0


def test_grey_image_in_grey_mode_is_unchanged(tmp_path):
    grey = np.array([[3, 250]], dtype=np.uint8)
    image = read_image(_png(tmp_path / "grey.png", grey), mode="grey")
    np.testing.assert_array_equal(image.pixels[:, :, 0], grey / np.float32(255))


def test_palette_png_is_expanded(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "palette.png")
    data = read_image(tmp_path / "palette.png")
    assert data.original_mode == "palette"
    np.testing.assert_array_equal(data.pixels[0], [[1, 0, 0], [0, 0, 1]])


def test_palette_png_with_transparency_is_composited(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "palette.png", transparency=0)
    data = read_image(tmp_path / "palette.png")
    assert data.original_mode == "palette+alpha"
    np.testing.assert_array_equal(data.pixels[0], [[1, 1, 1], [0, 0, 1]])


def test_palette_tiff_uses_its_colormap(tmp_path):
    colormap = np.zeros((3, 256), dtype=np.uint16)
    colormap[:, 1] = (65535, 0, 65535)
    path = _tif(tmp_path / "palette.tif", np.array([[0, 1]], np.uint8), photometric="palette", colormap=colormap)
    np.testing.assert_array_equal(read_image(path).pixels[0], [[0, 0, 0], [1, 0, 1]])


def test_planar_rgb_tiff_equals_interleaved(tmp_path):
    path = _tif(tmp_path / "planar.tif", np.moveaxis(RGB, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(path).pixels, RGB / np.float32(255))


def test_page_stack_needs_a_chosen_plane(tmp_path):
    # the first plane used to be taken without a word (issue 16)
    stack = np.stack([np.full((6, 8), value, np.uint8) for value in (10, 20, 30)])
    path = _tif(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.raises(InputError, match=r"holds 3 planes \(axes QYX, shape \(3, 6, 8\)\); choose one"):
        read_image(path)
    image = read_image(path, mode="grey", plane=1)
    assert image.pixels.shape == (6, 8, 1)
    np.testing.assert_array_equal(image.pixels, np.full((6, 8, 1), 20 / np.float32(255)))
    with pytest.raises(InputError, match="holds 3 planes \\(0 to 2\\); there is no plane 3"):
        read_image(path, plane=3)


def test_z_stack_plane_is_chosen_along_z(tmp_path):
    stack = np.stack([np.full((6, 8), value, np.uint8) for value in (10, 20)])
    path = _tif(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(InputError, match="holds 2 planes"):
        read_image(path)
    assert read_image(path, mode="grey", plane=1).pixels[0, 0, 0] == pytest.approx(20 / 255)


def test_two_channels_saved_as_pages_are_named(tmp_path):
    # tifffile saves an (H, W, 2) array as H pages of W x 2 pixels: it was read as a 2-pixel-wide image
    path = _tif(tmp_path / "two.tif", np.zeros((50, 60, 2), np.uint8))
    with pytest.raises(InputError, match="50 pages of 2 x 60 pixels: an image with 2 channels"):
        read_image(path)


def test_reading_plane_sets_the_plane_of_reads_without_one(tmp_path):
    # the CLI's --plane K: every read_image inside the block takes plane K
    from nucleikit.io.images import reading_plane

    path = _tif(tmp_path / "s.tif", np.stack([np.full((6, 8), v, np.uint8) for v in (10, 20, 30)]), photometric="minisblack")
    with reading_plane(2):
        assert read_image(path, mode="grey").pixels[0, 0, 0] == pytest.approx(30 / 255)
        assert read_image(path, mode="grey", plane=0).pixels[0, 0, 0] == pytest.approx(10 / 255)  # explicit wins
        with pytest.raises(InputError, match="single plane"):
            read_image(_tif(tmp_path / "one.tif", RGB, photometric="rgb"))
    with pytest.raises(InputError, match="holds 3 planes"):  # outside the block: as before
        read_image(path)
    with reading_plane(None):
        with pytest.raises(InputError, match="choose one with --plane K"):
            read_image(path)
    with pytest.raises(ConfigError, match="plane must be an integer >= 0"):
        with reading_plane(-1):
            pass


def test_plane_of_a_single_plane_file(tmp_path):
    assert read_image(_tif(tmp_path / "a.tif", RGB, photometric="rgb"), plane=0).pixels.shape == RGB.shape
    with pytest.raises(InputError, match="single plane"):
        read_image(_tif(tmp_path / "b.tif", RGB, photometric="rgb"), plane=1)
    with pytest.raises(ConfigError, match="plane must be an integer >= 0"):
        read_image(_tif(tmp_path / "c.tif", RGB, photometric="rgb"), plane=-1)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_image(fifo)


def test_four_dimensional_stack_is_refused(tmp_path):
    path = _tif(tmp_path / "tzyx.tif", np.zeros((2, 3, 4, 5), np.uint8), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match="4-D stack"):
        read_image(path)


@pytest.mark.parametrize("channels", [2, 5])
def test_unsupported_channel_count_is_refused(tmp_path, channels):
    array = np.zeros((6, 7, channels), np.uint8)
    path = _tif(tmp_path / "channels.tif", array, photometric="minisblack", planarconfig="contig")
    with pytest.raises(InputError, match=f"{channels} channels"):
        read_image(path)


def test_unknown_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="mode"):
        read_image(_png(tmp_path / "a.png", RGB), mode="hsv")


# --- pixel size ---------------------------------------------------------------


def test_png_phys_in_metres_gives_mpp(tmp_path):
    path = _png(tmp_path / "a.png", RGB, dpi=(25400 / 0.499, 25400 / 0.499))
    assert read_image(path).mpp == pytest.approx(0.499, abs=1e-6)


def test_png_without_phys_has_no_mpp(tmp_path):
    assert read_image(_png(tmp_path / "a.png", RGB)).mpp is None


def test_png_phys_aspect_only_has_no_mpp(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add(b"pHYs", struct.pack(">IIB", 2004008, 2004008, 0))  # unit 0: aspect ratio only
    path = _png(tmp_path / "a.png", RGB, pnginfo=info)
    assert read_image(path).mpp is None


def test_png_screen_dpi_is_not_a_microscope_mpp(tmp_path):
    assert read_image(_png(tmp_path / "a.png", RGB, dpi=(72, 72))).mpp is None


def test_bmp_default_dpi_is_not_an_mpp(tmp_path):
    assert read_image(_png(tmp_path / "a.bmp", RGB)).mpp is None  # Pillow writes 96 dpi


@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [
        ((10000 / 0.25, 10000 / 0.25), "CENTIMETER", 0.25),
        ((25400 / 0.5, 25400 / 0.5), "INCH", 0.5),
        ((4.0, 4.0), "NONE", None),
        ((72.0, 72.0), "INCH", None),
    ],
)
def test_tiff_resolution_tags(tmp_path, resolution, unit, expected):
    path = _tif(tmp_path / "a.tif", RGB, photometric="rgb", resolution=resolution, resolutionunit=unit)
    mpp = read_image(path).mpp
    assert mpp == (pytest.approx(expected, rel=1e-6) if expected is not None else None)


def test_tiff_aperio_description_gives_mpp(tmp_path):
    description = (
        "Aperio Image Library v11.2.1\r\n46000x32914 [0,100 46000x32814] (240x240) JPEG/RGB Q=30"
        "|AppMag = 20|MPP = 0.4990"
    )
    path = _tif(tmp_path / "a.tif", RGB, photometric="rgb", description=description)
    assert read_image(path).mpp == pytest.approx(0.499)


@pytest.mark.parametrize(("size", "unit", "expected"), [(0.25, "µm", 0.25), (500.0, "nm", 0.5)])
def test_ome_tiff_physical_size_gives_mpp(tmp_path, size, unit, expected):
    path = _tif(
        tmp_path / "a.ome.tif",
        np.moveaxis(RGB, -1, 0),
        ome=True,
        photometric="minisblack",
        metadata={"axes": "CYX", "PhysicalSizeX": size, "PhysicalSizeXUnit": unit},
    )
    image = read_image(path)
    assert image.mpp == pytest.approx(expected)
    np.testing.assert_array_equal(image.pixels, RGB / np.float32(255))  # C planes read as R, G, B


def test_imagej_micron_unit_gives_mpp(tmp_path):
    path = _tif(tmp_path / "a.tif", RGB[:, :, 0], imagej=True, resolution=(4.0, 4.0), metadata={"unit": "um"})
    assert read_image(path).mpp == pytest.approx(0.25)


# --- bad input: one reason each ------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.png")


def test_directory(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(InputError, match="is a directory"):
        read_image(folder)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(InputError, match=r"empty \(0 bytes\)") as info:
        read_image(path)
    assert info.value.path == str(path)


def test_unsupported_suffix(tmp_path):
    path = _png(tmp_path / "a.gif", RGB, format="PNG")
    with pytest.raises(InputError, match="unsupported image format '.gif'"):
        read_image(path)


def test_truncated_png(tmp_path):
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _png(tmp_path / "full.png", noisy).read_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or damaged PNG"):
        read_image(path)


def test_truncated_tiff(tmp_path):
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _tif(tmp_path / "full.tif", noisy, photometric="rgb").read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or damaged TIFF"):
        read_image(path)


def test_random_bytes_named_png(tmp_path):
    path = tmp_path / "random.png"
    path.write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(InputError, match="cannot be decoded as a PNG"):
        read_image(path)


def test_random_bytes_named_tiff(tmp_path):
    path = tmp_path / "random.tif"
    path.write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(InputError, match="not a TIFF file"):
        read_image(path)


def test_zero_sized_tiff(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that the file is nonconformant
        path = _tif(tmp_path / "empty.tif", np.zeros((0, 10), np.uint8))
    with pytest.raises(InputError, match="zero-sized axis"):
        read_image(path)


def test_one_dimensional_tiff(tmp_path):
    path = _tif(tmp_path / "line.tif", np.arange(5, dtype=np.uint8))
    with pytest.raises(InputError, match="fewer than 2 spatial dimensions"):
        read_image(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = _tif(tmp_path / "a.tif", np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="10 x 10 pixels exceeds the limit of 99 pixels"):
        read_image(path, max_pixels=99)


def _png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose IHDR claims width x height (a decompression bomb header)."""
    data = bytearray(_png(path, np.zeros((1, 1), np.uint8)).read_bytes())
    ihdr = bytes(data[12:29])  # chunk type + 13 data bytes
    patched = b"IHDR" + struct.pack(">II", width, height) + ihdr[12:]
    data[12:29] = patched
    data[29:33] = struct.pack(">I", zlib.crc32(patched))
    path.write_bytes(bytes(data))
    return path


def test_huge_png_header_is_refused_without_pillow_warning(tmp_path):
    side = 12_000  # 144 M pixels: above MAX_PIXELS, below Pillow's hard limit
    assert side * side > MAX_PIXELS
    path = _png_with_header_size(tmp_path / "bomb.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        with pytest.raises(InputError, match="12000 x 12000 pixels exceeds the limit"):
            read_image(path)


# --- bundled sample -------------------------------------------------------------


def test_sample_image_loads_with_its_mpp():
    path = sample_image_path()
    assert path.name == "sample_he.png"
    assert path.stat().st_size < 1_000_000
    image = read_image(path)
    assert image.pixels.shape == (512, 512, 3)
    assert image.mpp == pytest.approx(0.499, abs=1e-6)
    # H&E tissue: mostly stained (not white) pixels.
    assert (image.pixels.mean(axis=2) < 0.85).mean() > 0.5


def test_sample_provenance_matches_the_png():
    path = sample_image_path()
    record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["licence"] == "CC0-1.0"
    assert record["mpp"] == 0.499
    assert record["source"]["file"] == "CMU-1-Small-Region.svs"
    assert record["source"]["region"]["width"] == record["source"]["region"]["height"] == 512


def test_pillow_hard_limit_message_quotes_one_limit(tmp_path):
    # above Pillow's own hard limit (2 x 89.5 M): its error used to be quoted after ours (issue 16)
    path = _png_with_header_size(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(InputError) as info:
        read_image(path)
    message = info.value.reason
    assert f"limit of {MAX_PIXELS:,} pixels" in message
    assert message.count("limit") == 1 and "178956970" not in message and "DOS" not in message
    # the size as the refusal below Pillow's limit gives it (before: "image exceeds the limit", no size)
    assert message.startswith("image of 20000 x 20000 pixels exceeds the limit of ")


def test_pillow_hard_limit_without_a_header_size_quotes_the_pixel_count(tmp_path):
    path = tmp_path / "bomb.bmp"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[18:26] = struct.pack("<ii", 20_000, 20_000)  # BITMAPINFOHEADER width, height
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"^.*bomb\.bmp: image of 400,000,000 pixels exceeds the limit of "
                                         rf"{MAX_PIXELS:,} pixels \(open large images with the slide reader\)$"):
        read_image(path)
