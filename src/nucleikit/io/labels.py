"""Instance label images: read them, and build them from masks or polygons.

A label image is an (H, W) int32 array: 0 is background, each nucleus is the
set of pixels carrying one positive integer. Label numbers need not be
consecutive. Row ``r``, column ``c`` is the pixel centred on (x, y) = (c, r).

Building a label image from several instances (binary masks, RLE rows,
polygons) follows PROTOCOL.md section 2: instance ``k`` (0-based, in file or
row order) gets label ``k + 1`` and **where instances overlap, the later one
wins**. An instance hidden entirely by later ones therefore leaves its label
unused (never the case in DSB2018, whose worst overlap is 2 pixels);
:func:`count_overlaps` counts the contested pixels.

- :func:`read_label_image`: a PNG or TIFF label image (uint8, uint16, int32, ...).
- :func:`read_mask_folder`: the Kaggle layout, one binary mask PNG per nucleus
  in ``masks/``, taken in file-name order.
- :func:`masks_to_labels`, :func:`labels_from_indices`: masks or flat pixel
  indices -> labels.
- :func:`polygons_to_labels`, :func:`read_geojson_polygons`: outlines (x, y)
  -> labels; QuPath GeoJSON polygons (QuPath's half-pixel offset removed);
  :func:`read_geojson_outlines` keeps them grouped by feature.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nucleikit.errors import InputError, missing_reason
from nucleikit.io.images import MAX_PIXELS
from nucleikit.io.points import QUPATH_PIXEL_OFFSET, _features, _read_text

__all__ = [
    "LABEL_SUFFIXES",
    "count_overlaps",
    "labels_from_indices",
    "masks_to_labels",
    "polygons_to_labels",
    "read_geojson_outlines",
    "read_geojson_polygons",
    "read_label_image",
    "read_mask_folder",
]

#: File suffixes read by :func:`read_label_image` (lower case).
LABEL_SUFFIXES = (".png", ".tif", ".tiff")

_INT32_MAX = np.iinfo(np.int32).max
# Pillow modes holding one integer per pixel; "P" is read as its palette indices.
_PILLOW_LABEL_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B")


# =============================================================================
# Reading label images
# =============================================================================


def read_label_image(path: str | Path) -> np.ndarray:
    """Read an instance label image from a PNG or TIFF file.

    Parameters
    ----------
    path : str or Path
        A single-channel image of integers: 8- or 16-bit PNG (a palette PNG
        gives its palette *indices*, as label PNGs are often saved for
        display), or a TIFF of bool, (u)int8, (u)int16, int32 or uint32 samples
        (singleton axes are squeezed away). 0 is background.

    Returns
    -------
    (H, W) ndarray of int32

    Raises
    ------
    InputError
        Missing file, unsupported suffix, more than one channel (e.g. RGB),
        float or other non-integer samples, negative labels, labels above
        2**31 - 1, more than :data:`~nucleikit.io.images.MAX_PIXELS` pixels,
        or a file that cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing_reason(path) if not path.exists() else "not a file")
    suffix = path.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        supported = ", ".join(LABEL_SUFFIXES)
        raise InputError(path, f"unsupported label image format {suffix or '(no suffix)'!r} (supported: {supported})")
    array = _read_tiff_labels(path) if suffix in (".tif", ".tiff") else _read_png_labels(path)
    return _to_int32_labels(path, array)


def _read_png_labels(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path, formats=("PNG",))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, "cannot be decoded as a PNG image (damaged or not an image)") from exc
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InputError(path, f"label image of {width} x {height} pixels exceeds the limit of {MAX_PIXELS:,}")
        if image.mode not in _PILLOW_LABEL_MODES:
            raise InputError(
                path,
                f"a label image needs one channel of integers, not Pillow mode {image.mode!r} "
                "(save labels as 8/16-bit grey)",
            )
        try:
            array = np.asarray(image)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(path, f"truncated or damaged PNG file ({exc})") from exc
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _read_tiff_labels(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(path, "TIFF file holds no image")
            series = tif.series[0]
            if int(np.prod(series.shape)) > MAX_PIXELS:
                reason = f"label image of shape {series.shape} exceeds the limit of {MAX_PIXELS:,} pixels"
                raise InputError(path, reason)
            axes, shape = series.get_axes(False), tuple(series.get_shape(False))
            # Only length-1 axes besides Y and X are allowed (squeezing them all
            # would turn a 1 x N image into a 1-D array).
            extra = [n for a, n in zip(axes, shape) if a not in "YX"]
            if "Y" not in axes or "X" not in axes or any(n != 1 for n in extra) or 0 in shape:
                raise InputError(path, f"a label image must be 2-D (one channel), got axes {axes} of shape {shape}")
            array = series.asarray().reshape(shape[axes.index("Y")], shape[axes.index("X")])
    except InputError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, KeyError, IndexError, RuntimeError) as exc:
        raise InputError(path, f"truncated or damaged TIFF file ({exc})") from exc
    return array


