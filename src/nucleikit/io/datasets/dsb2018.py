"""2018 Data Science Bowl, stage 1 (Caicedo et al. 2019): nucleus instance segmentation.

Layout (``root`` = ``shared/data/dsb2018``; see its README)::

    stage1_train/<ImageId>/images/<ImageId>.png   670 images
    stage1_train/<ImageId>/masks/<MaskId>.png     one binary mask per nucleus (10 ids only here)
    stage1_train_labels.csv                       original labels, RLE, 670 ids / 29,461 nuclei
    stage1_train_labels_fixed.csv                 community-corrected labels, 664 ids / 28,986 nuclei
    stage1_test/<ImageId>/images/<ImageId>.png    65 images
    stage1_solution.csv                           test truth, RLE with Height/Width, 4,152 nuclei

Splits follow PROTOCOL.md section 2 and come from ``shared/splits/dsb2018.json``:
train 536 / validation 134 ids of ``stage1_train``; **test** is ``stage1_test``,
scored with ``stage1_solution.csv``.

Decisions, each taken on purpose
--------------------------------
1. **Images are RGB.** They are stored as RGBA (alpha always 255), RGB, and
   8-bit grey (562 training images were re-saved from RGBA to ``L`` here, 108
   to RGB). Every image is read by :func:`~nucleikit.io.images.read_image`:
   the opaque alpha is dropped (colours unchanged bit for bit), grey is
   replicated to three channels, colour (H&E-like and other bright-field
   images) is kept. So every sample loads as (H, W, 3) float32 in [0, 1] and
   one model sees one input format. ``load_image("grey")`` gives the BT.601
   luminance instead, which for grey content (R = G = B) is the grey value.
2. **Labels** (``labels=``): ``"fixed"`` (default, preferred by PROTOCOL.md)
   reads ``stage1_train_labels_fixed.csv``. Its 6 unusable images
   (:data:`FIXED_DROPPED_IDS`) have no rows there and are **left out** of the
   subset; :attr:`DSB2018.left_out` names those of the subset. Any *other*
   split id without rows is an error, so a damaged file cannot shrink the set
   silently. ``"original"`` reads ``stage1_train_labels.csv`` (all 670 ids).
   The test subset always uses ``stage1_solution.csv``; ``labels`` does not
   apply to it.
3. **Label images**: the RLE rows of an image, in file order, give labels
   1, 2, ...; where rows overlap the later one wins (PROTOCOL.md). Only 6
   fixed images overlap, by 1-2 pixels. The README warns that the order of
   rows within an image is not Kaggle's; no figure depends on it but these
   few pixels.
4. **Image size** comes from the image file's header (the training CSVs have
   none). For the test images, the solution's Height/Width must equal it
   (an :class:`~nucleikit.errors.InputError` otherwise).
5. **No pixel size**: the images come from many microscopes and
   magnifications and record none, so ``mpp`` is ``None``.
6. Labels are decoded on demand (:meth:`LabelSample.load_labels`); the CSV
   is read once, when the data set is built.

:func:`read_kaggle_folder` reads the Kaggle folder layout with ``masks/``
instead (the 10 ids that keep their mask PNGs here, or a user's own data).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from nucleikit.errors import ConfigError, InputError
from nucleikit.io.datasets.base import LabelSample, SampleSequence
from nucleikit.io.labels import read_mask_folder
from nucleikit.io.rle import RLETable, read_rle_csv

__all__ = [
    "DSB2018",
    "FIXED_DROPPED_IDS",
    "LABEL_FILES",
    "image_shape",
    "read_kaggle_folder",
    "read_split",
]

#: The 6 training ids that ``stage1_train_labels_fixed.csv`` drops (annotation unusable).
FIXED_DROPPED_IDS = frozenset(
    {
        "12aeefb1b522b283819b12e4cfaf6b13c1264c0aadac3412b4edd2ace304cb40",
        "19f0653c33982a416feed56e5d1ce6849fd83314fd19dfa1c5b23c6b66e9868a",
        "74a7785530687a11ecd073e772f90912d9967d02407a192bfab282c35f55ab94",
        "7b38c9173ebe69b4c6ba7e703c0c27f39305d9b2910f46405993d2ea7a963b80",
        "adc315bd40d699fd4e4effbcce81cd7162851007f485d754ad3b0472f73a86df",
        "c304a1fdf3bca2f4b4580d2cac59942e2224a7678001bf5ed9d9852f57708932",
    }
)

#: Training label file of each ``labels`` choice.
LABEL_FILES = {"fixed": "stage1_train_labels_fixed.csv", "original": "stage1_train_labels.csv"}
SOLUTION_FILE = "stage1_solution.csv"

SUBSETS = ("train", "validation", "test", "train+validation")


class DSB2018(SampleSequence[LabelSample]):
    """The DSB2018 stage 1 images of one subset, as :class:`LabelSample` records.

    Parameters
    ----------
    root : str or Path
        The ``dsb2018`` data folder.
    subset : {"train", "validation", "test", "train+validation"}
        Ids of ``splits/dsb2018.json``; ``"test"`` is ``stage1_test``.
    labels : {"fixed", "original"}
        Training label set (module docstring, item 2); ignored for ``"test"``.
    splits_file : str or Path, optional
        The split list; default ``root/../../splits/dsb2018.json``.

    Attributes
    ----------
    ids : tuple of str
        ImageIds of the samples, sorted.
    left_out : tuple of str
        Split ids left out because the fixed label file drops them (sorted;
        empty for ``"original"`` and ``"test"``).
    labels_file : Path
        The RLE file the labels come from.
    table : RLETable
        Its rows, grouped by ImageId.

    Raises
    ------
    ConfigError
        Unknown ``subset`` or ``labels``.
    InputError
        Missing folder, label file, split list or image; a split id without
        label rows (other than the fixed file's 6 dropped ids); a test id
        without Height/Width in the solution.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        subset: Literal["train", "validation", "test", "train+validation"] = "train",
        labels: Literal["fixed", "original"] = "fixed",
        splits_file: str | Path | None = None,
    ) -> None:
        if subset not in SUBSETS:
            raise ConfigError(f"DSB2018 subset must be one of {SUBSETS}, not {subset!r}")
        if labels not in LABEL_FILES:
            raise ConfigError(f"DSB2018 labels must be one of {tuple(LABEL_FILES)}, not {labels!r}")
        root = Path(root)
        if not root.is_dir():
            raise InputError(root, "DSB2018 folder not found")
        stage = "stage1_test" if subset == "test" else "stage1_train"
        if not (root / stage).is_dir():
            raise InputError(root, f"not a DSB2018 folder (no {stage}/)")
        if splits_file is None:
            splits_file = root.resolve().parent.parent / "splits" / "dsb2018.json"
        split = read_split(splits_file)
        wanted = sorted({image_id for name in subset.split("+") for image_id in split[name]})

        self.root = root
        self.subset = subset
        self.labels = labels
        self.labels_file = root / (SOLUTION_FILE if subset == "test" else LABEL_FILES[labels])
        self.table: RLETable = read_rle_csv(self.labels_file)
        self._stage_dir = root / stage

        missing = [image_id for image_id in wanted if image_id not in self.table]
        dropped = [i for i in missing if i in FIXED_DROPPED_IDS] if (subset != "test" and labels == "fixed") else []
        unexpected = [i for i in missing if i not in dropped]
        if unexpected:
            raise InputError(
                self.labels_file,
                f"no label rows for {len(unexpected)} ids of the {subset} subset, e.g. {unexpected[0]}",
            )
        self.left_out: tuple[str, ...] = tuple(dropped)
        self.ids: tuple[str, ...] = tuple(i for i in wanted if i not in self.left_out)
        for image_id in self.ids:
            path = self._image_path(image_id)
            if not path.is_file():
                raise InputError(path, "image not found")
            if subset == "test" and image_id not in self.table.shapes:
                raise InputError(self.labels_file, f"no Height/Width for {image_id}")

    @property
    def _keys(self) -> tuple:
        return self.ids

    def __repr__(self) -> str:
        labels = "solution" if self.subset == "test" else self.labels
        return f"DSB2018(subset={self.subset!r}, labels={labels!r}, {len(self)} images, {len(self.left_out)} left out)"

    def _image_path(self, image_id: str) -> Path:
        return self._stage_dir / image_id / "images" / f"{image_id}.png"

    def _sample(self, image_id: str) -> LabelSample:
        path = self._image_path(image_id)
        return LabelSample(image_id, path, partial(_rle_labels, self.table, image_id, path), mpp=None)


