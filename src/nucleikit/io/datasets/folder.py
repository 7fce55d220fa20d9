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

from ...errors import ConfigError, InputError
from ..labels import LABEL_SUFFIXES
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
#: A label image is named ``<stem>_labels.png|.tif|.tiff``: the name ``nucleikit
#: segment`` writes, so that corrected results can be trained on as they are.
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
    from ..points import check_points_in_image, clip_points_to_image, read_points

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
        xy, clipped = clip_points_to_image(xy, img.pixels.shape[:2])  # less than 1 px outside: onto the image
        samples.append(PointSample(id=path.stem, image_path=path, points=xy, mpp=float(image_mpp), classes=None,
                                   clipped=int(clipped)))
    return samples


# =============================================================================
# Instance labels or outlines (segmentation)
# =============================================================================


def label_folder(
    images_dir: str | Path,
    *,
    label_dir: str | Path | None = None,
    mpp: float | None = None,
    allow_empty: bool = False,
) -> list[LabelSample]:
    """Samples for every image in ``images_dir`` paired with its instance labels or outlines.

    Every file is read and checked here, so that a bad one stops a training
    run before anything is written; ``load_labels()`` builds the labels again
    when training needs them (the label images of a data set need not fit in
    memory together).

    Parameters
    ----------
    images_dir : path
        Folder of images ``<stem>.png|tif|tiff|jpg|jpeg|bmp`` (any case).
        Files named ``<anything>_labels.png|tif|tiff`` are label images, never
        training images.
    label_dir : path or None
        Where the annotations are; default: beside the images (a
        ``label_dir`` that is ``images_dir`` means the same).
    mpp : float or None
        Resolution of the images in um/px. None reads it from each image's
        metadata; an image without one gets ``mpp=None`` and is used at its
        own resolution (as the DSB2018 models are trained).
    allow_empty : bool
        Accept annotations holding no nucleus (an all-zero label image, a
        GeoJSON file without features, or outlines covering no pixel centre)
        as images without nuclei. By default they are an error: an empty
        annotation more often means a failed export than nucleus-free tissue.
        An image with *no* annotation file is always an error.

    Returns
    -------
    list of LabelSample
        Sorted by image name; ``id`` is the image stem, ``mpp`` as above;
        ``load_labels()`` gives (H, W) int32 labels of the image's (H, W)
        pixels, 0 = background.

    Raises
    ------
    InputError
        One line naming the file, for any broken rule below.

    Notes
    -----
    **Annotations.** Each image ``<stem>.<ext>`` needs exactly one of:

    - an instance label image ``<stem>_labels.png|tif|tiff``: one channel of
      8-, 16- or 32-bit integers (uint8, uint16, int32, ...), 0 = background,
      one positive integer per nucleus (numbers need not be consecutive). In
      ``label_dir`` it may also be named ``<stem>.png|tif|tiff``;
    - QuPath polygons ``<stem>.geojson``: a FeatureCollection (or a list of
      Features) of Polygon or MultiPolygon features in QuPath's pixel
      coordinates, where the top-left *corner* of the image is (0, 0) (a
      QuPath cell's ``nucleusGeometry`` is used instead of its cell outline).
      Feature ``k`` (1-based, file order) becomes nucleus ``k``; the parts of
      a MultiPolygon are one nucleus; holes are ignored. A pixel belongs to a
      polygon when its centre lies inside it.

    **Rules** (each broken one is an :class:`~nucleikit.errors.InputError`):

    - no annotation for an image, or more than one (e.g. both
      ``a_labels.tif`` and ``a.geojson``);
    - two images with the same stem (``a.png`` and ``a.tif``): the stem pairs
      an image with its annotation and names the sample;
    - beside the images: an annotation without an image (a misspelt name
      would otherwise drop an image's nuclei silently). A separate
      ``label_dir`` may hold more annotations than there are images (one
      folder for training and validation images);
    - a label image of another size than its image, with more than one
      channel (RGB), with non-integer (float) or negative samples;
    - a label image holding a single value over several separate blobs: a
      binary mask, not instance labels;
    - a polygon feature entirely outside the image (outlines of another
      image or whole-slide coordinates). A feature *partly* outside is
      clipped to the image;
    - an empty annotation, unless ``allow_empty``.

    **Overlapping polygons**: the later feature in the file wins the shared
    pixels (PROTOCOL.md's DSB2018 convention, :func:`~nucleikit.io.labels.polygons_to_labels`);
    a feature hidden entirely by later ones leaves no pixels. Label images
    cannot overlap.
    """
    from ..images import read_image

    if mpp is not None and not mpp > 0:
        raise ConfigError(f"mpp must be positive, got {mpp}")
    images_dir = Path(images_dir)
    images = [p for p in find_images(images_dir) if not _is_label_file(p)]
    if not images:
        raise InputError(images_dir, "no images (png, tif, bmp, jpg) in this folder")
    _check_unique_stems(images)
    separate = label_dir is not None and Path(label_dir).resolve() != images_dir.resolve()
    folder = Path(label_dir) if separate else images_dir
    if not folder.is_dir():
        raise InputError(folder, "label folder not found" if not folder.exists() else "not a folder")
    files = _annotation_index(folder)
    if not separate:
        _check_orphans(images, files)
    # Pair every image first: a missing or doubled file name is reported
    # before any image is decoded.
    pairs = [(image, _annotation_file(image, files, folder, separate)) for image in images]
    samples = []
    for image, annotation in pairs:
        data = read_image(image)
        shape = data.pixels.shape[:2]
        build = _label_image_labels if annotation.suffix.lower() in LABEL_SUFFIXES else _outline_labels
        load = partial(build, annotation, image.name, shape, allow_empty)
        load()  # every check now; the labels themselves are rebuilt when training asks
        samples.append(LabelSample(image.stem, image, load, mpp if mpp is not None else data.mpp))
    return samples


