"""Point tables that scale to whole slides: streamed CSV, Parquet and a SQLite store queryable by region.

:mod:`nucleikit.export` writes one image's points from arrays held in memory. A slide can
hold millions of nuclei, so the writers here take the points as an **iterable of chunks**
and never hold more than one chunk: ``(xy, columns)`` with ``xy`` an (n, 2) float64 array of
(x, y) and ``columns`` a mapping of column name to an (n,) array (e.g. ``{"score": ...}``).
The extra columns and their dtypes are declared once (``columns={"score": "float32"}``), so
a table with no rows still has its full schema.

Coordinates are whatever the caller passes; nucleikit passes level-0 pixel centres,
0-based, x to the right, y down (see :mod:`nucleikit.export`).

Files are written under a temporary name and renamed when complete
(:func:`nucleikit.export.atomic_path`): an interrupted write leaves nothing under the
final name.

Formats
-------
- **CSV** (:func:`write_points_csv_chunks`): header ``x,y[,column...]``, coordinates
  rounded to 2 decimals and floating columns to 4, the format of
  :func:`nucleikit.export.write_points_csv`.
- **Parquet** (:func:`write_points_parquet`): columns ``x``, ``y`` (float64) and the
  declared ones, one row group per chunk, full precision. Read it with
  ``pandas.read_parquet`` or ``pyarrow.parquet``; ``filters=[("x", ">=", 1000), ...]``
  skips row groups by their statistics.
- **SQLite** (:func:`write_points_sqlite`): table ``nuclei(id INTEGER PRIMARY KEY, x REAL,
  y REAL, <column> ...)`` and a spatial index, an R*Tree virtual table ``nuclei_rtree(id,
  min_x, max_x, min_y, max_y)`` when SQLite has the R*Tree module (it does in every
  CPython build we know), else a B-tree index on ``(x, y)``. A region query::

      SELECT n.x, n.y, n.score
      FROM nuclei AS n JOIN nuclei_rtree AS r ON r.id = n.id
      WHERE r.max_x >= :x0 AND r.min_x <= :x1 AND r.max_y >= :y0 AND r.min_y <= :y1
        AND n.x >= :x0 AND n.x < :x1 AND n.y >= :y0 AND n.y < :y1;

  The R*Tree stores 32-bit float bounds rounded outwards, so it narrows the search and the
  last line decides exactly. :func:`query_region` runs that query (or the B-tree one) and
  returns arrays.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .export import atomic_path, atomic_write
from .windows import Window

__all__ = [
    "PointChunk",
    "write_points_csv_chunks",
    "write_points_parquet",
    "write_points_sqlite",
    "query_region",
    "has_rtree",
]

#: One chunk of points: (x, y) float64 of shape (n, 2) and named (n,) columns.
PointChunk = tuple[np.ndarray, Mapping[str, np.ndarray]]

_RESERVED = ("id", "x", "y")


def _check_columns(columns: Mapping[str, Any]) -> dict[str, np.dtype]:
    out = {}
    for name, dtype in columns.items():
        if name in _RESERVED:
            raise ValueError(f"column name {name!r} is reserved")
        if not str(name).isidentifier():
            raise ValueError(f"column name {name!r} must be an identifier (letters, digits, _)")
        dt = np.dtype(dtype)
        if dt.kind not in "biuf":
            raise ValueError(f"column {name!r} must be numeric, got dtype {dt}")
        out[str(name)] = dt
    return out


# Rows formatted or inserted at a time: text and Python objects cost ~100 bytes per value,
# so a writer holds a few MB whatever the size of the chunks it is given.
_PIECE = 4096


def _chunks(
    chunks: Iterable[PointChunk], columns: dict[str, np.dtype], piece: int | None = None
) -> Iterable[tuple[np.ndarray, dict]]:
    """Validate each chunk: (n, 2) finite float64 points and (n,) columns of the declared dtype.

    With ``piece``, chunks are cut into pieces of at most that many rows.
    """
    for p, cols in _validated(chunks, columns):
        if piece is None or len(p) <= piece:
            yield p, cols
            continue
        for start in range(0, len(p), piece):
            stop = start + piece
            yield p[start:stop], {name: v[start:stop] for name, v in cols.items()}


def _validated(chunks: Iterable[PointChunk], columns: dict[str, np.dtype]) -> Iterable[tuple[np.ndarray, dict]]:
    for xy, values in chunks:
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(p).all():
            raise ValueError("points contain NaN or infinite coordinates")
        cols = {}
        for name, dt in columns.items():
            v = np.asarray(values[name])
            if v.shape != (len(p),):
                raise ValueError(f"column {name!r} must have shape ({len(p)},), got {v.shape}")
            cols[name] = v.astype(dt, copy=False)
        yield p, cols


def write_points_csv_chunks(
    path: str | PathLike[str],
    chunks: Iterable[PointChunk],
    *,
    columns: Mapping[str, Any],
    precision: int = 2,
    value_precision: int = 4,
) -> Path:
    """Stream points to a CSV file with header ``x,y[,column...]``.

    Parameters
    ----------
    path : str or PathLike
        Output file; written atomically, parent folders created.
    chunks : iterable of (xy, columns)
        ``xy`` (n, 2) (x, y); ``columns`` maps each declared name to an (n,) array.
    columns : mapping of str to dtype
        Extra columns in output order, e.g. ``{"score": "float32"}``.
    precision, value_precision : int
        Decimals of x, y and of floating columns (as :func:`nucleikit.export.write_points_csv`).

    Returns
    -------
    Path
        ``path``.
    """
    import pandas as pd

    cols = _check_columns(columns)
    with atomic_write(path, "w", newline="") as f:
        f.write(",".join(["x", "y", *cols]) + "\n")
        for p, values in _chunks(chunks, cols, _PIECE):
            if not len(p):
                continue
            # "+ 0.0" turns -0.0 into 0.0; float64 first so float32 0.91 does not print as 0.9100000262.
            data = {"x": np.round(p[:, 0], precision) + 0.0, "y": np.round(p[:, 1], precision) + 0.0}
            for name, v in values.items():
                data[name] = np.round(v.astype(np.float64), value_precision) + 0.0 if v.dtype.kind == "f" else v
            pd.DataFrame(data).to_csv(f, index=False, header=False, lineterminator="\n")
    return Path(path)


def write_points_parquet(
    path: str | PathLike[str], chunks: Iterable[PointChunk], *, columns: Mapping[str, Any]
) -> Path:
    """Stream points to a Parquet file, one row group per non-empty chunk.

    Parameters
    ----------
    path : str or PathLike
        Output file (``.parquet``); written atomically.
    chunks : iterable of (xy, columns)
        See :func:`write_points_csv_chunks`.
    columns : mapping of str to dtype
        Extra columns and their types; x and y are float64.

    Returns
    -------
    Path
        ``path``. A file with no rows still has the schema.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _check_columns(columns)
    schema = pa.schema(
        [("x", pa.float64()), ("y", pa.float64())] + [(n, pa.from_numpy_dtype(dt)) for n, dt in cols.items()]
    )
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for p, values in _chunks(chunks, cols):
                if len(p):
                    arrays = [pa.array(p[:, 0]), pa.array(p[:, 1])] + [pa.array(values[n]) for n in cols]
                    writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    return Path(path)


