"""Read point annotations (CSV, MATLAB ``.mat``, QuPath GeoJSON) as one :class:`PointSet`.

All readers return nucleikit's convention: (x, y) float64, 0-based pixel
centres, x to the right and y down, so the pixel under a point is
``image[round(y), round(x)]``. Each format's own convention is converted here:

- **CSV** (``.csv``): already 0-based pixel centres, as nucleikit writes them.
  A header row names the columns, case-insensitively: ``x`` and ``y``
  (required), ``class`` and ``score`` (optional); other columns are ignored.
  An empty ``class`` cell means unclassified (``""``), an empty ``score`` cell
  gives NaN; any other non-numeric x, y or score is an error.
- **MATLAB** (``.mat``): 1-based pixel centres; see :mod:`nucleikit.io.mat`.
- **GeoJSON** (``.geojson``, ``.json``) as QuPath exports it: a
  FeatureCollection, a single Feature, or a bare list of Features. QuPath's
  coordinates put the *corner* of the top-left pixel at (0, 0), so the centre
  of pixel (0, 0) is (0.5, 0.5); we subtract :data:`QUPATH_PIXEL_OFFSET`.
  A writer of QuPath GeoJSON must add it back. Point and MultiPoint features
  give their points; Polygon and MultiPolygon features give their centroid
  (shapely); a QuPath cell with ``properties.nucleusGeometry`` gives the
  centroid of its nucleus. The label comes from ``properties.classification``
  (``{"name": ...}`` or a plain string, as QuPath's ``PathClassTypeAdapter``
  accepts); the score from a measurement named ``score`` or ``<anything> score``
  (any case; nucleikit's export writes ``"<detector> score"``) in
  ``properties.measurements`` (an object of numbers, or QuPath's older list of
  ``{"name", "value"}``); a feature without one gets NaN.

An annotation file with no points (a header only, no features) is an
:class:`~nucleikit.errors.InputError` unless ``allow_empty=True``: an empty
truth file more often means a failed export than an image with no nuclei. A
zero-byte file is refused even then: it is not even a header, so it cannot say
"this image has no nuclei" (scoring it as such would count every prediction as
a false positive without a word).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nucleikit.errors import InputError, missing_reason
from nucleikit.io.mat import read_mat_points

__all__ = [
    "POINT_SUFFIXES",
    "QUPATH_PIXEL_OFFSET",
    "PointSet",
    "OUTSIDE_TOLERANCE",
    "check_points_in_image",
    "clip_points_to_image",
    "read_points",
]

#: QuPath coordinate of the centre of pixel (0, 0) along each axis.
QUPATH_PIXEL_OFFSET = 0.5

#: How far beyond the outer pixel centres a point may lie and still count as on the image:
#: the half pixel to the image's edge plus 1 px. Annotation tools put points a fraction of a
#: pixel outside (CRCHisto's own img8 and img91 have y = -0.85 and -0.74); such points are
#: clipped onto the image (:func:`clip_points_to_image`), farther ones refused.
OUTSIDE_TOLERANCE = 1.5

#: What a point file of an image without nuclei holds instead of nothing (a zero-byte file is
#: a crashed export or a failed copy, never "no nuclei").
_EMPTY_BUT_VALID = {
    ".csv": "a file for an image without nuclei still holds its header line",
    ".geojson": "a file for an image without nuclei still holds an empty FeatureCollection",
    ".json": "a file for an image without nuclei still holds an empty FeatureCollection",
    ".mat": "a file for an image without nuclei still holds an empty matrix",
}

#: Suffixes read by :func:`read_points` (lower case).
POINT_SUFFIXES = (".csv", ".mat", ".geojson", ".json")


@dataclass(frozen=True, eq=False)
class PointSet:
    """Points with optional class names and scores.

    Attributes
    ----------
    xy : (N, 2) ndarray of float64
        (x, y) 0-based pixel centres, x to the right, y down.
    labels : (N,) ndarray of str, or None
        Class name of each point; ``""`` for an unclassified point. ``None``
        when the source carries no class at all.
    scores : (N,) ndarray of float64, or None
        Confidence of each point, NaN where missing; ``None`` when the source
        carries no scores at all.
    """

    xy: np.ndarray
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float64)
        if xy.size == 0:
            xy = xy.reshape(0, 2)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"xy must have shape (N, 2), got {xy.shape}")
        object.__setattr__(self, "xy", xy)
        n = len(xy)
        if self.labels is not None:
            labels = np.asarray(self.labels, dtype=str).reshape(-1)
            if len(labels) != n:
                raise ValueError(f"labels has {len(labels)} entries for {n} points")
            object.__setattr__(self, "labels", labels)
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if len(scores) != n:
                raise ValueError(f"scores has {len(scores)} entries for {n} points")
            object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.xy)


def read_points(path: str | Path, *, allow_empty: bool = False) -> PointSet:
    """Read point annotations from a ``.csv``, ``.mat``, ``.geojson`` or ``.json`` file.

    Parameters
    ----------
    path : str or Path
        The annotation file; its suffix (case-insensitive) chooses the reader.
    allow_empty : bool
        Return an empty :class:`PointSet` for a file with no points (a CSV
        header only, a FeatureCollection without features) instead of
        raising. A zero-byte file is refused all the same.

    Returns
    -------
    PointSet
        ``xy`` (N, 2) float64 0-based pixel centres; ``labels`` and ``scores``
        when the file has them (see the module docstring for each format).

    Raises
    ------
    InputError
        Missing or unsupported file, no points (unless ``allow_empty``),
        malformed CSV (no x/y columns, ragged rows, non-numeric values),
        invalid JSON or GeoJSON, unreadable ``.mat``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POINT_SUFFIXES:
        supported = ", ".join(POINT_SUFFIXES)
        raise InputError(path, f"unsupported annotation format {suffix or '(no suffix)'!r} (supported: {supported})")
    if not path.exists():
        raise InputError(path, missing_reason(path))
    if path.is_dir():
        raise InputError(path, "is a directory, not an annotation file")
    if not path.is_file():
        raise InputError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise InputError(path, f"file is empty (0 bytes): {_EMPTY_BUT_VALID[suffix]}")
    if suffix == ".csv":
        points = _read_csv(path)
    elif suffix == ".mat":
        points = PointSet(read_mat_points(path))
    else:
        points = _read_geojson(path)
    if len(points) == 0 and not allow_empty:
        raise InputError(path, "file holds no points")
    return points


