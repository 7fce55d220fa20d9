"""SQLite stores of a slide's nuclei with an R*Tree, and the region queries that read them.

Table ``nuclei(id INTEGER PRIMARY KEY, x REAL, y REAL, <column> ...[, geometry BLOB])`` and an
R*Tree ``nuclei_rtree(id, min_x, max_x, min_y, max_y)`` (a B-tree on ``(x, y)`` where SQLite
lacks the module). The R*Tree stores 32-bit float bounds rounded outwards, so it narrows the
search and an exact test on ``x``, ``y`` decides (:func:`query_region`); with outlines it holds
each outline's box grown to include the centroid (:func:`query_polygons`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..windows import Window
from ._stream import _PIECE, _RESERVED, PointChunk, ShapeChunk, _check_columns, _chunks, _wkb
from .files import atomic_path
from .registry import SlideTable, Writer, register_writer

__all__ = ["has_rtree", "write_points_sqlite", "query_region", "query_polygons"]


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


_SQL_TYPES = {"f": "REAL", "i": "INTEGER", "u": "INTEGER", "b": "INTEGER", "U": "TEXT"}


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
        Extra columns; floats become ``REAL``, integers ``INTEGER``, text (``str``) ``TEXT``.
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
        The table's other columns (without ``id``; outlines: :func:`query_polygons`),
        float64, int64 or str (``TEXT``).
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
    values = list(zip(*rows)) if rows else [()] * (2 + len(extra))
    xy = np.column_stack([np.asarray(values[0], np.float64), np.asarray(values[1], np.float64)]).reshape(-1, 2)
    kinds = {"INTEGER": np.int64, "TEXT": str}
    types = {row[1]: row[2].upper() for row in info}
    columns = {c: np.asarray(values[2 + k], dtype=kinds.get(types.get(c), np.float64)) for k, c in enumerate(extra)}
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


# --------------------------------------------------------------------------- registry


def _slide_sqlite(path: Path, table: SlideTable) -> Path:
    # ids are the row ids whatever table.ids says: SQLite always has them
    if table.outlines:
        chunks = ((c.xy, c.columns, c.geometry) for c in table.chunks())
    else:
        chunks = ((c.xy, c.columns) for c in table.chunks())
    return write_points_sqlite(path, chunks, columns=table.schema, geometry=table.outlines)


register_writer(Writer("sqlite", ".sqlite", write_slide=_slide_sqlite))
