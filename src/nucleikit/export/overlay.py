"""Overlay PNGs: the image with a marker on each nucleus and/or its outline."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._common import _as_points, _as_polygons, class_colors
from .files import atomic_write
from .registry import ImageOutput, Writer, register_writer

__all__ = ["write_overlay"]

_DEFAULT_POINT_COLOR = (0, 255, 0)


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


# --------------------------------------------------------------------------- registry


def _image_overlay(path: Path, output: ImageOutput) -> Path:
    n = output.nuclei
    points = None if n.outlines is not None else n.xy  # outlined nuclei: the outline, no ring
    return write_overlay(path, output.pixels, points, classes=n.classes, polygons=n.outlines)


register_writer(Writer("overlay", "_overlay.png", write_image=_image_overlay))
