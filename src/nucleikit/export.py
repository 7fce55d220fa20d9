"""Writing results: points CSV, QuPath GeoJSON, overlay PNG; every file written atomically.

Coordinates
-----------
nucleikit's points are (x, y), 0-based **pixel centres** (pixel ``(i, j)`` has its centre at
``x = j, y = i``), in the full-resolution pixels of the input image; callers map model
coordinates back before exporting. The CSV keeps that convention. QuPath places pixel
``(i, j)`` over the square ``[j, j + 1) x [i, i + 1)`` (pixel *corners* on integers, as
ImageJ), so its centre is ``(j + 0.5, i + 0.5)``: :func:`qupath_features` adds 0.5
(``offset``) so that a point lands in the middle of its pixel in QuPath.

QuPath's GeoJSON contract (``QuPathTypeAdapters.java``, ``GsonTools.java``)
--------------------------------------------------------------------------
- ``properties.objectType`` selects the object type; without it, or beside ``properties``
  rather than inside (as TIAToolbox writes it), QuPath makes annotations. We write
  ``"detection"``.
- ``properties.measurements`` is an object mapping names to numbers. JSON has no NaN and
  QuPath reads the object as ``Map<String, Double>``, so a non-finite value is **left out**
  of that feature's measurements; QuPath shows a missing measurement as NaN, so nothing is
  lost.
- ``properties.classification`` is ``{"name": str, "color": [r, g, b]}``.
- Each feature has ``"type": "Feature"``, an ``"id"`` (a UUID string, as QuPath writes) and
  a ``geometry``: ``Point`` for centres, ``Polygon`` with closed rings for outlines.

Nothing half-written ever appears under a final name: files are written under a temporary
name in the same folder and renamed (``os.replace``) once complete (:func:`atomic_write`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import InputError

__all__ = [
    "DEFAULT_CLASS_COLORS",
    "atomic_path",
    "atomic_write",
    "storage_errors",
    "class_colors",
    "write_points_csv",
    "qupath_features",
    "write_geojson",
    "write_overlay",
    "write_label_tiff",
    "write_table_csv",
    "UINT16_MAX_LABEL",
    "OUTPUT_TAGS",
    "output_stem",
]

#: What each command adds to an input's stem in its output names, so that commands sharing
#: one ``-o`` folder never overwrite each other's files: ``detect`` keeps the plain
#: ``<stem>.csv`` (what ``evaluate detection`` and earlier scripts read), the others say
#: what their table holds. ``segment``'s label image stays ``<stem>_labels.tif`` (only
#: ``segment`` writes label images; ``evaluate segmentation`` and training read that name).
OUTPUT_TAGS: Mapping[str, str] = {
    "detect": "",
    "segment": "_outlines",
    "analyze": "_typed",
    "classify": "_classified",
}


def output_stem(stem: str, command: str) -> str:
    """The stem of ``command``'s outputs for an input of stem ``stem`` (:data:`OUTPUT_TAGS`).

    >>> output_stem("img1", "segment")
    'img1_outlines'
    """
    try:
        return stem + OUTPUT_TAGS[command]
    except KeyError:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(OUTPUT_TAGS)}") from None

#: Largest label a uint16 label TIFF holds.
UINT16_MAX_LABEL = 65535

#: Colours (RGB) of the CRCHistoPhenotypes nucleus classes; other names get a palette colour.
DEFAULT_CLASS_COLORS: Mapping[str, tuple[int, int, int]] = {
    "epithelial": (230, 25, 75),
    "fibroblast": (60, 180, 75),
    "inflammatory": (0, 130, 200),
    "others": (245, 130, 48),
}

# Colour-blind-friendly palette for class names without a given colour (chosen by a hash of
# the name, so a class keeps its colour from file to file and run to run).
_PALETTE = np.array(
    [
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (153, 153, 153),
    ],
    dtype=np.uint8,
)

_DEFAULT_POINT_COLOR = (0, 255, 0)
_OBJECT_TYPES = ("detection", "annotation", "cell")


# --------------------------------------------------------------------------- atomic writes


def _temp_name(path: Path) -> Path:
    # Hidden, unique, in the same folder (so os.replace is a rename on one file system), and
    # ending in the final suffix so that libraries choosing a format by extension still work.
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(path, f"cannot create folder {path.parent}: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise InputError(path, "is a folder, not a file")


#: errno values that mean "the output could not be stored" (not a bug of the caller): a full
#: disk or quota, an I/O error, a read-only file system, a file too large for it.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})
#: SQLite's words for the same (it reports a full disk as "database or disk is full").
_SQLITE_STORAGE = ("disk i/o error", "database or disk is full", "attempt to write a readonly database")


def _storage_failure(exc: BaseException) -> str | None:
    """The reason to report if ``exc`` means the output could not be stored, else None."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return exc.strerror or os.strerror(exc.errno)
    if isinstance(exc, sqlite3.Error) and any(words in str(exc).lower() for words in _SQLITE_STORAGE):
        return f"SQLite: {exc}"
    return None


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk (or the like) while writing ``path`` into an InputError naming it.

    A batch then reports the file in one line and goes on with the next input (which
    may fit, or go to another disk) instead of stopping on a traceback. For writers that
    are not :func:`atomic_write` / :func:`atomic_path` (a slide run's resume store).

    Raises
    ------
    InputError
        ``cannot write: <reason>`` for an ``OSError`` of :data:`_STORAGE_ERRNOS` or a SQLite
        error meaning the same; other errors propagate unchanged.
    """
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        reason = _storage_failure(exc)
        if reason is None:
            raise
        raise InputError(path, f"cannot write: {reason}") from exc


_storage_errors_name = storage_errors


def _publish(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(path, f"cannot write: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` if the block succeeds.

    For writers that want a file name rather than a file object. The temporary name keeps the
    suffix of ``path``. On an exception the temporary file (if created) is removed and
    ``path`` is left as it was. Parent folders are created.

    Raises
    ------
    InputError
        If the folder cannot be created, ``path`` is a folder, the rename fails, or the
        writer meets a full disk (an ``OSError`` ENOSPC, or SQLite's "disk I/O error").
    """
    final = Path(path)
    _make_parent(final)
    tmp = _temp_name(final)
    try:
        with _storage_errors_name(final):
            yield tmp
        _publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or PathLike
        Final file name. Parent folders are created.
    mode : {"w", "wb"}
        Text or binary. Text files default to ``encoding="utf-8"``.
    **open_kwargs
        Passed to :func:`open` (e.g. ``newline=""`` for CSV).

    Yields
    ------
    file object
        Flushed and fsync'ed before the rename, so ``path`` is complete or absent.

    Raises
    ------
    InputError
        If the folder cannot be created or written, ``path`` is a folder, or the disk is
        full (or another storage failure, see :data:`_STORAGE_ERRNOS`) while writing.

    Notes
    -----
    On any exception inside the block the temporary file is removed and the exception
    propagates; nothing half-written ever appears under ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    final = Path(path)
    _make_parent(final)
    tmp = _temp_name(final)
    try:
        # "x": never clobber; created with the usual umask permissions (unlike mkstemp's 0600).
        f = open(tmp, mode.replace("w", "x"), **open_kwargs)  # noqa: SIM115
    except OSError as exc:
        raise InputError(final, f"cannot write: {exc.strerror or exc}") from exc
    try:
        with _storage_errors_name(final), f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --------------------------------------------------------------------------- validation


def _as_points(points: Any, name: str = "points") -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) of (x, y), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contain NaN or infinite coordinates")
    return p


