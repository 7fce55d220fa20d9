"""QuPath GeoJSON: detections with points or polygon outlines, classes and measurements.

QuPath's contract (``QuPathTypeAdapters.java``, ``GsonTools.java``): ``properties.objectType``
selects the object type (inside ``properties``; beside it, as TIAToolbox writes it, QuPath
makes annotations); ``properties.measurements`` maps names to numbers (non-finite values are
left out: JSON has no NaN and QuPath shows a missing measurement as NaN);
``properties.classification`` is ``{"name": str, "color": [r, g, b]}``; each feature has
``"type": "Feature"``, a UUID ``"id"`` and a ``Point`` or closed ``Polygon`` geometry.
Coordinates get +0.5 (``offset``): nucleikit's pixel centres to QuPath's pixel corners.

The collection also carries a top-level ``"nucleikit"`` member (a GeoJSON "foreign member",
RFC 7946 section 6.1, which QuPath's reader ignores) saying what the coordinates are: pixels
(level 0 for slides), the pixel-corner origin, and the resolution ``mpp`` (µm/px; null when
not known) to turn them into microns (:func:`geojson_metadata`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._common import _as_column, _as_points, _as_polygons, class_colors
from .files import atomic_write
from .registry import ImageOutput, SlideTable, Writer, register_writer

__all__ = ["COORDINATE_CONVENTION", "geojson_metadata", "qupath_features", "write_geojson"]

#: What the ``"nucleikit"`` member of every GeoJSON says about its coordinates.
COORDINATE_CONVENTION = (
    "pixels of the input image (level 0 of a slide), x right, y down; (0, 0) is the top-left corner "
    "of the top-left pixel (QuPath's convention), so the pixel in row i, column j is centred on "
    "(j + 0.5, i + 0.5), which nucleikit's CSV tables give as (j, i)"
)

_OBJECT_TYPES = ("detection", "annotation", "cell")


def qupath_features(
    points: Any = None,
    *,
    polygons: Sequence[Any] | None = None,
    classes: Sequence[Any] | None = None,
    colors: Mapping[Any, Sequence[int]] | None = None,
    measurements: Mapping[str, Any] | None = None,
    object_type: str = "detection",
    offset: float = 0.5,
    precision: int = 2,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """QuPath GeoJSON features, one per nucleus.

    Parameters
    ----------
    points : (N, 2) array_like or None
        (x, y) 0-based pixel-centre coordinates in full-resolution pixels; written as
        ``Point`` geometries unless ``polygons`` is given.
    polygons : sequence of (K, 2) array_like, or None
        Outlines as (x, y) vertices (pixel-centre convention, e.g. from
        ``skimage.measure.find_contours`` with columns swapped); written as ``Polygon``
        geometries with closed rings (the first vertex repeated at the end). When both are
        given they describe the same objects and ``points`` is ignored for the geometry.
    classes : (N,) sequence or None
        Class label per object; ``None`` (or ``""``) leaves that object unclassified.
        Written as ``properties.classification = {"name": str(label), "color": [r, g, b]}``.
    colors : mapping or None
        Class label → (r, g, b); see :func:`class_colors`.
    measurements : mapping of str to (N,) array_like, or None
        Numeric values per object, written as ``properties.measurements``; non-finite values
        are left out (JSON has no NaN; QuPath shows a missing measurement as NaN).
    object_type : {"detection", "annotation", "cell"}
        QuPath object type, written *inside* ``properties`` as ``objectType``.
    offset : float
        Added to every coordinate: 0.5 converts nucleikit's pixel centres to QuPath's
        pixel-corner coordinates (see the module docstring). Use 0 for coordinates that
        already follow QuPath's convention.
    precision : int
        Decimals of the coordinates.
    seed : int or None
        Seed for the feature ids (version-4 UUIDs); None draws them from the system's random
        source as QuPath does. A seed makes the file reproducible.

    Returns
    -------
    list of dict
        GeoJSON ``Feature`` objects for :func:`write_geojson`.
    """
    if object_type not in _OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {_OBJECT_TYPES}, got {object_type!r}")
    if polygons is not None:
        rings = _as_polygons(polygons)
        n = len(rings)
        geometries = []
        for ring in rings:
            xy = np.round(np.vstack([ring, ring[:1]]) + offset, precision).tolist()
            geometries.append({"type": "Polygon", "coordinates": [xy]})
        if points is not None and len(_as_points(points)) != n:
            raise ValueError(f"{len(_as_points(points))} points but {n} polygons; they must describe the same objects")
    elif points is not None:
        xy = np.round(_as_points(points) + offset, precision).tolist()
        n = len(xy)
        geometries = [{"type": "Point", "coordinates": c} for c in xy]
    else:
        raise ValueError("give points or polygons")

    names: list[str | None] = [None] * n
    rgb: list[list[int]] = [[]] * n
    if classes is not None:
        labels = list(classes)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} classes for {n} objects")
        names = [None if (c is None or str(c) == "") else str(c) for c in labels]
        known = [k for k, c in enumerate(names) if c is not None]
        table = class_colors([labels[k] for k in known], colors).tolist()
        for k, c in zip(known, table):
            rgb[k] = c

    values: list[dict[str, float]] = [{} for _ in range(n)]
    for name, column in (measurements or {}).items():
        v = _as_column(column, name, n).astype(np.float64)
        finite = np.isfinite(v)
        for k, x in zip(np.flatnonzero(finite).tolist(), v[finite].tolist()):
            values[k][str(name)] = x

    features = []
    for k, (geometry, object_id) in enumerate(zip(geometries, _uuids(n, seed))):
        properties: dict[str, Any] = {"objectType": object_type}
        if names[k] is not None:
            properties["classification"] = {"name": names[k], "color": rgb[k]}
        if values[k]:
            properties["measurements"] = values[k]
        features.append({"type": "Feature", "id": object_id, "geometry": geometry, "properties": properties})
    return features


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _uuids(n: int, seed: int | None) -> list[str]:
    """``n`` version-4 UUID strings (RFC 4122), made in one vectorised pass."""
    raw = os.urandom(16 * n) if seed is None else np.random.default_rng(seed).bytes(16 * n)
    b = np.frombuffer(raw, dtype=np.uint8).reshape(n, 16).copy()
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40  # version 4
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = np.stack([_HEX[b >> 4], _HEX[b & 0x0F]], axis=-1).reshape(n, 32)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for lo, hi, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        text[:, at : at + hi - lo] = digits[:, lo:hi]
    return text.view("S36").ravel().astype(str).tolist()


def geojson_metadata(mpp: float | None = None, mpp_source: str | None = None) -> dict[str, Any]:
    """The top-level ``"nucleikit"`` member: version, units, coordinate convention and ``mpp``.

    ``mpp_source`` (``option``, ``metadata``, ``model``: the file records none and the model's
    own was assumed) is included when given.

    >>> geojson_metadata(0.5)["mpp"], geojson_metadata()["units"]
    (0.5, 'pixel')
    """
    from .. import __version__

    value = None if mpp is None else float(mpp)
    if value is not None and not np.isfinite(value):
        value = None
    meta = {"version": __version__, "units": "pixel", "mpp": value, "mpp_units": "um/px"}
    if mpp_source is not None:
        meta["mpp_source"] = str(mpp_source)
    meta["coordinates"] = COORDINATE_CONVENTION
    return meta


def write_geojson(
    path: str | os.PathLike[str], features: Iterable[Mapping[str, Any]], *, chunk: int = 4096,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write features as a GeoJSON ``FeatureCollection`` that QuPath imports.

    Parameters
    ----------
    path : str or PathLike
        Output file (``.geojson``); written atomically, parent folders created.
    features : iterable of dict
        GeoJSON features, e.g. from :func:`qupath_features`. Streamed in chunks, so a
        generator over a whole slide's nuclei need not fit in memory as one list.
    chunk : int
        Features encoded per write.
    metadata : mapping or None
        Written as the collection's top-level ``"nucleikit"`` member (e.g.
        :func:`geojson_metadata`); None: no such member.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If a value is NaN or infinite (strict JSON; nothing is written).
    """
    encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
    with atomic_write(path, "w") as f:
        f.write('{"type":"FeatureCollection",')
        if metadata is not None:
            f.write('"nucleikit":' + encoder.encode(dict(metadata)) + ",")
        f.write('"features":[')
        buffer: list[str] = []
        first = True
        for feature in features:
            buffer.append(encoder.encode(feature))
            if len(buffer) >= chunk:
                f.write(("" if first else ",") + ",".join(buffer))
                first, buffer = False, []
        if buffer:
            f.write(("" if first else ",") + ",".join(buffer))
        f.write("]}\n")
    return Path(path)


# --------------------------------------------------------------------------- registry


def _features(n: Any) -> list[dict[str, Any]]:
    """QuPath features of a :class:`~nucleikit.export.registry.Nuclei`: outlines if it has them, else points."""
    if n.outlines is not None:
        return qupath_features(polygons=n.outlines, classes=n.classes, measurements=n.measurements)
    return qupath_features(points=n.xy, classes=n.classes, measurements=n.measurements)


def _image_geojson(path: Path, output: ImageOutput) -> Path:
    return write_geojson(path, _features(output.nuclei), metadata=geojson_metadata(output.mpp, output.mpp_source))


def _slide_geojson(path: Path, table: SlideTable) -> Path:
    return write_geojson(path, (feature for chunk in table.chunks() for feature in _features(chunk)),
                         metadata=geojson_metadata(table.mpp))


register_writer(Writer("geojson", ".geojson", write_image=_image_geojson, write_slide=_slide_geojson))
