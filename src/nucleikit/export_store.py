"""Point tables that scale to whole slides: streamed CSV, Parquet and a SQLite store queryable by region.

:mod:`nucleikit.export` writes one image's points from arrays held in memory. A slide can
hold millions of nuclei, so the writers here take the points as an **iterable of chunks**
and never hold more than one chunk: ``(xy, columns)`` with ``xy`` an (n, 2) float64 array of
(x, y) and ``columns`` a mapping of column name to an (n,) array (e.g. ``{"score": ...}``).
The extra columns and their dtypes are declared once (``columns={"score": "float32"}``), so
a table with no rows still has its full schema.

Coordinates are whatever the caller passes; nucleikit passes level-0 pixel centres,
0-based, x to the right, y down (see :mod:`nucleikit.export`).

**Outlines.** A chunk may carry a third item, ``geometry``: an (n,) array of shapely
geometries (nucleus outlines, :func:`polygons_from_rings`), one per point, in the same
coordinates. Writers given ``geometry=True`` store it as WKB (ISO well-known binary, what
``shapely.from_wkb``, GDAL and PostGIS read); ``xy`` is then the nucleus centroid. With
``ids=True`` the CSV and Parquet writers add an ``id`` column 1, 2, ... in row order, the
same ids the SQLite writer gives, so one nucleus has one id in every file.

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
  skips row groups by their statistics. With outlines, a ``geometry`` column of WKB and
  GeoParquet metadata (``geo``: WKB encoding, no CRS, since pixels are not a map
  projection), so ``geopandas.read_parquet`` reads it as a GeoDataFrame.
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

  With outlines the table has a ``geometry BLOB`` column (WKB) and the R*Tree holds each
  outline's bounding box (grown to include the centroid, so the point query above stays
  exact); the nuclei whose outline may meet a region are then::

      SELECT n.id, n.x, n.y, n.geometry
      FROM nuclei AS n JOIN nuclei_rtree AS r ON r.id = n.id
      WHERE r.max_x >= :x0 AND r.min_x <= :x1 AND r.max_y >= :y0 AND r.min_y <= :y1;

  and :func:`query_polygons` runs it and keeps the outlines that really intersect.
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
    "ShapeChunk",
    "polygons_from_rings",
    "write_points_csv_chunks",
    "write_points_parquet",
    "write_points_sqlite",
    "query_region",
    "query_polygons",
    "has_rtree",
]

#: One chunk of points: (x, y) float64 of shape (n, 2) and named (n,) columns.
PointChunk = tuple[np.ndarray, Mapping[str, np.ndarray]]
#: One chunk of outlined objects: a :data:`PointChunk` and an (n,) array of shapely geometries.
ShapeChunk = tuple[np.ndarray, Mapping[str, np.ndarray], np.ndarray]

_RESERVED = ("id", "x", "y", "geometry")


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
    chunks: Iterable[PointChunk | ShapeChunk], columns: dict[str, np.dtype], piece: int | None = None,
    *, geometry: bool = False,
) -> Iterable[tuple[np.ndarray, dict, np.ndarray | None]]:
    """Validate each chunk: (n, 2) finite float64 points and (n,) columns of the declared dtype.

    Yields ``(xy, columns, geometry)``; ``geometry`` is the chunk's (n,) geometries when
    ``geometry`` is True, else None. With ``piece``, chunks are cut into pieces of at most
    that many rows.
    """
    for p, cols, geoms in _validated(chunks, columns, geometry):
        if piece is None or len(p) <= piece:
            yield p, cols, geoms
            continue
        for start in range(0, len(p), piece):
            stop = start + piece
            part = geoms[start:stop] if geoms is not None else None
            yield p[start:stop], {name: v[start:stop] for name, v in cols.items()}, part


def _validated(
    chunks: Iterable[PointChunk | ShapeChunk], columns: dict[str, np.dtype], geometry: bool
) -> Iterable[tuple[np.ndarray, dict, np.ndarray | None]]:
    for chunk in chunks:
        xy, values = chunk[0], chunk[1]
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(p).all():
            raise ValueError("points contain NaN or infinite coordinates")
        cols = {}
        for name, dt in columns.items():
            v = np.asarray(values[name])
            if v.shape != (len(p),):
                raise ValueError(f"column {name!r} must have shape ({len(p)},), got {v.shape}")
            cols[name] = v.astype(dt, copy=False)
        geoms = None
        if geometry:
            if len(chunk) < 3:
                raise ValueError("geometry=True needs (xy, columns, geometry) chunks")
            geoms = np.asarray(chunk[2], dtype=object).reshape(-1)
            if len(geoms) != len(p):
                raise ValueError(f"{len(geoms)} geometries for {len(p)} points; they must describe the same objects")
        yield p, cols, geoms


def polygons_from_rings(vertices: Any, offsets: Any) -> np.ndarray:
    """Shapely polygons from rings stored back to back.

    Parameters
    ----------
    vertices : (V, 2) array_like of float
        (x, y) vertices of every ring, ring after ring; a ring need not repeat its first
        vertex (it is closed here).
    offsets : (n + 1,) array_like of int
        Ring ``k`` is ``vertices[offsets[k]:offsets[k + 1]]``; each has at least 3 vertices.

    Returns
    -------
    (n,) object ndarray of shapely.Polygon
        Built in one vectorised call (no Python loop over the rings).
    """
    import shapely

    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    o = np.asarray(offsets, dtype=np.int64).reshape(-1)
    n = len(o) - 1
    if n <= 0:
        return np.empty(0, dtype=object)
    sizes = np.diff(o)
    if o[0] != 0 or o[-1] != len(v) or (sizes < 3).any():
        raise ValueError("offsets must run from 0 to len(vertices) with at least 3 vertices per ring")
    ring_of_vertex = np.repeat(np.arange(n), sizes)
    rings = shapely.linearrings(v, indices=ring_of_vertex)
    return np.asarray(shapely.polygons(rings), dtype=object)


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
    import pandas as pd

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
            pd.DataFrame(data).to_csv(f, index=False, header=False, lineterminator="\n")
    return Path(path)


def write_points_parquet(
    path: str | PathLike[str],
    chunks: Iterable[PointChunk | ShapeChunk],
    *,
    columns: Mapping[str, Any],
    ids: bool = False,
    geometry: bool = False,
) -> Path:
    """Stream points to a Parquet file, one row group per non-empty chunk.

    Parameters
    ----------
    path : str or PathLike
        Output file (``.parquet``); written atomically.
    chunks : iterable of (xy, columns) or (xy, columns, geometry)
        See :func:`write_points_csv_chunks`; ``geometry`` is needed with ``geometry=True``.
    columns : mapping of str to dtype
        Extra columns and their types; x and y are float64.
    ids : bool
        First column ``id`` (int64), 1, 2, ... in row order.
    geometry : bool
        Last column ``geometry``: each object's outline as WKB (binary), and GeoParquet
        metadata naming it the primary geometry column (no CRS: pixel coordinates).

    Returns
    -------
    Path
        ``path``. A file with no rows still has the schema.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _check_columns(columns)
    fields = [("id", pa.int64())] * ids + [("x", pa.float64()), ("y", pa.float64())]
    fields += [(n, pa.from_numpy_dtype(dt)) for n, dt in cols.items()]
    fields += [("geometry", pa.binary())] * geometry
    schema = pa.schema(fields)
    if geometry:
        schema = schema.with_metadata({b"geo": _geoparquet_metadata()})
    next_id = 1
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for p, values, geoms in _chunks(chunks, cols, geometry=geometry):
                if not len(p):
                    continue
                arrays = [pa.array(np.arange(next_id, next_id + len(p), dtype=np.int64))] * ids
                next_id += len(p)
                arrays += [pa.array(p[:, 0]), pa.array(p[:, 1])] + [pa.array(values[n]) for n in cols]
                if geometry:
                    arrays.append(pa.array(_wkb(geoms), type=pa.binary()))
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    return Path(path)


