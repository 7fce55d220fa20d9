"""MoNuSeg 2018 training images split by organ: point samples (nucleus centroids) or label samples.

:class:`MoNuSeg` gives :class:`~nucleikit.io.datasets.base.PointSample`
records (detection, transfer studies); :class:`MoNuSegLabels` gives
:class:`~nucleikit.io.datasets.base.LabelSample` records with the instance
label images (H&E segmentation).

Layout (``root`` = ``shared/data/monuseg``; see its README)::

    organs.csv                      image,split,organ_challenge,organ_tcga,tcga_project
    train/images/<image>.png        30 RGB tiles, 1000 x 1000, 40x
    train/labels/<image>.png        instance labels, uint16 PNG, 0 = background
    train/centroids/<image>.csv     header x,y; row i is label i (1-based labels)

Splits come from ``shared/splits/monuseg.json`` (PROTOCOL.md section 3):
``per_organ`` gives breast, kidney, lung and prostate train 3 / validation 1 /
test 2 images; ``auxiliary_only`` gives bladder, colon and stomach, 2 images
each, usable as auxiliary training data only (subsets ``"train"`` and
``"all"``; asking for their validation or test images is an error).

The data README's oddities, each handled on purpose
----------------------------------------------------
1. **Liver is lung.** The challenge calls six images "liver"; their TCGA
   tissue-source sites are lung (LUSC/LUAD). Organs are always the
   ``organ_tcga`` column of ``organs.csv``, and the reader checks that every
   image of an organ's split carries that organ there (a split list and an
   organ table that disagree raise :class:`~nucleikit.errors.InputError`).
2. **Points are the centroids** of the instance labels, read from the CSV
   (0-based pixel centres, 3 decimals). Row i describes label i;
   :func:`label_centroids` recomputes them from the uint16 label image and
   ``verify_labels=True`` (used by the tests) checks that both agree.
3. **Resolution.** The tiles are 40x, about 0.25 um/px (:data:`MPP`; the XML
   values range 0.2456-0.2527). TCGA-HE-7128, -7129 and -7130 (kidney, KIRP)
   have nuclei about half the size in pixels and look scanned at 20x
   (~0.5 um/px), but no metadata confirms it. The reader keeps 0.25 um/px for
   them, as the data says; a caller who wants to treat them as 20x passes
   ``mpp_overrides={"TCGA-HE-7128-01Z-00-DX1": 0.5, ...}`` and must report it.
   Note that two of them are the kidney *test* images of the per-organ split.
   :data:`LOOKS_20X` names the three and :data:`LOOKS_20X_MPP` is the override
   nucleikit's H&E segmenter was trained and scored with (documented in the
   README and stored with the weights).
4. Only the 30 challenge training images are present; the 14 challenge test
   images (in ``organs.csv``) are not, so the per-organ splits use training
   images only.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nucleikit.errors import ConfigError, InputError
from nucleikit.io.datasets.base import LabelSample, PointSample, SampleSequence

__all__ = ["MPP", "PER_ORGAN", "AUXILIARY", "LOOKS_20X", "LOOKS_20X_MPP", "MoNuSeg", "MoNuSegLabels", "per_organ_labels", "read_organs", "read_monuseg_split", "label_centroids", "check_centroids"]

#: Microns per pixel of the 40x tiles.
MPP = 0.25
#: Organs with their own train/validation/test split.
PER_ORGAN = ("breast", "kidney", "lung", "prostate")
#: Organs usable as auxiliary training data only.
AUXILIARY = ("bladder", "colon", "stomach")
SUBSETS = ("train", "validation", "test", "train+validation", "all")
#: Images whose nuclei are about half the size in pixels of all others (median
#: area 93-122 px against 235-832 px): they look scanned at 20x (data README).
LOOKS_20X = ("TCGA-HE-7128-01Z-00-DX1", "TCGA-HE-7129-01Z-00-DX1", "TCGA-HE-7130-01Z-00-DX1")
#: ``mpp_overrides`` treating :data:`LOOKS_20X` as 0.5 um/px, by measured nucleus size.
LOOKS_20X_MPP = {stem: 0.5 for stem in LOOKS_20X}


class MoNuSeg(SampleSequence[PointSample]):
    """The MoNuSeg training images of one organ and subset, as :class:`PointSample` records.

    Parameters
    ----------
    root : str or Path
        The ``monuseg`` data folder (holding ``organs.csv`` and ``train/``).
    organ : str
        One of :data:`PER_ORGAN` or :data:`AUXILIARY` (TCGA organ; "liver" is
        not an organ of this data: the challenge's liver images are lung).
    subset : {"train", "validation", "test", "train+validation", "all"}
        Images of the organ's split; auxiliary organs have only "train" and
        "all" (both their two images).
    splits_file : str or Path, optional
        Default ``root/../../splits/monuseg.json``.
    mpp_overrides : mapping of image stem to float, optional
        Resolution of particular images instead of :data:`MPP` (see note 3).
    verify_labels : bool
        Check each sample's CSV centroids against its label image when the
        sample is built (slow: reads a 1000x1000 label PNG).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        organ: str,
        subset: str = "train",
        splits_file: str | Path | None = None,
        mpp_overrides: Mapping[str, float] | None = None,
        verify_labels: bool = False,
    ) -> None:
        if subset not in SUBSETS:
            raise ConfigError(f"MoNuSeg subset must be one of {SUBSETS}, not {subset!r}")
        root = Path(root)
        if not (root / "organs.csv").is_file() or not (root / "train").is_dir():
            raise InputError(root, "not a MoNuSeg folder (needs organs.csv and train/)")
        if splits_file is None:
            splits_file = root.resolve().parent.parent / "splits" / "monuseg.json"
        split = read_monuseg_split(splits_file, organ)
        if subset not in split:
            raise ConfigError(f"MoNuSeg organ {organ!r} is auxiliary data only: no {subset!r} images")
        self.stems: tuple[str, ...] = split[subset]
        organs = read_organs(root / "organs.csv")
        for stem in self.stems:
            if organs.get(stem) != organ:
                raise InputError(root / "organs.csv", f"{stem} is {organs.get(stem)!r} by organ_tcga, "
                                                      f"but the split lists it under {organ!r}")
        self.root = root
        self.organ = organ
        self.subset = subset
        self.mpp_overrides = dict(mpp_overrides or {})
        self.verify_labels = verify_labels

    @property
    def _keys(self) -> tuple:
        return self.stems

    def __repr__(self) -> str:
        return f"MoNuSeg(organ={self.organ!r}, subset={self.subset!r}, {len(self)} images)"

    @property
    def ids(self) -> tuple[str, ...]:
        return self.stems

    def _sample(self, stem: str) -> PointSample:
        from nucleikit.io.points import read_points

        folder = self.root / "train"
        xy = read_points(folder / "centroids" / f"{stem}.csv", allow_empty=True).xy
        if self.verify_labels:
            from nucleikit.io.labels import read_label_image

            check_centroids(xy, read_label_image(folder / "labels" / f"{stem}.png"), folder / "centroids" / f"{stem}.csv")
        mpp = float(self.mpp_overrides.get(stem, MPP))
        return PointSample(stem, folder / "images" / f"{stem}.png", xy, mpp)


