"""Points tables napari opens as a points layer: ``index,axis-0,axis-1[,column...]``.

napari's built-in reader makes a **points layer** of any CSV whose header has ``axis-0`` and
``axis-1`` (the form napari's own "save points layer" writes): ``axis-0`` is the row (y),
``axis-1`` the column (x), pixel centres at integer coordinates, which is nucleikit's
convention, so the values are nucleikit's (x, y) swapped, not shifted. The other columns
(``score``, ``class``, ...) become the layer's features; a first column ``index`` is skipped.

nucleikit's own tables (``<stem>.csv``: ``x,y,score``) stay as they are, for QuPath, pandas
and ``evaluate``; this format is opt-in:

- :func:`napari_csv` converts a table already written (``nucleikit detect`` → ``<stem>.csv``
  → ``<stem>_napari.csv``);
- the ``napari`` writer of the registry writes ``<stem><tag>_napari.csv`` beside the others
  when asked for by name (slides: ``--formats csv,napari``).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.csv").write_text("x,y,score\\n10.5,3.0,0.9\\n")
>>> print(napari_csv(d / "a.csv").read_text(), end="")
index,axis-0,axis-1,score
0,3.0,10.5,0.9
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ._common import _as_points
from ._stream import _PIECE, PointChunk, ShapeChunk, _check_columns, _chunks
from .csv import _rounded_columns, _write_rows
from .files import atomic_write
from .registry import ImageOutput, SlideTable, Writer, register_writer

__all__ = ["NAPARI_SUFFIX", "napari_csv", "write_napari_points", "write_napari_points_chunks"]

#: What :func:`napari_csv` and the ``napari`` writer add to a table's stem.
NAPARI_SUFFIX = "_napari.csv"


def _napari_columns(xy: np.ndarray, columns: Mapping[str, np.ndarray], start: int,
                    precision: int) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = {"index": np.arange(start, start + len(xy), dtype=np.int64)}
    data["axis-0"] = np.round(xy[:, 1], precision) + 0.0  # row = y
    data["axis-1"] = np.round(xy[:, 0], precision) + 0.0  # column = x
    data.update(columns)
    return data


def write_napari_points(
    path: str | PathLike[str],
    points: Any,
    *,
    columns: Mapping[str, Any] | None = None,
    precision: int = 2,
    value_precision: int = 4,
) -> Path:
    """Write (x, y) points as a napari points CSV, ``index,axis-0,axis-1[,column...]``.

    Parameters
    ----------
    path : str or PathLike
        Output file; written atomically.
    points : (N, 2) array_like
        (x, y) 0-based pixel centres; written as ``axis-0`` = y (row), ``axis-1`` = x (column).
    columns : mapping of str to (N,) array_like, or None
        Extra columns (napari features), e.g. ``score``, ``class``.
    precision, value_precision : int
        Decimals of the coordinates and of floating columns (as nucleikit's CSV).
    """
    p = _as_points(points)
    cols = dict(columns or {})
    for reserved in ("index", "axis-0", "axis-1"):
        if reserved in cols:
            raise ValueError(f"column name {reserved!r} is reserved for the coordinates")
    data = _napari_columns(p, _rounded_columns(cols, len(p), value_precision), 0, precision)
    with atomic_write(path, "w", newline="") as f:
        _write_rows(f, data, header=True)
    return Path(path)


def write_napari_points_chunks(
    path: str | PathLike[str],
    chunks: Iterable[PointChunk | ShapeChunk],
    *,
    columns: Mapping[str, Any],
    precision: int = 2,
    value_precision: int = 4,
) -> Path:
    """Stream a slide's points to a napari points CSV (level-0 pixels); see :func:`write_napari_points`."""
    cols = _check_columns(columns)
    start = 0
    with atomic_write(path, "w", newline="") as f:
        f.write(",".join(["index", "axis-0", "axis-1", *cols]) + "\n")
        for p, values, _ in _chunks(chunks, cols, _PIECE):
            if not len(p):
                continue
            rounded = {n: np.round(v.astype(np.float64), value_precision) + 0.0 if v.dtype.kind == "f" else v
                       for n, v in values.items()}
            _write_rows(f, _napari_columns(p, rounded, start, precision), header=False)
            start += len(p)
    return Path(path)


def napari_csv(table: str | PathLike[str], out: str | PathLike[str] | None = None) -> Path:
    """Convert a nucleikit table with ``x`` and ``y`` columns into a napari points CSV.

    Parameters
    ----------
    table : str or PathLike
        A CSV nucleikit wrote (``<stem>.csv``, ``<stem>_typed.csv``, ``<stem>_outlines.csv``...).
    out : str or PathLike or None
        Output file; default: beside ``table``, ``<table stem>_napari.csv``.

    Returns
    -------
    Path
        The file written. Values are copied as text (no rounding); every column other than
        x and y follows ``index,axis-0,axis-1`` in its order.

    Raises
    ------
    InputError
        ``table`` cannot be read or has no ``x`` and ``y`` columns.
    """
    table = Path(table)
    out = Path(out) if out is not None else table.with_name(table.stem + NAPARI_SUFFIX)
    try:
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(table, f"cannot be read as CSV ({exc.__class__.__name__})") from None
    header = rows[0] if rows else []
    if "x" not in header or "y" not in header:
        raise InputError(table, "has no x and y columns (not a nucleikit points table)")
    ix, iy = header.index("x"), header.index("y")
    rest = [i for i, name in enumerate(header) if i not in (ix, iy)]
    with atomic_write(out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["index", "axis-0", "axis-1", *(header[i] for i in rest)])
        for k, row in enumerate(rows[1:]):
            if len(row) != len(header):
                raise InputError(table, f"row {k + 2} has {len(row)} fields, the header {len(header)}")
            writer.writerow([k, row[iy], row[ix], *(row[i] for i in rest)])
    return out


# --------------------------------------------------------------------------- registry


def _image_napari(path: Path, output: ImageOutput) -> Path:
    n = output.nuclei
    columns = dict(n.columns)
    if n.ids is not None:
        columns = {"id": n.ids, **columns}
    return write_napari_points(path, n.xy, columns=columns)


def _slide_napari(path: Path, table: SlideTable) -> Path:
    return write_napari_points_chunks(path, ((c.xy, c.columns) for c in table.chunks()), columns=table.schema)


# Opt-in (``default=False``): asked for by name, never part of the slides' default formats.
register_writer(Writer("napari", NAPARI_SUFFIX, write_image=_image_napari, write_slide=_slide_napari,
                       default=False))
