"""CSV tables: one image's points or nuclei in memory, or a slide's streamed in chunks.

Header ``[id,]x,y[,column...]``; coordinates rounded to 2 decimals (4 in nucleus tables with
an ``id``), floating columns to 4, written in their shortest form so that
``pandas.read_csv`` gives back the rounded values. Points are 0-based pixel centres
(:mod:`nucleikit.export`).

Written with the standard library's :mod:`csv` (pandas is an optional extra), in the form
``pandas.DataFrame.to_csv(index=False)`` gives: floats as NumPy's shortest repr (``12.5``,
``3.0``, ``1e-05``), NaN as an empty field, booleans as ``True``/``False``, text quoted only
when it must be, ``\n`` line ends.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ._common import _as_column, _as_points
from ._stream import _PIECE, PointChunk, ShapeChunk, _check_columns, _chunks
from .files import atomic_write
from .registry import ImageOutput, SlideTable, Writer, register_writer

__all__ = ["write_points_csv", "write_table_csv", "write_points_csv_chunks"]


def write_points_csv(
    path: str | os.PathLike[str],
    points: Any,
    *,
    columns: Mapping[str, Any] | None = None,
    precision: int = 2,
    value_precision: int = 4,
) -> Path:
    """Write points (and per-point values) as CSV with header ``x,y[,column...]``.

    Parameters
    ----------
    path : str or PathLike
        Output file; written atomically, parent folders created.
    points : (N, 2) array_like
        (x, y) 0-based pixel-centre coordinates, full-resolution pixels.
    columns : mapping of str to (N,) array_like, or None
        Extra columns in the given order (e.g. ``score``, ``class``, ``class_prob``).
        Floating columns are rounded to ``value_precision`` decimals; others are written as is.
    precision : int
        Decimals of x and y.
    value_precision : int
        Decimals of floating-point extra columns.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Numbers are rounded, then written in their shortest form (``12.5``, ``3.0``), so a round
    trip through ``pandas.read_csv`` gives back the rounded values. N = 0 writes the header only.

    Examples
    --------
    A file written with ``write_points_csv(p, [[1.234, 5.0]], columns={"score": [0.91]})``
    reads ``x,y,score`` / ``1.23,5.0,0.91``.
    """
    p = _as_points(points)
    cols = dict(columns or {})
    for reserved in ("x", "y"):
        if reserved in cols:
            raise ValueError(f"column name {reserved!r} is reserved for the coordinates")
    # "+ 0.0" turns -0.0 (from rounding tiny negatives) into 0.0.
    data: dict[str, Any] = {"x": np.round(p[:, 0], precision) + 0.0, "y": np.round(p[:, 1], precision) + 0.0}
    data.update(_rounded_columns(cols, len(p), value_precision))
    with atomic_write(path, "w", newline="") as f:
        _write_rows(f, data, header=True)
    return Path(path)


def _column_text(values: np.ndarray) -> list[str]:
    """One column as the text of its fields (as ``DataFrame.to_csv`` writes them)."""
    v = np.asarray(values)
    if v.dtype.kind == "f":
        text = v.astype(str).astype(object)
        text[np.isnan(v)] = ""  # pandas' na_rep
        return text.tolist()
    if v.dtype.kind in "iub":
        return v.astype(str).tolist()
    return ["" if x is None or (isinstance(x, float) and x != x) else str(x) for x in v.tolist()]


def _write_rows(f, data: Mapping[str, np.ndarray], *, header: bool) -> None:
    """Equal-length columns as CSV rows (and their names first when ``header``)."""
    writer = csv.writer(f, lineterminator="\n")
    if header:
        writer.writerow(list(data))
    writer.writerows(zip(*(_column_text(v) for v in data.values())))


def _rounded_columns(cols: Mapping[str, Any], n: int, precision: int) -> dict[str, np.ndarray]:
    """Columns checked to length ``n``; floating ones rounded to ``precision`` decimals."""
    out: dict[str, np.ndarray] = {}
    for name, values in cols.items():
        v = _as_column(values, name, n)
        if np.issubdtype(v.dtype, np.floating):
            # float64 first: a float32 0.91 would otherwise print as 0.9100000262260437;
            # "+ 0.0" turns -0.0 into 0.0.
            v = np.round(v.astype(np.float64), precision) + 0.0
        out[str(name)] = v
    return out


def write_table_csv(
    path: str | os.PathLike[str], columns: Mapping[str, Any], *, value_precision: int = 4
) -> Path:
    """Write equal-length columns as CSV, header = the column names in the given order.

    For tables that do not start with (x, y), e.g. ``id,x,y,area,mean_intensity`` of
    segmented nuclei. Floating columns are rounded to ``value_precision`` decimals
    (written in their shortest form, as :func:`write_points_csv`); others as is. Written
    atomically; no rows writes the header only.
    """
    cols = dict(columns)
    if not cols:
        raise ValueError("give at least one column")
    n = len(np.asarray(next(iter(cols.values()))))
    data = _rounded_columns(cols, n, value_precision)
    with atomic_write(path, "w", newline="") as f:
        _write_rows(f, data, header=True)
    return Path(path)


def write_points_csv_chunks(
    path: str | PathLike[str],
    chunks: Iterable[PointChunk | ShapeChunk],
    *,
    columns: Mapping[str, Any],
    precision: int = 2,
    value_precision: int = 4,
    ids: bool = False,
) -> Path:
    """Stream points to a CSV file with header ``[id,]x,y[,column...]``.

    Parameters
    ----------
    path : str or PathLike
        Output file; written atomically, parent folders created.
    chunks : iterable of (xy, columns) or (xy, columns, geometry)
        ``xy`` (n, 2) (x, y); ``columns`` maps each declared name to an (n,) array; a
        geometry item is ignored (CSV holds no outlines).
    columns : mapping of str to dtype
        Extra columns in output order, e.g. ``{"score": "float32"}``.
    precision, value_precision : int
        Decimals of x, y and of floating columns (as :func:`nucleikit.export.write_points_csv`).
    ids : bool
        Start each row with its id, 1, 2, ... in row order (the SQLite writer's ids).

    Returns
    -------
    Path
        ``path``.
    """
    cols = _check_columns(columns)
    next_id = 1
    with atomic_write(path, "w", newline="") as f:
        f.write(",".join(["id"] * ids + ["x", "y", *cols]) + "\n")
        for p, values, _ in _chunks(chunks, cols, _PIECE):
            if not len(p):
                continue
            data = {"id": np.arange(next_id, next_id + len(p), dtype=np.int64)} if ids else {}
            next_id += len(p)
            # "+ 0.0" turns -0.0 into 0.0; float64 first so float32 0.91 does not print as 0.9100000262.
            data |= {"x": np.round(p[:, 0], precision) + 0.0, "y": np.round(p[:, 1], precision) + 0.0}
            for name, v in values.items():
                data[name] = np.round(v.astype(np.float64), value_precision) + 0.0 if v.dtype.kind == "f" else v
            _write_rows(f, data, header=False)
    return Path(path)


# --------------------------------------------------------------------------- registry


def _image_csv(path: Path, output: ImageOutput) -> Path:
    n = output.nuclei
    if n.ids is not None:  # a nucleus table: id first, every number at value precision
        return write_table_csv(path, {"id": n.ids, "x": n.xy[:, 0], "y": n.xy[:, 1], **n.columns})
    return write_points_csv(path, n.xy, columns=n.columns)


def _slide_csv(path: Path, table: SlideTable) -> Path:
    chunks = ((c.xy, c.columns) for c in table.chunks())
    return write_points_csv_chunks(path, chunks, columns=table.schema, ids=table.ids)


register_writer(Writer("csv", ".csv", write_image=_image_csv, write_slide=_slide_csv))