class MoNuSegLabels(MoNuSeg):
    """The MoNuSeg training images of one organ and subset, as :class:`LabelSample` records.

    Parameters as :class:`MoNuSeg`. Each sample's ``load_labels()`` reads the
    uint16 instance label image (0 = background; where outlines overlapped,
    the earlier one kept the pixel: data README); ``mpp`` is :data:`MPP`
    unless overridden (e.g. ``mpp_overrides=LOOKS_20X_MPP``).
    """

    def __repr__(self) -> str:
        return f"MoNuSegLabels(organ={self.organ!r}, subset={self.subset!r}, {len(self)} images)"

    def _sample(self, stem: str) -> LabelSample:
        from functools import partial

        from nucleikit.io.labels import read_label_image

        folder = self.root / "train"
        labels_path = folder / "labels" / f"{stem}.png"
        if not labels_path.is_file():
            raise InputError(labels_path, "label image not found")
        mpp = float(self.mpp_overrides.get(stem, MPP))
        return LabelSample(stem, folder / "images" / f"{stem}.png", partial(read_label_image, labels_path), mpp)


def per_organ_labels(
    root: str | Path, subset: str, *, mpp_overrides: Mapping[str, float] | None = None
) -> tuple[list[LabelSample], dict[str, str]]:
    """Label samples of one subset over all :data:`PER_ORGAN` organs, and the organ of each.

    Returns ``(samples, organ_of)``: samples in organ order (breast, kidney, lung, prostate),
    ``organ_of`` maps each sample id to its organ (for per-organ figures).
    """
    samples: list[LabelSample] = []
    organ_of: dict[str, str] = {}
    for organ in PER_ORGAN:
        for sample in MoNuSegLabels(root, organ=organ, subset=subset, mpp_overrides=mpp_overrides):
            samples.append(sample)
            organ_of[sample.id] = organ
    return samples, organ_of