def _as_column(values: Any, name: str, n: int) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 1 or len(v) != n:
        raise ValueError(f"column {name!r} must have shape ({n},) to match the points, got {v.shape}")
    return v


def _as_polygons(polygons: Sequence[Any]) -> list[np.ndarray]:
    rings = []
    for k, poly in enumerate(polygons):
        p = np.asarray(poly, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"polygon {k} must have shape (K, 2) of (x, y), got {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError(f"polygon {k} contains NaN or infinite coordinates")
        if len(p) > 1 and np.array_equal(p[0], p[-1]):
            p = p[:-1]  # accept closed and open rings alike; closed again on output
        if len(p) < 3:
            raise ValueError(f"polygon {k} needs at least 3 distinct vertices, got {len(p)}")
        rings.append(p)
    return rings


def class_colors(
    classes: Sequence[Any], colors: Mapping[Any, Sequence[int]] | None = None
) -> np.ndarray:
    """RGB colour of each class label.

    Parameters
    ----------
    classes : (N,) sequence
        Class labels (names or integers).
    colors : mapping or None
        Label → (r, g, b) in 0..255. Labels not in it take :data:`DEFAULT_CLASS_COLORS`
        (by name), else a palette colour chosen by a hash of ``str(label)``: stable across
        files and runs.

    Returns
    -------
    (N, 3) uint8
    """
    labels = list(classes)
    table: dict[Any, tuple[int, int, int]] = {}
    for label in dict.fromkeys(labels):
        if colors is not None and label in colors:
            rgb = tuple(int(c) for c in colors[label])
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"colour of class {label!r} must be (r, g, b) in 0..255, got {colors[label]!r}")
        elif str(label) in DEFAULT_CLASS_COLORS:
            rgb = DEFAULT_CLASS_COLORS[str(label)]
        else:
            rgb = tuple(int(c) for c in _PALETTE[zlib.crc32(str(label).encode()) % len(_PALETTE)])
        table[label] = rgb  # type: ignore[assignment]
    out = np.array([table[label] for label in labels], dtype=np.uint8)
    return out.reshape(-1, 3)