def _to_int32_labels(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2:
        raise InputError(path, f"a label image must be 2-D (one channel), got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.int32)
    if array.dtype.kind not in "iu" or array.dtype.itemsize > 4:
        raise InputError(path, f"label image has {array.dtype.name} samples; labels must be 8/16/32-bit integers")
    if array.size and array.dtype.kind == "i" and array.min() < 0:
        raise InputError(path, f"label image has negative labels (down to {array.min()})")
    if array.size and array.dtype == np.uint32 and array.max() > _INT32_MAX:
        raise InputError(path, f"label {array.max()} exceeds the int32 range")
    return np.ascontiguousarray(array, dtype=np.int32)


# =============================================================================
# Instances -> label image
# =============================================================================


def labels_from_indices(indices: Sequence[np.ndarray], shape: Sequence[int]) -> np.ndarray:
    """Label image from the flat pixel indices of each instance.

    Parameters
    ----------
    indices : sequence of (K_i,) int arrays
        Row-major flat indices (``row * W + col``) of each instance's pixels.
    shape : (H, W) ints

    Returns
    -------
    (H, W) ndarray of int32
        Instance ``k`` has label ``k + 1``; where instances overlap the later
        one (the higher label) wins.

    Raises
    ------
    ValueError
        An index outside ``[0, H * W)``.
    """
    height, width = (int(v) for v in shape)
    flat = np.zeros(height * width, dtype=np.int32)
    if len(indices) == 0:
        return flat.reshape(height, width)
    sizes = [len(index) for index in indices]
    pixels = np.concatenate([np.asarray(index, dtype=np.int64).reshape(-1) for index in indices])
    if pixels.size and (pixels.min() < 0 or pixels.max() >= flat.size):
        raise ValueError(f"pixel index outside the {width} x {height} (W x H) image")
    values = np.repeat(np.arange(1, len(indices) + 1, dtype=np.int32), sizes)
    # "Later wins" is "highest label wins"; maximum.at states it exactly
    # (plain fancy assignment leaves repeated indices in unspecified order).
    np.maximum.at(flat, pixels, values)
    return flat.reshape(height, width)


def _mask_indices(
    masks: Iterable[Any], source: str, shape: Sequence[int] | None, names: Sequence[str] | None = None
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Flat indices of each mask, after checking shapes and emptiness."""
    indices: list[np.ndarray] = []
    expected = None if shape is None else (int(shape[0]), int(shape[1]))
    for k, mask in enumerate(masks):
        where = names[k] if names is not None else source
        what = "mask" if names is not None else f"mask {k + 1}"
        array = np.asarray(mask)
        if array.ndim != 2:
            raise InputError(where, f"{what} must be (H, W), got shape {array.shape}")
        if expected is None:
            expected = array.shape
        elif array.shape != expected:
            size = f"{array.shape[1]} x {array.shape[0]} (W x H)"
            raise InputError(where, f"{what} is {size}, the image is {expected[1]} x {expected[0]}")
        pixels = np.flatnonzero(array)
        if pixels.size == 0:
            raise InputError(where, f"{what} is empty (a nucleus without pixels)")
        indices.append(pixels)
    if expected is None:
        raise InputError(source, "no masks, and no shape to make an empty label image")
    return indices, expected


def masks_to_labels(
    masks: Iterable[Any],
    *,
    source: str | Path = "<masks>",
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Label image from binary masks, one nucleus each.

    Parameters
    ----------
    masks : iterable of (H, W) array_like
        Foreground where non-zero; in file/row order. A generator is fine
        (one mask is held at a time, plus the pixel indices of all).
    source : str or Path
        Names the masks in error messages (file, or file and row).
    shape : (H, W) ints, optional
        Expected shape; required when there may be no mask at all.

    Returns
    -------
    (H, W) ndarray of int32
        Mask ``k`` has label ``k + 1``; where masks overlap the later one wins.

    Raises
    ------
    InputError
        A mask that is not 2-D, has another shape than the others (or than
        ``shape``), or is empty; no masks and no ``shape``.
    """
    indices, size = _mask_indices(masks, str(source), shape)
    return labels_from_indices(indices, size)


def count_overlaps(masks: Iterable[Any], *, shape: Sequence[int] | None = None) -> int:
    """Number of pixels covered by two or more of the masks.

    Parameters
    ----------
    masks : iterable of (H, W) array_like
        Foreground where non-zero.
    shape : (H, W) ints, optional
        As in :func:`masks_to_labels`.

    Returns
    -------
    int
        0 when the masks are disjoint (then :func:`masks_to_labels` loses
        nothing); otherwise the pixels where a later mask replaced an earlier one.
    """
    indices, (height, width) = _mask_indices(masks, "<masks>", shape)
    if not indices:
        return 0
    cover = np.bincount(np.concatenate(indices), minlength=height * width)
    return int(np.count_nonzero(cover > 1))


def read_mask_folder(folder: str | Path, *, shape: Sequence[int] | None = None) -> np.ndarray:
    """Label image from a Kaggle ``masks/`` folder (one binary PNG per nucleus).

    Parameters
    ----------
    folder : str or Path
        The ``masks`` folder, e.g. ``stage1_train/<ImageId>/masks``. Its
        ``.png``/``.tif``/``.tiff`` files are taken **sorted by file name**;
        other files are ignored. Foreground is any non-zero value (Kaggle
        masks hold {0, 255}).
    shape : (H, W) ints, optional
        The image's shape; by default the first mask's.

    Returns
    -------
    (H, W) ndarray of int32
        The ``k``-th mask in name order has label ``k + 1``; where masks
        overlap the later one wins.

    Raises
    ------
    InputError
        Not a folder; no mask files; a mask whose size differs from the image
        (or the first mask), an empty mask, or an unreadable one (each names
        the mask file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "mask folder not found" if not folder.exists() else "not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LABEL_SUFFIXES)
    if not files:
        raise InputError(folder, f"no mask images ({', '.join(LABEL_SUFFIXES)}) in this folder")
    masks = (read_label_image(path) for path in files)
    indices, size = _mask_indices(masks, str(folder), shape, names=[str(p) for p in files])
    return labels_from_indices(indices, size)


# =============================================================================
# Polygons -> label image
# =============================================================================


def polygons_to_labels(polygons: Sequence[Any], shape: Sequence[int]) -> np.ndarray:
    """Rasterise polygons into a label image.

    Parameters
    ----------
    polygons : sequence of (K_i, 2) array_like of float
        Outlines as (x, y) vertices, 0-based pixel centres (x = column,
        y = row), K_i >= 3, open or closed (first vertex repeated).
    shape : (H, W) ints

    Returns
    -------
    (H, W) ndarray of int32
        Polygon ``k`` has label ``k + 1``; where polygons overlap the later
        one wins. A pixel belongs to a polygon when its centre lies inside it
        (``skimage.draw.polygon``); parts outside the image are clipped, so a
        polygon entirely outside leaves its label unused.

    Raises
    ------
    ValueError
        A polygon that is not (K, 2) with K >= 3 or has non-finite vertices.
    """
    from skimage.draw import polygon

    height, width = (int(v) for v in shape)
    labels = np.zeros((height, width), dtype=np.int32)
    for k, vertices in enumerate(polygons):
        xy = np.asarray(vertices, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 3:
            raise ValueError(f"polygon {k + 1} must be (K, 2) with K >= 3 vertices, got shape {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError(f"polygon {k + 1} has non-finite vertices")
        rows, cols = polygon(xy[:, 1], xy[:, 0], shape=(height, width))
        labels[rows, cols] = k + 1  # sequential: the later polygon wins
    return labels


def read_geojson_outlines(path: str | Path, *, allow_empty: bool = False) -> list[list[np.ndarray]]:
    """Read nucleus outlines from a QuPath GeoJSON file, grouped by feature.

    Parameters
    ----------
    path : str or Path
        As in :func:`read_geojson_polygons`.
    allow_empty : bool
        Return ``[]`` for a file without features instead of raising.

    Returns
    -------
    list of list of (K, 2) ndarray of float64
        One entry per feature, in file order (entry ``i`` is "feature
        ``i + 1``" in error messages): its rings, one for a Polygon and one
        per part for a MultiPolygon. Rings as in :func:`read_geojson_polygons`
        ((x, y), 0-based pixel centres, open). Keeping the grouping lets a
        caller give all parts of one nucleus one label and name the feature
        an outline came from.

    Raises
    ------
    InputError
        As :func:`read_geojson_polygons`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing_reason(path) if not path.exists() else "not a file")
    text = _read_text(path)
    if not text.strip():
        features: list[dict] = []
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        features = _features(path, data)
    outlines: list[list[np.ndarray]] = []
    for number, feature in enumerate(features, start=1):
        properties = feature.get("properties") or {}
        geometry = properties.get("nucleusGeometry") or feature.get("geometry")
        if not isinstance(geometry, dict) or "type" not in geometry:
            raise InputError(path, f"invalid GeoJSON: feature {number} has no geometry")
        kind = geometry["type"]
        if kind == "Polygon":
            rings = [_exterior(path, number, geometry.get("coordinates"))]
        elif kind == "MultiPolygon":
            parts = geometry.get("coordinates")
            if not isinstance(parts, list) or not parts:
                raise InputError(path, f"invalid GeoJSON: feature {number} has an empty MultiPolygon")
            rings = [_exterior(path, number, part) for part in parts]
        else:
            raise InputError(path, f"feature {number} has geometry {kind!r}, not a Polygon or MultiPolygon")
        outlines.append([ring - QUPATH_PIXEL_OFFSET for ring in rings])
    if not outlines and not allow_empty:
        raise InputError(path, "file holds no polygons")
    return outlines


def read_geojson_polygons(path: str | Path, *, allow_empty: bool = False) -> list[np.ndarray]:
    """Read nucleus outlines from a QuPath GeoJSON file.

    Parameters
    ----------
    path : str or Path
        A FeatureCollection, a Feature or a list of Features (``.geojson`` or
        ``.json``). A QuPath cell's ``properties.nucleusGeometry`` is taken
        instead of its (cell) ``geometry``. A Polygon gives its exterior ring
        (holes are ignored: nuclei have none); each part of a MultiPolygon
        becomes a polygon of its own (:func:`read_geojson_outlines` keeps the
        parts of a feature together).
    allow_empty : bool
        Return ``[]`` for a file without features instead of raising.

    Returns
    -------
    list of (K, 2) ndarray of float64
        (x, y) vertices, 0-based pixel centres: QuPath's coordinates minus
        :data:`~nucleikit.io.points.QUPATH_PIXEL_OFFSET` (0.5), the offset
        :mod:`nucleikit.export` adds. Rings are returned **open** (GeoJSON's
        repeated closing vertex dropped), as :func:`nucleikit.export.qupath_features`
        expects them. Feature order is kept.

    Raises
    ------
    InputError
        Missing file, invalid JSON or GeoJSON, a feature without a polygon
        geometry (e.g. a Point), a ring with fewer than 3 distinct vertices or
        non-finite coordinates, no features (unless ``allow_empty``).
    """
    return [ring for rings in read_geojson_outlines(path, allow_empty=allow_empty) for ring in rings]


def _exterior(path: Path, number: int, rings: Any) -> np.ndarray:
    """The exterior ring of one GeoJSON polygon, open, as (K, 2) float64."""
    try:
        ring = np.asarray([position[:2] for position in rings[0]], dtype=np.float64)
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise InputError(path, f"invalid GeoJSON: feature {number} has bad polygon coordinates ({exc})") from exc
    if ring.ndim != 2 or ring.shape[1] != 2 or not np.isfinite(ring).all():
        raise InputError(path, f"invalid GeoJSON: feature {number} has bad polygon coordinates")
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    if len(np.unique(ring, axis=0)) < 3:
        raise InputError(path, f"invalid GeoJSON: feature {number} has a polygon with fewer than 3 distinct vertices")
    return ring