def has_rtree() -> bool:
    """Whether this Python's SQLite has the R*Tree module."""
    with contextlib.closing(sqlite3.connect(":memory:")) as con:
        try:
            con.execute("CREATE VIRTUAL TABLE t USING rtree(id, a, b)")
        except sqlite3.OperationalError:
            return False
    return True


_SQL_TYPES = {"f": "REAL", "i": "INTEGER", "u": "INTEGER", "b": "INTEGER"}


def write_points_sqlite(
    path: str | PathLike[str],
    chunks: Iterable[PointChunk],
    *,
    columns: Mapping[str, Any],
    table: str = "nuclei",
    rtree: bool | None = None,
) -> Path:
    """Stream points into a SQLite database with a spatial index (see the module docstring).

    Parameters
    ----------
    path : str or PathLike
        Output file (``.sqlite``); written atomically (an existing file is replaced).
    chunks : iterable of (xy, columns)
        See :func:`write_points_csv_chunks`.
    columns : mapping of str to dtype
        Extra columns; floats become ``REAL``, integers ``INTEGER``.
    table : str
        Table name; the R*Tree is ``<table>_rtree``, the fallback index ``<table>_xy``.
    rtree : bool or None
        Build an R*Tree (True), a B-tree index on (x, y) (False), or the R*Tree when
        available (None).

    Returns
    -------
    Path
        ``path``. Row ids are 1, 2, ... in the order the points came.
    """
    cols = _check_columns(columns)
    if not table.isidentifier():
        raise ValueError(f"table name {table!r} must be an identifier")
    use_rtree = has_rtree() if rtree is None else bool(rtree)
    definition = ", ".join(["id INTEGER PRIMARY KEY", "x REAL NOT NULL", "y REAL NOT NULL"]
                           + [f"{n} {_SQL_TYPES[dt.kind]}" for n, dt in cols.items()])
    names = ["id", "x", "y", *cols]
    insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            # The file is renamed into place only when complete, so no journal is needed.
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            con.execute(f"CREATE TABLE {table} ({definition})")
            if use_rtree:
                con.execute(f"CREATE VIRTUAL TABLE {table}_rtree USING rtree(id, min_x, max_x, min_y, max_y)")
            next_id = 1
            for p, values in _chunks(chunks, cols, _PIECE):
                n = len(p)
                if not n:
                    continue
                ids = np.arange(next_id, next_id + n, dtype=np.int64)
                next_id += n
                rows = zip(ids.tolist(), p[:, 0].tolist(), p[:, 1].tolist(), *(values[c].tolist() for c in cols))
                con.executemany(insert, rows)
                if use_rtree:
                    boxes = zip(ids.tolist(), p[:, 0].tolist(), p[:, 0].tolist(), p[:, 1].tolist(), p[:, 1].tolist())
                    con.executemany(f"INSERT INTO {table}_rtree VALUES (?, ?, ?, ?, ?)", boxes)
            if not use_rtree:
                con.execute(f"CREATE INDEX {table}_xy ON {table} (x, y)")
            con.commit()
        finally:
            con.close()
    return Path(path)