def _is_label_file(path: Path) -> bool:
    return path.suffix.lower() in LABEL_SUFFIXES and path.stem.endswith(LABEL_TAG)


def _check_unique_stems(images: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in images:
        if path.stem in seen:
            raise InputError(path, f"same name as {seen[path.stem].name}: one image per stem "
                                   "(the stem pairs an image with its annotation)")
        seen[path.stem] = path


def _annotation_index(folder: Path) -> dict[tuple[str, str], list[Path]]:
    """Label and GeoJSON files of ``folder`` by (stem, lower-case suffix).

    Lists, not single paths: ``a_labels.TIF`` and ``a_labels.tif`` can both
    exist on a case-sensitive file system and must be reported as two.
    """
    index: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.is_file() and (suffix in LABEL_SUFFIXES or suffix == OUTLINE_SUFFIX):
            index.setdefault((path.stem, suffix), []).append(path)
    return index


def _annotation_names(stem: str, separate: bool) -> list[tuple[str, str]]:
    names = [(stem + LABEL_TAG, suffix) for suffix in LABEL_SUFFIXES] + [(stem, OUTLINE_SUFFIX)]
    if separate:  # beside the images <stem>.png is the image itself
        names += [(stem, suffix) for suffix in LABEL_SUFFIXES]
    return names


def _annotation_file(image: Path, files: dict, folder: Path, separate: bool) -> Path:
    found = [path for name in _annotation_names(image.stem, separate) for path in files.get(name, [])]
    if not found:
        expected = f"{image.stem}{LABEL_TAG}.png|tif|tiff or {image.stem}{OUTLINE_SUFFIX}"
        if separate:
            expected = f"{image.stem}.png|tif|tiff, " + expected
        raise InputError(image, f"no annotation: expected {expected} in {folder}")
    if len(found) > 1:
        raise InputError(image, f"several annotations ({', '.join(p.name for p in found)}): keep one")
    return found[0]


def _check_orphans(images: list[Path], files: dict) -> None:
    stems = {path.stem for path in images}
    for (stem, suffix), paths in files.items():
        if suffix == OUTLINE_SUFFIX:
            owner = stem
        elif stem.endswith(LABEL_TAG):
            owner = stem[: -len(LABEL_TAG)]
        else:
            continue  # a PNG or TIFF not named as a label image is an image
        if owner not in stems:
            raise InputError(paths[0], f"annotation without an image: no {owner}.png|tif|tiff|jpg|bmp beside it")


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]} x {shape[0]}"


def _empty(path: Path, what: str) -> InputError:
    return InputError(path, f"{what}; images without nuclei must be allowed explicitly (--allow-empty)")