def check_points_in_image(
    points: PointSet | np.ndarray,
    shape: tuple[int, ...],
    path: str | Path,
    *,
    tolerance: float = OUTSIDE_TOLERANCE,
) -> None:
    """Raise if any point lies outside an image of the given shape.

    A point is inside when ``-tolerance <= x <= W - 1 + tolerance`` and the
    same for y with H. The default (:data:`OUTSIDE_TOLERANCE`) accepts every
    point on the image's pixels and up to 1 px beyond its edge, which
    :func:`clip_points_to_image` then moves onto the image; ``tolerance=0.5``
    accepts the pixels' edges and nothing beyond. NaN coordinates count as
    outside.

    Parameters
    ----------
    points : PointSet or (N, 2) array_like of float
        (x, y) 0-based pixel centres.
    shape : tuple of int
        The image shape ``(H, W[, C])``.
    path : str or Path
        The annotation file, named in the error.
    tolerance : float
        Allowed distance beyond the outer pixel centres, in pixels.

    Raises
    ------
    InputError
        "N points lie outside the W x H image, e.g. (x, y)".
    """
    xy = points.xy if isinstance(points, PointSet) else np.asarray(points, dtype=np.float64).reshape(-1, 2)
    height, width = int(shape[0]), int(shape[1])
    x, y = xy[:, 0], xy[:, 1]
    inside = (x >= -tolerance) & (x <= width - 1 + tolerance) & (y >= -tolerance) & (y <= height - 1 + tolerance)
    outside = xy[~inside]
    if len(outside):
        count = f"{len(outside)} points lie" if len(outside) > 1 else "1 point lies"
        first_x, first_y = outside[0]
        raise InputError(path, f"{count} outside the {width} x {height} image, e.g. ({first_x:g}, {first_y:g})")


