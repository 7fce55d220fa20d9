"""Tests for nucleikit.io.mat: MATLAB point arrays, 1-based -> 0-based, integer dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from nucleikit.errors import InputError
from nucleikit.io.mat import read_mat_points


def _mat(path, **variables):
    savemat(path, variables)
    return path


def test_one_based_coordinates_become_zero_based(tmp_path):
    path = _mat(tmp_path / "a.mat", detection=np.array([[1.0, 1.0], [500.0, 12.25]]))
    points = read_mat_points(path)
    assert points.dtype == np.float64
    np.testing.assert_array_equal(points, [[0.0, 0.0], [499.0, 11.25]])


def test_uint8_is_cast_before_subtracting(tmp_path):
    # uint8 arithmetic would wrap: 0 - 1 = 255. Cast first: 228 -> 227.0, 0 -> -1.0.
    path = _mat(tmp_path / "a.mat", detection=np.array([[228, 0], [1, 30]], dtype=np.uint8))
    np.testing.assert_array_equal(read_mat_points(path), [[227.0, -1.0], [0.0, 29.0]])


def test_uint16_is_cast_before_subtracting(tmp_path):
    path = _mat(tmp_path / "a.mat", detection=np.array([[500, 0]], dtype=np.uint16))
    np.testing.assert_array_equal(read_mat_points(path), [[499.0, -1.0]])


@pytest.mark.parametrize("shape", [(0, 2), (0, 0)])
def test_empty_array_gives_zero_by_two(tmp_path, shape):
    path = _mat(tmp_path / "a.mat", detection=np.zeros(shape, dtype=np.uint8))
    points = read_mat_points(path)
    assert points.shape == (0, 2)
    assert points.dtype == np.float64


def test_single_other_variable_is_found(tmp_path):
    path = _mat(tmp_path / "a.mat", centres=np.array([[3.0, 4.0]]), label=np.array([["abc"]]))
    np.testing.assert_array_equal(read_mat_points(path), [[2.0, 3.0]])


def test_named_variable_is_read(tmp_path):
    path = _mat(tmp_path / "a.mat", a=np.array([[3.0, 4.0]]), b=np.array([[5.0, 6.0]]))
    np.testing.assert_array_equal(read_mat_points(path, variable="b"), [[4.0, 5.0]])


def test_two_candidate_variables_are_ambiguous(tmp_path):
    path = _mat(tmp_path / "a.mat", a=np.array([[3.0, 4.0]]), b=np.array([[5.0, 6.0]]))
    with pytest.raises(InputError, match="several N x 2 variables"):
        read_mat_points(path)


def test_missing_named_variable(tmp_path):
    path = _mat(tmp_path / "a.mat", detection=np.array([[3.0, 4.0]]))
    with pytest.raises(InputError, match="no variable 'points' \\(found: detection\\)"):
        read_mat_points(path, variable="points")


def test_no_point_variable(tmp_path):
    path = _mat(tmp_path / "a.mat", image=np.zeros((4, 4)))
    with pytest.raises(InputError, match="no N x 2 numeric variable"):
        read_mat_points(path)


def test_wrong_shape(tmp_path):
    path = _mat(tmp_path / "a.mat", detection=np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"shape \(4, 3\), expected \(N, 2\)"):
        read_mat_points(path)


def test_text_variable(tmp_path):
    path = _mat(tmp_path / "a.mat", detection="not points")
    with pytest.raises(InputError, match="not a real numeric array"):
        read_mat_points(path)


def test_nan_coordinate(tmp_path):
    path = _mat(tmp_path / "a.mat", detection=np.array([[1.0, np.nan]]))
    with pytest.raises(InputError, match="NaN"):
        read_mat_points(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_mat_points(tmp_path / "missing.mat")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mat"
    path.touch()
    with pytest.raises(InputError, match=r"empty \(0 bytes\)"):
        read_mat_points(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.mat"
    path.write_bytes(np.random.default_rng(0).bytes(400))
    with pytest.raises(InputError, match="not a readable MATLAB .mat file"):
        read_mat_points(path)


def test_v73_hdf5_file_is_named(tmp_path):
    # A v7.3 header: 116 bytes of text, 8 of subsystem offset, version 0x0200, "IM".
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    path = tmp_path / "v73.mat"
    path.write_bytes(header + b"\x00" * 512)
    with pytest.raises(InputError, match="v7.3"):
        read_mat_points(path)
