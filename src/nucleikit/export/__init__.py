"""Writing results: one module per output format, one registry every command uses.

Formats (each a module that registers a :class:`~nucleikit.export.registry.Writer`):
:mod:`~nucleikit.export.csv` (points and nucleus tables, in memory or streamed),
:mod:`~nucleikit.export.geojson` (QuPath), :mod:`~nucleikit.export.parquet`,
:mod:`~nucleikit.export.sqlite` (R*Tree region queries), :mod:`~nucleikit.export.overlay`
(PNG), :mod:`~nucleikit.export.label_tiff` (uint16 labels), :mod:`~nucleikit.export.napari`
(points tables napari opens as a points layer; opt-in). :mod:`~nucleikit.export.registry`
names the files (:data:`OUTPUT_TAGS`) and writes an image's or a slide's outputs in the formats
asked for; :mod:`~nucleikit.export.files` writes every file atomically and turns a full disk
into one line. Every name of the former ``nucleikit.export`` and ``nucleikit.export_store``
modules is importable from here.

Coordinates
-----------
nucleikit's points are (x, y), 0-based **pixel centres** (pixel ``(i, j)`` has its centre at
``x = j, y = i``), in the full-resolution pixels of the input image (level-0 pixels for
slides); callers map model coordinates back before exporting. The tables keep that
convention. QuPath places pixel ``(i, j)`` over the square ``[j, j + 1) x [i, i + 1)``, so its
centre is ``(j + 0.5, i + 0.5)``: :func:`qupath_features` adds 0.5 (``offset``).

Streaming
---------
A slide can hold millions of nuclei, so the slide writers take an **iterable of chunks**
``(xy, columns[, geometry])`` and never hold more than one; the extra columns and their dtypes
are declared once (``columns={"score": "float32"}``), so a table with no rows keeps its schema.
With outlines (``geometry``: shapely polygons, :func:`polygons_from_rings`) Parquet and SQLite
store WKB; with ``ids=True`` the CSV and Parquet writers add an ``id`` column 1, 2, ... equal
to the SQLite row ids.
"""

from __future__ import annotations

from ._common import DEFAULT_CLASS_COLORS, class_colors
from ._stream import PointChunk, ShapeChunk, polygons_from_rings
from .csv import write_points_csv, write_points_csv_chunks, write_table_csv
from .files import atomic_path, atomic_write, storage_errors
from .geojson import geojson_metadata, qupath_features, write_geojson
from .label_tiff import UINT16_MAX_LABEL, write_label_tiff
from .napari import napari_csv, write_napari_points, write_napari_points_chunks
from .overlay import write_overlay
from .parquet import write_points_parquet
from .registry import (
    OUTPUT_TAGS,
    WRITERS,
    ImageOutput,
    Nuclei,
    SlideTable,
    Writer,
    check_slide_formats,
    output_stem,
    register_writer,
    slide_formats,
    write_image_outputs,
    write_slide_outputs,
)
from .sqlite import has_rtree, query_polygons, query_region, write_points_sqlite

__all__ = [
    "DEFAULT_CLASS_COLORS",
    "OUTPUT_TAGS",
    "UINT16_MAX_LABEL",
    "WRITERS",
    "ImageOutput",
    "Nuclei",
    "PointChunk",
    "ShapeChunk",
    "SlideTable",
    "Writer",
    "atomic_path",
    "atomic_write",
    "check_slide_formats",
    "class_colors",
    "geojson_metadata",
    "has_rtree",
    "napari_csv",
    "output_stem",
    "polygons_from_rings",
    "query_polygons",
    "query_region",
    "qupath_features",
    "register_writer",
    "slide_formats",
    "storage_errors",
    "write_geojson",
    "write_image_outputs",
    "write_label_tiff",
    "write_napari_points",
    "write_napari_points_chunks",
    "write_overlay",
    "write_points_csv",
    "write_points_csv_chunks",
    "write_points_parquet",
    "write_points_sqlite",
    "write_slide_outputs",
    "write_table_csv",
]
