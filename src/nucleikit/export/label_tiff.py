"""Instance label images as uint16 TIFF (what napari opens as a labels layer)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_path
from .registry import ImageOutput, Writer, register_writer

__all__ = ["UINT16_MAX_LABEL", "write_label_tiff"]

#: Largest label a uint16 label TIFF holds.
UINT16_MAX_LABEL = 65535


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


# --------------------------------------------------------------------------- registry


def _image_labels(path: Path, output: ImageOutput) -> Path:
    return write_label_tiff(path, output.labels)


# Untagged: only ``segment`` writes label images, and evaluation and training read <stem>_labels.tif.
register_writer(Writer("labels", "_labels.tif", write_image=_image_labels, tagged=False))
