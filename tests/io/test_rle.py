"""Tests for nucleikit.io.rle: the Kaggle run-length convention, strict decoding, CSV files."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.errors import InputError
from nucleikit.io.rle import (
    read_rle_csv,
    rle_decode,
    rle_encode,
    rle_pixel_indices,
    rle_to_labels,
)


def _readme_decode(encoded: str, height: int, width: int) -> np.ndarray:
    """The decoding loop printed in the DSB2018 data README, verbatim in spirit."""
    values = [int(v) for v in encoded.split()]
    flat = np.zeros(height * width, bool)
    for s, length in zip(values[0::2], values[1::2]):
        flat[s - 1 : s - 1 + length] = True
    return flat.reshape(width, height).T


# --- the convention -----------------------------------------------------------------


def test_pixel_number_is_column_major_and_one_based():
    # Pixel (row 1, column 2) of a 3 x 4 image is number 2 * 3 + 1 + 1 = 8.
    mask = rle_decode("8 1", (3, 4))
    assert mask.shape == (3, 4) and mask.dtype == np.bool_
    assert np.argwhere(mask).tolist() == [[1, 2]]


def test_a_run_continues_down_the_column_then_into_the_next():
    # Pixels 2..3 are (1, 0), (2, 0); pixel 6 is (2, 1).
    expected = np.array([[0, 0], [1, 0], [1, 1]], dtype=bool)
    np.testing.assert_array_equal(rle_decode("2 2 6 1", (3, 2)), expected)
    np.testing.assert_array_equal(rle_decode("2 2 6 1", (3, 2)), _readme_decode("2 2 6 1", 3, 2))


def test_run_crossing_a_column_boundary():
    # Run 3..5 in a 4 x 2 image: rows 2, 3 of column 0 and row 0 of column 1.
    assert np.argwhere(rle_decode("3 3", (4, 2))).tolist() == [[0, 1], [2, 0], [3, 0]]


def test_encode_matches_the_convention():
    assert rle_encode(np.array([[0, 0], [1, 0], [1, 1]])) == "2 2 6 1"
    assert rle_encode(np.zeros((3, 3), bool)) == ""
    assert rle_encode(np.ones((3, 4), bool)) == "1 12"
    assert rle_encode(np.array([[0, 255], [0, 0]], np.uint8)) == "3 1"  # any non-zero is foreground


def test_empty_encoding_is_the_empty_mask():
    assert not rle_decode("", (2, 2)).any()
    assert not rle_decode("   ", (2, 2)).any()


def test_adjacent_runs_decode_and_encode_merged():
    np.testing.assert_array_equal(rle_decode("1 2 3 1", (2, 2)), rle_decode("1 3", (2, 2)))
    assert rle_encode(rle_decode("1 2 3 1", (2, 2))) == "1 3"


def test_run_ending_on_the_last_pixel_is_accepted():
    assert rle_decode("5 2", (2, 3)).ravel(order="F").tolist() == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 8), (33, 20)])
def test_round_trip_of_random_masks(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.1, 0.5, 0.9, 1.0):
        mask = rng.random(shape) < density
        encoded = rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(encoded, shape), mask)
        np.testing.assert_array_equal(_readme_decode(encoded, *shape), mask)


def test_random_encodings_agree_with_the_readme_loop():
    rng = np.random.default_rng(1)
    height, width = 17, 13
    for _ in range(20):
        cuts = np.sort(rng.choice(np.arange(1, height * width + 2), size=8, replace=False))
        starts, ends = cuts[0::2], cuts[1::2]  # 1-based starts, exclusive ends: disjoint, ascending
        encoded = " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))
        np.testing.assert_array_equal(rle_decode(encoded, (height, width)), _readme_decode(encoded, height, width))


def test_pixel_indices_are_row_major_flat_indices():
    mask = rle_decode("2 2 6 1", (3, 2))
    assert sorted(rle_pixel_indices("2 2 6 1", (3, 2)).tolist()) == np.flatnonzero(mask).tolist()


# --- malformed rows -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("1 2 3", "odd number of values \\(3\\)"),
        ("1 2.5", "'2.5', which is not an integer"),
        ("a 1", "'a', which is not an integer"),
        ("1_0 2", "'1_0', which is not an integer"),
        ("0 3", "run 1 \\(start 0, length 3\\): start below 1"),
        ("1 1 -2 1", "run 2 \\(start -2, length 1\\): start below 1"),
        ("1 0", "run 1 \\(start 1, length 0\\): length below 1"),
        ("5 3", "run 1 \\(start 5, length 3\\): run beyond the last pixel \\(6 = H x W\\)"),
        ("7 1", "run beyond the last pixel"),
        ("5 1 1 1", "run 2 \\(start 1, length 1\\) is not after run 1"),
        ("3 1 3 1", "run 2 \\(start 3, length 1\\) is not after run 1"),
        ("1 3 2 2", "run 2 \\(start 2, length 2\\) overlaps run 1"),
        ("1 2 99999999999999999999999 1", "too large"),
    ],
)
def test_malformed_row_is_an_input_error_naming_source_and_run(encoded, reason):
    with pytest.raises(InputError, match=f"^labels.csv, line 7: .*{reason}"):
        rle_decode(encoded, (2, 3), source="labels.csv, line 7")


def test_bad_shape_is_a_value_error():
    with pytest.raises(ValueError, match="H, W >= 1"):
        rle_decode("1 1", (0, 3))


def test_encode_refuses_a_3d_mask():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        rle_encode(np.zeros((2, 2, 3), bool))


# --- several rows -> labels ---------------------------------------------------------


def test_rows_become_labels_in_order_and_the_later_row_wins():
    # Row 1 covers pixels 1..3 of a 2 x 2 image, row 2 covers 3..4: pixel 3 is contested.
    labels = rle_to_labels(["1 3", "3 2"], (2, 2))
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [[1, 2], [1, 2]])
    np.testing.assert_array_equal(rle_to_labels(["3 2", "1 3"], (2, 2)), [[2, 2], [2, 1]])


def test_empty_row_in_a_label_set_is_an_error():
    with pytest.raises(InputError, match="^x.csv, line 3: empty run-length encoding"):
        rle_to_labels(["1 1", ""], (2, 2), sources=["x.csv, line 2", "x.csv, line 3"])


# --- CSV ----------------------------------------------------------------------------


def _write(tmp_path, text: str, name: str = "rle.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_groups_rows_by_image_in_file_order(tmp_path):
    path = _write(tmp_path, "ImageId,EncodedPixels\nb,1 1\na,2 2\nb,4 1\n")
    table = read_rle_csv(path)
    assert list(table) == ["b", "a"]
    assert table["b"] == ("1 1", "4 1") and table["a"] == ("2 2",)
    assert table.lines["b"] == (2, 4)
    assert table.n_rows == 3 and len(table) == 2 and table.shapes == {}
    np.testing.assert_array_equal(table.labels("b", (2, 2)), [[1, 0], [0, 2]])


def test_csv_with_height_width_and_extra_columns(tmp_path):
    path = _write(tmp_path, "ImageId,EncodedPixels,Height,Width,Usage\na,1 2,2,3,Public\na,5 2,2,3,Public\n")
    table = read_rle_csv(path)
    assert table.shapes == {"a": (2, 3)}
    np.testing.assert_array_equal(table.labels("a"), [[1, 0, 2], [1, 0, 2]])


def test_csv_shape_that_differs_from_the_image_is_an_error(tmp_path):
    path = _write(tmp_path, "ImageId,EncodedPixels,Height,Width\na,1 2,2,3\n")
    with pytest.raises(InputError, match="line 2: Height x Width 2 x 3 of a differ from the image's 3 x 2"):
        read_rle_csv(path).labels("a", (3, 2))


def test_csv_decoding_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, "ImageId,EncodedPixels\na,1 1\na,1 2 3\n")
    with pytest.raises(InputError, match=r"rle.csv, line 3: run-length encoding has an odd number"):
        read_rle_csv(path).labels("a", (2, 2))


def test_csv_empty_cell_means_no_nuclei(tmp_path):
    # A Kaggle submission lists an image without nuclei with an empty EncodedPixels cell.
    table = read_rle_csv(_write(tmp_path, "ImageId,EncodedPixels\na,\nb,1 1\n"))
    assert table["a"] == () and table.n_rows == 1
    assert not table.labels("a", (2, 2)).any()


def test_csv_header_is_case_insensitive_and_may_have_a_bom(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffimageid,encodedpixels\na,1 1\n".encode())
    assert read_rle_csv(path)["a"] == ("1 1",)


def test_csv_missing_file(tmp_path):
    with pytest.raises(InputError, match="RLE file not found"):
        read_rle_csv(tmp_path / "nope.csv")


def test_csv_without_required_columns(tmp_path):
    with pytest.raises(InputError, match="no ImageId and EncodedPixels columns"):
        read_rle_csv(_write(tmp_path, "Id,Pixels\na,1 1\n"))


def test_csv_with_only_height(tmp_path):
    with pytest.raises(InputError, match="only one of the Height and Width"):
        read_rle_csv(_write(tmp_path, "ImageId,EncodedPixels,Height\na,1 1,2\n"))


def test_csv_ragged_row(tmp_path):
    with pytest.raises(InputError, match="line 3 has 3 fields, the header has 2"):
        read_rle_csv(_write(tmp_path, "ImageId,EncodedPixels\na,1 1\na,1 1,x\n"))


def test_csv_empty_image_id(tmp_path):
    with pytest.raises(InputError, match="line 2: empty ImageId"):
        read_rle_csv(_write(tmp_path, "ImageId,EncodedPixels\n,1 1\n"))


def test_csv_non_integer_height(tmp_path):
    with pytest.raises(InputError, match="line 2: Height/Width '2.5', '3' are not integers"):
        read_rle_csv(_write(tmp_path, "ImageId,EncodedPixels,Height,Width\na,1 1,2.5,3\n"))


def test_csv_inconsistent_height_within_an_image(tmp_path):
    with pytest.raises(InputError, match="line 3: Height x Width 4 x 3 of a differ from 2 x 3"):
        read_rle_csv(_write(tmp_path, "ImageId,EncodedPixels,Height,Width\na,1 1,2,3\na,2 1,4,3\n"))


def test_csv_empty_file(tmp_path):
    with pytest.raises(InputError, match="no header"):
        read_rle_csv(_write(tmp_path, ""))
