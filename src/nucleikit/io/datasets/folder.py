"""A user's own annotated images: a folder of images with annotation files beside them.

Points (:func:`point_folder`, detection): ``DIR/<stem>.<image suffix>`` with
``<stem>.csv``, ``<stem>.geojson``, ``<stem>.json`` or ``<stem>.mat`` in the
same folder or in ``points_dir``. Images without a point file are an error (a
silently skipped image would bias training and evaluation);
``allow_unannotated=True`` treats them as images with no nuclei instead.

Outlines (:func:`label_folder`, segmentation): ``DIR/<stem>.<image suffix>``
with an instance label image ``<stem>_labels.<png|tif|tiff>`` or QuPath
polygons ``<stem>.geojson`` beside it (or in ``label_dir``); see
:func:`label_folder` for every rule.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ...errors import InputError
from .base import LabelSample, PointSample

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_TAG",
    "OUTLINE_SUFFIX",
    "POINT_SUFFIXES",
    "find_images",
    "label_folder",
    "point_folder",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
POINT_SUFFIXES = (".csv", ".geojson", ".json", ".mat")
#: A label image beside its image is named ``<stem>` + LABEL_TAG + ``.png|.tif|.tiff``
#: (the name ``nucleikit segment`` writes, so corrected results can be trained on).
LABEL_TAG = "_labels"
#: Suffix of QuPath GeoJSON outlines: ``<stem>.geojson``.
OUTLINE_SUFFIX = ".geojson"


def find_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _point_file(stem: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for suffix in POINT_SUFFIXES:
            for name in (stem + suffix, stem + "_detection" + suffix):
                p = folder / name
                if p.is_file():
                    return p
    return None


def point_folder(
    images_dir: str | Path,
    *,
    points_dir: str | Path | None = None,
    mpp: float | None = None,
    allow_unannotated: bool = False,
) -> list[PointSample]:
    """Samples for every image in ``images_dir`` paired with its point file.

    Parameters
    ----------
    images_dir : path
        Folder of images (PNG, TIFF, BMP, JPEG).
    points_dir : path or None
        Where the point files are; default: beside the images.
    mpp : float or None
        Resolution of the images in um/px; None reads it from each image's
        metadata and fails if it is missing (training needs a resolution).
    allow_unannotated : bool
        Accept images without a point file as images with no nuclei.

    Returns
    -------
    list of PointSample, sorted by image name.
    """
    from ..images import read_image
    from ..points import check_points_in_image, read_points

    images = find_images(images_dir)
    if not images:
        raise InputError(images_dir, "no images (png, tif, bmp, jpg) in this folder")
    folders = [Path(points_dir)] if points_dir is not None else [Path(images_dir)]
    samples = []
    for path in images:
        pfile = _point_file(path.stem, folders)
        if pfile is None and not allow_unannotated:
            raise InputError(path, f"no point file ({', '.join(POINT_SUFFIXES)}) named {path.stem} in {folders[0]}")
        img = read_image(path)
        image_mpp = mpp if mpp is not None else img.mpp
        if image_mpp is None:
            raise InputError(path, "resolution unknown: give the microns per pixel (--mpp)")
        xy = np.zeros((0, 2)) if pfile is None else read_points(pfile, allow_empty=True).xy
        check_points_in_image(xy, img.pixels.shape[:2], pfile or path)
        samples.append(PointSample(id=path.stem, image_path=path, points=xy, mpp=float(image_mpp), classes=None))
    return samples
