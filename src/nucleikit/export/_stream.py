"""Chunks of a slide's nuclei, as the streaming writers take them (see :mod:`nucleikit.export`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["PointChunk", "ShapeChunk", "polygons_from_rings"]

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
        if dt.kind not in "biufU":
            raise ValueError(f"column {name!r} must be numeric or text (str), got dtype {dt}")
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


def _wkb(geoms: np.ndarray) -> list[bytes]:
    """(n,) shapely geometries → n WKB byte strings (little-endian ISO WKB, 2-D)."""
    import shapely

    return list(shapely.to_wkb(geoms, output_dimension=2, byte_order=1, flavor="iso"))