def query_region(
    path: str | PathLike[str], window: Window, *, table: str = "nuclei"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points of a store written by :func:`write_points_sqlite` inside a window.

    Parameters
    ----------
    path : str or PathLike
        The ``.sqlite`` file.
    window : Window
        ``[y0, y1) x [x0, x1)`` in the points' coordinates; a point is inside when
        ``x0 <= x < x1`` and ``y0 <= y < y1``.
    table : str
        Table name.

    Returns
    -------
    xy : (n, 2) float64 ndarray
        (x, y) of the points inside, in id order.
    columns : dict of str to (n,) ndarray
        The table's other columns (without ``id``), float64 or int64.
    """
    if not table.isidentifier():
        raise ValueError(f"table name {table!r} must be an identifier")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
        info = con.execute(f"PRAGMA table_info({table})").fetchall()
        extra = [row[1] for row in info if row[1] not in _RESERVED]
        indexed = con.execute(
            "SELECT 1 FROM sqlite_master WHERE name = ?", (f"{table}_rtree",)
        ).fetchone() is not None
        select = ", ".join(f"n.{c}" for c in ["x", "y", *extra])
        exact = "n.x >= :x0 AND n.x < :x1 AND n.y >= :y0 AND n.y < :y1"
        if indexed:
            sql = (f"SELECT {select} FROM {table} AS n JOIN {table}_rtree AS r ON r.id = n.id "
                   f"WHERE r.max_x >= :x0 AND r.min_x <= :x1 AND r.max_y >= :y0 AND r.min_y <= :y1 "
                   f"AND {exact} ORDER BY n.id")
        else:
            sql = f"SELECT {select} FROM {table} AS n WHERE {exact} ORDER BY n.id"
        bounds = {"x0": window.x0, "x1": window.x1, "y0": window.y0, "y1": window.y1}
        rows = con.execute(sql, bounds).fetchall()
    data = np.array(rows, dtype=np.float64).reshape(-1, 2 + len(extra))
    xy = data[:, :2].copy()
    types = {row[1]: row[2].upper() for row in info}
    columns = {
        c: data[:, 2 + k].astype(np.int64) if types.get(c) == "INTEGER" else data[:, 2 + k]
        for k, c in enumerate(extra)
    }
    return xy, columns