def _rle_labels(table: RLETable, image_id: str, image_path: Path) -> np.ndarray:
    # Module-level (not a lambda) so that samples pickle into worker processes.
    return table.labels(image_id, image_shape(image_path))


def _mask_labels(masks_dir: Path, image_path: Path) -> np.ndarray:
    return read_mask_folder(masks_dir, shape=image_shape(image_path))


def image_shape(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header (pixels are not decoded)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise InputError(path, "image not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(path, f"cannot read the image header ({exc})") from exc
    return height, width


def read_kaggle_folder(stage_dir: str | Path, *, ids: Sequence[str] | None = None) -> list[LabelSample]:
    """Samples of a Kaggle-layout folder whose labels are mask PNGs.

    Parameters
    ----------
    stage_dir : str or Path
        A folder of ``<id>/images/<id>.png`` and ``<id>/masks/*.png``, such
        as ``stage1_train``.
    ids : sequence of str, optional
        The ids to read, in the order given; default every sub-folder, sorted.

    Returns
    -------
    list of LabelSample
        Labels from :func:`~nucleikit.io.labels.read_mask_folder`: masks in
        file-name order, later wins on overlap, each mask checked against the
        image size. ``mpp`` is None.

    Raises
    ------
    InputError
        Missing folder, image or ``masks/`` folder (an image without masks is
        not taken as an image without nuclei: pass ``ids`` to choose).
    """
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        raise InputError(stage_dir, "folder not found")
    if ids is None:
        ids = sorted(p.name for p in stage_dir.iterdir() if p.is_dir())
    samples = []
    for image_id in ids:
        image_path = stage_dir / image_id / "images" / f"{image_id}.png"
        masks_dir = stage_dir / image_id / "masks"
        if not image_path.is_file():
            raise InputError(image_path, "image not found")
        if not masks_dir.is_dir():
            raise InputError(stage_dir / image_id, "no masks/ folder (pass ids= to choose images that have one)")
        samples.append(LabelSample(image_id, image_path, partial(_mask_labels, masks_dir, image_path), mpp=None))
    return samples


def read_split(splits_file: str | Path) -> dict[str, tuple[str, ...]]:
    """The DSB2018 split list: ``{"train": ..., "validation": ..., "test": ...}`` ImageIds.

    Raises
    ------
    InputError
        Missing file, invalid JSON, a missing list, non-string ids, or an id
        in both train and validation.
    """
    splits_file = Path(splits_file)
    if not splits_file.is_file():
        raise InputError(splits_file, "split list not found")
    try:
        document = json.loads(splits_file.read_text(encoding="utf-8"))
        split = {name: tuple(document[name]) for name in ("train", "validation", "test")}
    except json.JSONDecodeError as exc:
        raise InputError(splits_file, f"invalid JSON (line {exc.lineno}: {exc.msg})") from exc
    except (KeyError, TypeError) as exc:
        raise InputError(splits_file, f"not a DSB2018 split list (missing or bad {exc})") from exc
    for name, ids in split.items():
        if not all(isinstance(i, str) and i for i in ids):
            raise InputError(splits_file, f"{name} holds ids that are not strings")
    both = set(split["train"]) & set(split["validation"])
    if both:
        raise InputError(splits_file, f"{len(both)} ids are in both train and validation, e.g. {min(both)}")
    return split