def _geoparquet_metadata() -> bytes:
    """GeoParquet 1.1 file metadata for one WKB polygon column in pixel coordinates."""
    import json

    column = {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": None}  # crs null: not on Earth
    return json.dumps({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}).encode()


def _wkb(geoms: np.ndarray) -> list[bytes]:
    """(n,) shapely geometries → n WKB byte strings (little-endian ISO WKB, 2-D)."""
    import shapely

    return list(shapely.to_wkb(geoms, output_dimension=2, byte_order=1, flavor="iso"))


def _bounds(p: np.ndarray, geoms: np.ndarray | None) -> np.ndarray:
    """(n, 4) R*Tree boxes (min_x, max_x, min_y, max_y): the points, or the outlines' boxes grown to hold them."""
    if geoms is None:
        return np.column_stack([p[:, 0], p[:, 0], p[:, 1], p[:, 1]])
    import shapely

    b = shapely.bounds(geoms)  # (n, 4) min_x, min_y, max_x, max_y; NaN for an empty geometry
    # fmin/fmax: an outline that does not hold its centroid (a nucleus in pieces) still
    # gets a box that does, so the point query stays exact.
    return np.column_stack([np.fmin(b[:, 0], p[:, 0]), np.fmax(b[:, 2], p[:, 0]),
                            np.fmin(b[:, 1], p[:, 1]), np.fmax(b[:, 3], p[:, 1])])


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
    chunks: Iterable[PointChunk | ShapeChunk],
    *,
    columns: Mapping[str, Any],
    table: str = "nuclei",
    rtree: bool | None = None,
    geometry: bool = False,
) -> Path:
    """Stream points into a SQLite database with a spatial index (see the module docstring).

    Parameters
    ----------
    path : str or PathLike
        Output file (``.sqlite``); written atomically (an existing file is replaced).
    chunks : iterable of (xy, columns) or (xy, columns, geometry)
        See :func:`write_points_csv_chunks`; ``geometry`` is needed with ``geometry=True``.
    columns : mapping of str to dtype
        Extra columns; floats become ``REAL``, integers ``INTEGER``.
    table : str
        Table name; the R*Tree is ``<table>_rtree``, the fallback index ``<table>_xy``.
    rtree : bool or None
        Build an R*Tree (True), a B-tree index on (x, y) (False), or the R*Tree when
        available (None).
    geometry : bool
        Add a last column ``geometry BLOB``: each outline as WKB; the R*Tree then indexes
        the outlines' bounding boxes (grown to include the point).

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
                           + [f"{n} {_SQL_TYPES[dt.kind]}" for n, dt in cols.items()]
                           + ["geometry BLOB NOT NULL"] * geometry)
    names = ["id", "x", "y", *cols] + ["geometry"] * geometry
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
            for p, values, geoms in _chunks(chunks, cols, _PIECE, geometry=geometry):
                n = len(p)
                if not n:
                    continue
                ids = np.arange(next_id, next_id + n, dtype=np.int64)
                next_id += n
                blobs = [_wkb(geoms)] if geometry else []
                rows = zip(ids.tolist(), p[:, 0].tolist(), p[:, 1].tolist(), *(values[c].tolist() for c in cols),
                           *blobs)
                con.executemany(insert, rows)
                if use_rtree:
                    box = _bounds(p, geoms)
                    boxes = zip(ids.tolist(), *(box[:, k].tolist() for k in range(4)))
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
        The table's other numeric columns (without ``id``; outlines: :func:`query_polygons`),
        float64 or int64.
    """
    if not table.isidentifier():
        raise ValueError(f"table name {table!r} must be an identifier")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
        info = con.execute(f"PRAGMA table_info({table})").fetchall()
        extra = [row[1] for row in info if row[1] not in _RESERVED and row[2].upper() != "BLOB"]
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


