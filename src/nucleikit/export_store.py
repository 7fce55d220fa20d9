"""Former home of the slide table writers and region queries: now :mod:`nucleikit.export`.

Kept so that ``from nucleikit.export_store import query_region`` in user code keeps working.
"""

from .export import (  # noqa: F401
    PointChunk,
    ShapeChunk,
    has_rtree,
    polygons_from_rings,
    query_polygons,
    query_region,
    write_points_csv_chunks,
    write_points_parquet,
    write_points_sqlite,
)

__all__ = ["PointChunk", "ShapeChunk", "polygons_from_rings", "write_points_csv_chunks", "write_points_parquet",
           "write_points_sqlite", "query_region", "query_polygons", "has_rtree"]