# --------------------------------------------------------------------------- CSV


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
    import pandas as pd

    p = _as_points(points)
    cols = dict(columns or {})
    for reserved in ("x", "y"):
        if reserved in cols:
            raise ValueError(f"column name {reserved!r} is reserved for the coordinates")
    # "+ 0.0" turns -0.0 (from rounding tiny negatives) into 0.0.
    data: dict[str, Any] = {"x": np.round(p[:, 0], precision) + 0.0, "y": np.round(p[:, 1], precision) + 0.0}
    data.update(_rounded_columns(cols, len(p), value_precision))
    with atomic_write(path, "w", newline="") as f:
        pd.DataFrame(data).to_csv(f, index=False, lineterminator="\n")
    return Path(path)


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
    import pandas as pd

    cols = dict(columns)
    if not cols:
        raise ValueError("give at least one column")
    n = len(np.asarray(next(iter(cols.values()))))
    data = _rounded_columns(cols, n, value_precision)
    with atomic_write(path, "w", newline="") as f:
        pd.DataFrame(data).to_csv(f, index=False, lineterminator="\n")
    return Path(path)


# --------------------------------------------------------------------------- label TIFF


def write_label_tiff(path: str | os.PathLike[str], labels: Any) -> Path:
    """Write an (H, W) instance label image as a uint16 TIFF (zlib), atomically.

    Parameters
    ----------
    path : str or PathLike
        Output ``.tif``; parent folders created.
    labels : (H, W) array_like of int
        0 = background; values must lie in 0..65535 (:data:`UINT16_MAX_LABEL`).

    Raises
    ------
    ValueError
        Not a 2-D integer image, negative labels or labels above 65535 (nothing is written:
        a uint16 file would wrap them round silently).
    """
    import tifffile

    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise ValueError(f"labels must be an (H, W) integer image, got {arr.dtype} {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > UINT16_MAX_LABEL):
        raise ValueError(
            f"labels must lie in 0..{UINT16_MAX_LABEL} for a uint16 TIFF, got {int(arr.min())}..{int(arr.max())}"
        )
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr.astype(np.uint16), compression="zlib", photometric="minisblack")
    return Path(path)


# --------------------------------------------------------------------------- GeoJSON


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