def query_polygons(
    path: str | PathLike[str], window: Window, *, table: str = "nuclei"
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Outlined objects of a store written with ``geometry=True`` whose outline meets a window.

    Parameters
    ----------
    path : str or PathLike
        The ``.sqlite`` file.
    window : Window
        The rectangle ``[x0, x1] x [y0, y1]`` in the outlines' coordinates; an outline is
        selected when it intersects it (touching counts), wherever its centroid lies, so a
        nucleus cut by the window's edge is returned whole.
    table : str
        Table name.

    Returns
    -------
    ids : (n,) int64 ndarray
        Row ids, ascending.
    xy : (n, 2) float64 ndarray
        The (x, y) points (centroids).
    columns : dict of str to (n,) ndarray
        The other numeric columns, float64 or int64.
    geometry : (n,) object ndarray of shapely geometries

    Notes
    -----
    The R*Tree (or, without one, a scan) narrows the search to outlines whose bounding
    box meets the window; ``shapely.intersects`` decides.
    """
    import shapely

    if not table.isidentifier():
        raise ValueError(f"table name {table!r} must be an identifier")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
        info = con.execute(f"PRAGMA table_info({table})").fetchall()
        types = {row[1]: row[2].upper() for row in info}
        if types.get("geometry") != "BLOB":
            raise ValueError(f"{path}: table {table!r} has no geometry column (written without outlines)")
        extra = [c for c, t in types.items() if c not in _RESERVED and t != "BLOB"]
        indexed = con.execute(
            "SELECT 1 FROM sqlite_master WHERE name = ?", (f"{table}_rtree",)
        ).fetchone() is not None
        select = ", ".join(f"n.{c}" for c in ["id", "x", "y", *extra, "geometry"])
        if indexed:
            sql = (f"SELECT {select} FROM {table} AS n JOIN {table}_rtree AS r ON r.id = n.id "
                   f"WHERE r.max_x >= :x0 AND r.min_x <= :x1 AND r.max_y >= :y0 AND r.min_y <= :y1 ORDER BY n.id")
        else:
            sql = f"SELECT {select} FROM {table} AS n ORDER BY n.id"
        bounds = {"x0": window.x0, "x1": window.x1, "y0": window.y0, "y1": window.y1}
        rows = con.execute(sql, bounds).fetchall()
    geoms = shapely.from_wkb([r[-1] for r in rows]) if rows else np.empty(0, dtype=object)
    data = np.array([r[:-1] for r in rows], dtype=np.float64).reshape(-1, 3 + len(extra))
    hit = shapely.intersects(geoms, shapely.box(window.x0, window.y0, window.x1, window.y1)) if rows else \
        np.zeros(0, dtype=bool)
    data, geoms = data[hit], np.asarray(geoms, dtype=object)[hit]
    columns = {
        c: data[:, 3 + k].astype(np.int64) if types.get(c) == "INTEGER" else data[:, 3 + k]
        for k, c in enumerate(extra)
    }
    return data[:, 0].astype(np.int64), data[:, 1:3].copy(), columns, geoms