def _check_not_a_mask(path: Path, labels: np.ndarray) -> None:
    """Refuse a binary mask: one value over several separate blobs cannot be instance labels."""
    from scipy import ndimage

    foreground = labels > 0
    top = labels.max(initial=0)
    if top == 0 or not np.all(labels[foreground] == top):
        return
    # 8-connected, so that a nucleus touching itself only diagonally is one piece
    _, pieces = ndimage.label(foreground, structure=np.ones((3, 3), bool))
    if pieces > 1:
        raise InputError(path, f"one value ({top}) over {pieces} separate blobs: a binary mask, not instance "
                               "labels (give each nucleus its own integer)")


def _label_image_labels(path: Path, image_name: str, shape: tuple[int, int], allow_empty: bool) -> np.ndarray:
    """(H, W) int32 labels of a checked label image (see :func:`label_folder`)."""
    from ..labels import read_label_image

    labels = read_label_image(path)
    if labels.shape != tuple(shape):
        raise InputError(path, f"label image is {_size(labels.shape)} pixels but its image {image_name} is "
                               f"{_size(shape)} (W x H)")
    _check_not_a_mask(path, labels)
    if not allow_empty and not labels.any():
        raise _empty(path, "no nucleus (every pixel is 0)")
    return labels


def _outline_labels(path: Path, image_name: str, shape: tuple[int, int], allow_empty: bool) -> np.ndarray:
    """(H, W) int32 labels rasterised from checked QuPath outlines (see :func:`label_folder`)."""
    from ..labels import read_geojson_outlines

    outlines = read_geojson_outlines(path, allow_empty=True)
    if not outlines and not allow_empty:
        raise _empty(path, "no nucleus outlines (no features)")
    _check_outlines_in_image(path, outlines, image_name, shape)
    labels = _outlines_to_labels(outlines, shape)
    if not allow_empty and not labels.any():
        raise _empty(path, "the outlines cover no pixel centre")
    return labels


def _check_outlines_in_image(path: Path, outlines: list[list[np.ndarray]], image_name: str,
                             shape: tuple[int, int]) -> None:
    from ..points import QUPATH_PIXEL_OFFSET

    height, width = shape
    for number, rings in enumerate(outlines, start=1):
        low = np.array([ring.min(axis=0) for ring in rings])
        high = np.array([ring.max(axis=0) for ring in rings])
        # Pixel centres run from 0 to W - 1, so the image's pixels cover
        # (-0.5, W - 0.5); a ring whose box misses that range covers nothing.
        outside = (high <= -0.5).any(axis=1) | (low >= np.array([width, height]) - 0.5).any(axis=1)
        if outside.all():
            (x0, y0), (x1, y1) = low.min(axis=0) + QUPATH_PIXEL_OFFSET, high.max(axis=0) + QUPATH_PIXEL_OFFSET
            raise InputError(path, f"feature {number} lies entirely outside the {_size(shape)} image {image_name} "
                                   f"(x {x0:g}..{x1:g}, y {y0:g}..{y1:g} in QuPath pixels): outlines of another "
                                   "image, or whole-slide coordinates?")


def _outlines_to_labels(outlines: list[list[np.ndarray]], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise outlines grouped by feature: feature ``k`` (0-based) gets label ``k + 1``.

    Parameters
    ----------
    outlines : list of list of (K, 2) ndarray
        Per feature, its rings as (x, y) 0-based pixel centres
        (:func:`nucleikit.io.labels.read_geojson_outlines`).
    shape : (H, W) ints

    Returns
    -------
    (H, W) ndarray of int32
        A pixel belongs to a ring when its centre is inside; all rings of a
        feature share its label; where features overlap the later one wins;
        parts outside the image are clipped.
    """
    from ..labels import polygons_to_labels

    rings = [ring for parts in outlines for ring in parts]
    counts = np.array([len(parts) for parts in outlines], dtype=np.intp)
    owner = np.repeat(np.arange(1, len(outlines) + 1, dtype=np.int32), counts)
    # polygons_to_labels numbers rings 1..R in order, so later features still
    # win; the lookup then gives every ring its feature's label.
    lookup = np.concatenate([np.zeros(1, np.int32), owner])
    return lookup[polygons_to_labels(rings, shape)]