def write_geojson(
    path: str | os.PathLike[str], features: Iterable[Mapping[str, Any]], *, chunk: int = 4096
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
        f.write('{"type":"FeatureCollection","features":[')
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


# --------------------------------------------------------------------------- overlay


def _as_rgb8(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.stack([a, a, a], axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {np.shape(image)}")
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        return a.copy()
    if np.issubdtype(a.dtype, np.floating):
        return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {a.dtype}")


def _marker_offsets(marker: str, radius: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage.draw import circle_perimeter

    if radius == 0:
        return np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp)
    if marker == "ring":
        rr, cc = circle_perimeter(0, 0, radius)
        return rr.astype(np.intp), cc.astype(np.intp)
    if marker == "cross":
        arm = np.arange(-radius, radius + 1, dtype=np.intp)
        zero = np.zeros_like(arm)
        return np.concatenate([arm, zero]), np.concatenate([zero, arm])
    raise ValueError(f"marker must be 'ring' or 'cross', got {marker!r}")


def write_overlay(
    path: str | os.PathLike[str],
    image: Any,
    points: Any = None,
    *,
    classes: Sequence[Any] | None = None,
    colors: Mapping[Any, Sequence[int]] | None = None,
    radius: int = 4,
    polygons: Sequence[Any] | None = None,
    marker: str = "ring",
) -> Path:
    """Write an RGB PNG of ``image`` with a marker at each point and optional outlines.

    Parameters
    ----------
    path : str or PathLike
        Output PNG; written atomically, parent folders created.
    image : (H, W[, C]) ndarray
        uint8, or float in [0, 1] (clipped); grey is repeated to RGB, alpha dropped.
    points : (N, 2) array_like or None
        (x, y) 0-based pixel-centre coordinates in ``image``'s pixels; the marker is centred
        on the nearest pixel. Parts of markers outside the image are clipped.
    classes : (N,) sequence or None
        Class label per object (of the points, or of the polygons when there are no points);
        coloured by :func:`class_colors`. Without classes everything is green.
    colors : mapping or None
        Class label → (r, g, b).
    radius : int
        Marker radius in pixels (0: a single pixel).
    polygons : sequence of (K, 2) array_like, or None
        Outlines as (x, y) vertices; with points, they describe the same N objects.
    marker : {"ring", "cross"}
        Marker shape.

    Returns
    -------
    Path
        ``path``.
    """
    from PIL import Image
    from skimage.draw import polygon_perimeter

    rgb = _as_rgb8(image)
    h, w = rgb.shape[:2]
    radius = int(radius)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    p = _as_points(points) if points is not None else None
    rings = _as_polygons(polygons) if polygons is not None else None
    n = len(p) if p is not None else (len(rings) if rings is not None else 0)
    if p is not None and rings is not None and len(rings) != len(p):
        raise ValueError(f"{len(p)} points but {len(rings)} polygons; they must describe the same objects")
    if classes is not None:
        labels = list(classes)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} classes for {n} objects")
        color = class_colors(labels, colors)
    else:
        color = np.tile(np.array(_DEFAULT_POINT_COLOR, dtype=np.uint8), (n, 1))

    if rings is not None:
        for ring, c in zip(rings, color):  # per outline, not per pixel
            rr, cc = polygon_perimeter(ring[:, 1], ring[:, 0])
            keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            rgb[rr[keep], cc[keep]] = c
    if p is not None and len(p):
        dr, dc = _marker_offsets(marker, radius)
        rows = np.rint(p[:, 1]).astype(np.intp)[:, None] + dr[None, :]  # (N, M)
        cols = np.rint(p[:, 0]).astype(np.intp)[:, None] + dc[None, :]
        keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        which = np.broadcast_to(np.arange(len(p))[:, None], rows.shape)
        rgb[rows[keep], cols[keep]] = color[which[keep]]
    with atomic_write(path, "wb") as f:
        Image.fromarray(rgb).save(f, format="PNG")
    return Path(path)
