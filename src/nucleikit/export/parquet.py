"""Parquet tables of a slide's nuclei, streamed one row group per chunk (GeoParquet with outlines).

Needs pyarrow, the ``parquet`` extra (``pip install "nucleikit[parquet]"``): without it the
format is left out of the slides' default formats, and asking for it says which extra to install.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from ._stream import PointChunk, ShapeChunk, _check_columns, _chunks, _wkb
from .files import atomic_path
from .registry import SlideTable, Writer, register_writer

__all__ = ["write_points_parquet"]


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
    pa = require("pyarrow", "Parquet tables")
    pq = require("pyarrow.parquet", "Parquet tables")

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


# --------------------------------------------------------------------------- registry


def _slide_parquet(path: Path, table: SlideTable) -> Path:
    if table.outlines:
        chunks = ((c.xy, c.columns, c.geometry) for c in table.chunks())
    else:
        chunks = ((c.xy, c.columns) for c in table.chunks())
    return write_points_parquet(path, chunks, columns=table.schema, ids=table.ids, geometry=table.outlines)


register_writer(Writer("parquet", ".parquet", write_slide=_slide_parquet, needs="pyarrow"))
