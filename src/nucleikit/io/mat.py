"""Read point annotations from MATLAB v5 ``.mat`` files.

MATLAB stores pixel coordinates 1-based: the centre of the top-left pixel is
(1, 1). :func:`read_mat_points` returns nucleikit's 0-based pixel centres,
(x, y) with x to the right and y down, by subtracting 1 from both.

Integer-typed point arrays exist in the wild (CRCHistoPhenotypes has uint8 and
uint16 files), and integer arithmetic wraps around (uint8 0 - 1 is 255), so the
values are cast to float64 *before* anything is subtracted.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from nucleikit.errors import InputError, missing_reason

__all__ = ["DEFAULT_VARIABLE", "read_mat_points"]

#: Variable read when the file holds it and no other name is given (CRCHisto).
DEFAULT_VARIABLE = "detection"


def read_mat_points(path: str | Path, *, variable: str | None = None) -> np.ndarray:
    """Read an N x 2 point array from a MATLAB v5 ``.mat`` file as 0-based (x, y).

    Parameters
    ----------
    path : str or Path
        A MATLAB v4/v5/v7 MAT-file (not v7.3/HDF5).
    variable : str, optional
        Name of the variable to read. By default ``"detection"`` when present,
        else the file's single numeric variable of shape (N, 2) (or empty).

    Returns
    -------
    (N, 2) ndarray of float64
        Column 0 is x (column index), column 1 is y (row index), 0-based pixel
        centres: the stored values minus 1. An empty variable (any shape with
        no elements, e.g. MATLAB's 0 x 2 ``uint8``) gives shape (0, 2).

    Raises
    ------
    InputError
        Missing, empty or unreadable file, v7.3 file, no suitable variable or
        several candidates, a variable that is not a real N x 2 numeric array,
        or a NaN/inf coordinate.
    """
    path = Path(path)
    contents = _load(path)
    names = [name for name in contents if not name.startswith("__")]
    name = _choose_variable(path, contents, names, variable)
    value = contents[name]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        kind = type(value).__name__ if not isinstance(value, np.ndarray) else value.dtype.name
        raise InputError(path, f"variable {name!r} is not a real numeric array ({kind})")
    # Cast first: uint8/uint16 arithmetic would wrap around below zero.
    points = np.asarray(value, dtype=np.float64)
    if points.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise InputError(path, f"variable {name!r} has shape {points.shape}, expected (N, 2) points")
    if not np.all(np.isfinite(points)):
        raise InputError(path, f"variable {name!r} contains NaN or infinite coordinates")
    return points - 1.0


def _load(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.exists():
        raise InputError(path, missing_reason(path))
    if path.is_dir():
        raise InputError(path, "is a directory, not a .mat file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    try:
        return loadmat(path)
    except NotImplementedError as exc:  # scipy's answer to v7.3 (HDF5) files
        raise InputError(path, "MATLAB v7.3 (HDF5) files are not supported; save with -v7") from exc
    except (ValueError, TypeError, OSError, EOFError, IndexError, KeyError, zlib.error) as exc:
        raise InputError(path, f"not a readable MATLAB .mat file ({exc})") from exc


def _choose_variable(path: Path, contents: dict, names: list[str], variable: str | None) -> str:
    if variable is not None:
        if variable not in contents:
            raise InputError(path, f"no variable {variable!r} (found: {', '.join(names) or 'none'})")
        return variable
    if DEFAULT_VARIABLE in contents:
        return DEFAULT_VARIABLE
    candidates = [name for name in names if _looks_like_points(contents[name])]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(path, f"no N x 2 numeric variable (found: {', '.join(names) or 'none'})")
    raise InputError(path, f"several N x 2 variables ({', '.join(candidates)}); name the one to read")


def _looks_like_points(value) -> bool:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        return False
    return value.size == 0 or (value.ndim == 2 and value.shape[1] == 2)