def clip_points_to_image(points: PointSet | np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Points moved onto the outer pixel centres of an image, and how many moved.

    For points already checked by :func:`check_points_in_image`: those a
    fraction of a pixel outside are clipped to ``0 <= x <= W - 1`` and
    ``0 <= y <= H - 1``, so every point has a pixel under it.

    Parameters
    ----------
    points : PointSet or (N, 2) array_like of float
    shape : tuple of int
        ``(H, W[, C])``.

    Returns
    -------
    xy : (N, 2) ndarray of float64
    moved : int
        Number of points that were outside and were clipped.
    """
    xy = points.xy if isinstance(points, PointSet) else np.asarray(points, dtype=np.float64).reshape(-1, 2)
    height, width = int(shape[0]), int(shape[1])
    clipped = np.column_stack([np.clip(xy[:, 0], 0, width - 1), np.clip(xy[:, 1], 0, height - 1)]).reshape(-1, 2)
    moved = int(np.count_nonzero(np.any(clipped != xy, axis=1)))
    return clipped, moved


# --- text files ---------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a UTF-8 text file (byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc


# --- CSV ----------------------------------------------------------------------

_CSV_COLUMNS = ("x", "y", "class", "score")


def _read_csv(path: Path) -> PointSet:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV (line {reader.line_num}: {exc})") from exc
    if not rows:
        return PointSet(np.zeros((0, 2)))
    header = [cell.strip().lower() for cell in rows[0][1]]
    columns = _csv_columns(path, header)
    body = rows[1:]
    for line, row in body:
        if len(row) != len(header):
            raise InputError(path, f"malformed CSV: line {line} has {len(row)} fields, the header has {len(header)}")
    lines = [line for line, _ in body]
    cells = {name: [row[index].strip() for _, row in body] for name, index in columns.items()}
    xy = np.column_stack(
        [_csv_numbers(path, "x", cells["x"], lines), _csv_numbers(path, "y", cells["y"], lines)]
    ).reshape(-1, 2)
    labels = np.asarray(cells["class"], dtype=str) if "class" in cells else None
    scores = _csv_numbers(path, "score", cells["score"], lines, blank=np.nan) if "score" in cells else None
    return PointSet(xy, labels, scores)


def _csv_columns(path: Path, header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for name in _CSV_COLUMNS:
        found = [index for index, cell in enumerate(header) if cell == name]
        if len(found) > 1:
            raise InputError(path, f"malformed CSV: the header names column {name!r} {len(found)} times")
        if found:
            columns[name] = found[0]
    if "x" not in columns or "y" not in columns:
        raise InputError(path, f"CSV header has no 'x' and 'y' columns (found: {', '.join(header)})")
    return columns


def _csv_numbers(path: Path, name: str, cells: list[str], lines: list[int], blank: float | None = None) -> np.ndarray:
    values = np.full(len(cells), np.nan)
    for i, cell in enumerate(cells):
        if cell == "" and blank is not None:
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            reason = f"malformed CSV: line {lines[i]}, column {name!r}: {cell!r} is not a number"
            raise InputError(path, reason) from None
        missing_allowed = blank is not None and np.isnan(values[i])
        if not np.isfinite(values[i]) and not missing_allowed:
            raise InputError(path, f"malformed CSV: line {lines[i]}, column {name!r}: {cell!r} is not a finite number")
    return values


# --- GeoJSON ------------------------------------------------------------------


def _read_geojson(path: Path) -> PointSet:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    features = _features(path, data)
    chunks: list[np.ndarray] = []
    labels: list[str | None] = []
    scores: list[float | None] = []
    for number, feature in enumerate(features, start=1):
        points = _feature_points(path, number, feature)
        properties = feature.get("properties") or {}
        label = _feature_label(properties)
        score = _feature_score(properties)
        chunks.append(points)
        labels.extend([label] * len(points))
        scores.extend([score] * len(points))
    xy = np.concatenate(chunks) - QUPATH_PIXEL_OFFSET if chunks else np.zeros((0, 2))
    has_labels = any(label is not None for label in labels)
    has_scores = any(score is not None for score in scores)
    return PointSet(
        xy,
        np.asarray(["" if label is None else label for label in labels], dtype=str) if has_labels else None,
        np.asarray([np.nan if score is None else score for score in scores], dtype=np.float64) if has_scores else None,
    )


def _features(path: Path, data: Any) -> list[dict]:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    else:
        raise InputError(path, "not GeoJSON: expected a FeatureCollection, a Feature or a list of Features")
    if not isinstance(features, list):
        raise InputError(path, "invalid GeoJSON: 'features' is not a list")
    for number, feature in enumerate(features, start=1):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise InputError(path, f"invalid GeoJSON: item {number} is not a Feature")
    return features


def _feature_points(path: Path, number: int, feature: dict) -> np.ndarray:
    """(k, 2) points of one feature in QuPath coordinates (offset not yet removed)."""
    properties = feature.get("properties") or {}
    geometry = properties.get("nucleusGeometry") or feature.get("geometry")
    if not isinstance(geometry, dict) or "type" not in geometry:
        raise InputError(path, f"invalid GeoJSON: feature {number} has no geometry")
    from shapely.errors import ShapelyError

    kind = geometry["type"]
    try:
        if kind in ("Point", "MultiPoint"):
            positions = [geometry["coordinates"]] if kind == "Point" else list(geometry["coordinates"])
            # A position may carry a third value (z); only x and y are kept.
            points = np.asarray([position[:2] for position in positions], dtype=np.float64)
            points = points.reshape(0, 2) if points.size == 0 else points
        elif kind in ("Polygon", "MultiPolygon"):
            from shapely.geometry import shape

            centroid = shape(geometry).centroid
            if centroid.is_empty:
                raise InputError(path, f"invalid GeoJSON: feature {number} has an empty {kind}")
            points = np.array([[centroid.x, centroid.y]])
        else:
            raise InputError(path, f"feature {number} has unsupported geometry {kind!r} (expected points or polygons)")
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ShapelyError) as exc:
        raise InputError(path, f"invalid GeoJSON: feature {number} has bad {kind} coordinates ({exc})") from exc
    if points.ndim != 2 or points.shape[1] != 2 or not np.all(np.isfinite(points)):
        raise InputError(path, f"invalid GeoJSON: feature {number} has bad {kind} coordinates")
    return points


def _feature_label(properties: dict) -> str | None:
    classification = properties.get("classification")
    if isinstance(classification, str):
        return classification
    if isinstance(classification, dict):
        if isinstance(classification.get("name"), str):
            return classification["name"]
        names = classification.get("names")  # derived classes, e.g. ["Tumor", "Positive"]
        if isinstance(names, list) and names:
            return ": ".join(str(name) for name in names)
    return None


def _feature_score(properties: dict) -> float | None:
    measurements = properties.get("measurements")
    if isinstance(measurements, dict):
        items = measurements.items()
    elif isinstance(measurements, list):
        items = [(m.get("name"), m.get("value")) for m in measurements if isinstance(m, dict)]
    else:
        return None
    # nucleikit's own export names it "<detector> score"; a plain "score" wins.
    scores = {name.strip().lower(): value for name, value in items if isinstance(name, str) and _is_score_name(name)}
    if not scores:
        return None
    value = scores.get("score", next(iter(scores.values())))
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _is_score_name(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered == "score" or lowered.endswith(" score")
