"""Checks and colours shared by the writers (points, columns, outlines, class colours)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_CLASS_COLORS", "class_colors"]

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