def read_organs(path: str | Path) -> dict[str, str]:
    """``{image stem: organ_tcga}`` from ``organs.csv``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return {row["image"]: row["organ_tcga"] for row in rows}
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (KeyError, TypeError) as exc:
        raise InputError(path, f"not a MoNuSeg organ table (missing column {exc})") from None


def read_monuseg_split(splits_file: str | Path, organ: str) -> dict[str, tuple[str, ...]]:
    """Image stems of one organ: ``{"train", "validation", "test", "train+validation", "all"}``.

    Auxiliary organs give only ``"train"`` and ``"all"`` (the same images).
    """
    if organ not in PER_ORGAN + AUXILIARY:
        hint = " (the challenge's 'liver' images are lung)" if organ == "liver" else ""
        raise ConfigError(f"MoNuSeg organ must be one of {PER_ORGAN + AUXILIARY}, not {organ!r}{hint}")
    splits_file = Path(splits_file)
    if not splits_file.is_file():
        raise InputError(splits_file, "split list not found")
    try:
        doc = json.loads(splits_file.read_text(encoding="utf-8"))
        if organ in PER_ORGAN:
            entry = doc["per_organ"][organ]
            parts = {name: tuple(entry[name]) for name in ("train", "validation", "test")}
            parts["train+validation"] = parts["train"] + parts["validation"]
            parts["all"] = parts["train+validation"] + parts["test"]
            return parts
        stems = tuple(doc["auxiliary_only"][organ])
        return {"train": stems, "all": stems}
    except json.JSONDecodeError as exc:
        raise InputError(splits_file, f"invalid JSON (line {exc.lineno}: {exc.msg})") from exc
    except (KeyError, TypeError) as exc:
        raise InputError(splits_file, f"not a MoNuSeg split list (missing or bad {exc})") from exc


def label_centroids(labels: np.ndarray) -> np.ndarray:
    """Centroid of every label 1..max of an instance label image.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        0 = background.

    Returns
    -------
    (max_label, 2) ndarray of float64
        Row i-1 is the mean (x = column, y = row) of label i's pixels, 0-based
        pixel centres; NaN for a label with no pixel.
    """
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    rows, cols = np.indices(labels.shape)
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    sx = np.bincount(flat, weights=cols.ravel(), minlength=n + 1)[1:]
    sy = np.bincount(flat, weights=rows.ravel(), minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([sx / count, sy / count], axis=1)


def check_centroids(xy: np.ndarray, labels: np.ndarray, path: str | Path, *, tol: float = 0.002) -> None:
    """Raise :class:`InputError` unless row i of ``xy`` is label i+1's centroid within ``tol`` px."""
    ref = label_centroids(labels)
    if len(ref) != len(xy):
        raise InputError(path, f"{len(xy)} centroids but the label image has labels 1..{len(ref)}")
    err = np.abs(ref - xy)
    if not np.all(err <= tol):  # NaN (a label without pixels) fails too
        # a label without pixels (NaN) counts as the worst
        worst = int(np.argmax(np.where(np.isfinite(err), err, np.inf).max(axis=1)))
        raise InputError(path, f"centroid of label {worst + 1} differs from the label image by more than {tol} px")
