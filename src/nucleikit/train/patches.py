"""Classified nucleus patches: the in-memory set, its augmentation, and the two split protocols.

* :class:`PatchSet` — every classified point of a set of images as one
  in-memory uint8 array of patches (cut once per image by
  :func:`nucleikit.targets.extract_patches`, reflected at the image border),
  with the class index and image id of each patch. 22,441 CRCHisto patches of
  32x32x3 take 69 MB.
* :class:`PatchAugment` / :func:`augment_patches` — flips, 90-degree rotations,
  mild colour and H&E stain jitter, per patch.
* :func:`patch_stats` — the standardisation saved with the weights.
* :func:`epoch_order` — the patches of one epoch (shuffled, or drawn class-balanced).
* :func:`patch_split` — the **patch-level** protocol (below); :func:`crchisto_patch_split`
  cuts and splits CRCHisto's patches under it.

Protocols
---------
``"image"`` (:data:`PROTOCOLS`, the default and the headline)
    PROTOCOL.md: the split is by image (``splits/crchisto.json``), so no two
    patches of one image sit on both sides of it.
``"patch"`` (Alom et al.'s protocol, reported beside the headline)
    Every classified patch of the 100 images is drawn at random into
    train / validation / test, so patches of one image, which share its
    stain, scanner focus and tissue, sit on both sides. Alom et al. split the
    CRCHisto nuclei at random without saying in what proportions; nucleikit
    uses 70 / 10 / 20 (:data:`PATCH_SPLIT_FRACTIONS`: the proportions of the
    image-level fixed split, so both protocols train on about as many
    patches), stratified by class (each class is split in these proportions,
    to within one patch), seed :data:`PATCH_SPLIT_SEED`. The split is a
    function of the class labels in the order :meth:`PatchSet.from_samples`
    cuts them (images in CRCHisto order, points in file order), not of the
    patch size or resolution, so a larger context patch is scored on the same
    nuclei.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..io.datasets.crchisto import CLASSES
from ..targets import extract_patches
from ..transforms import jitter_stains, resample, scale_factor, scale_points

__all__ = [
    "PROTOCOLS",
    "PATCH_SPLIT_FRACTIONS",
    "PATCH_SPLIT_SEED",
    "SAMPLING",
    "PatchAugment",
    "PatchSet",
    "augment_patches",
    "crchisto_patch_split",
    "epoch_order",
    "patch_split",
    "patch_stats",
]

#: Split protocols of classification (module docstring): "image" is PROTOCOL.md's, "patch" Alom et al.'s.
PROTOCOLS = ("image", "patch")

#: Train / validation / test shares of the patch-level split (those of the image-level fixed split).
PATCH_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)

#: Seed of the patch-level split (fixed: every run and the benchmark draw the same split).
PATCH_SPLIT_SEED = 0

#: Values of ``ClassifyConfig.sampling``.
SAMPLING = ("shuffle", "balanced")


@dataclass(frozen=True)
class PatchAugment:
    """What a training patch may undergo (applied per patch, on the fly).

    Attributes
    ----------
    flip : bool
        Horizontal mirror with probability 1/2.
    rotate90 : bool
        Rotation by k * 90 degrees, k uniform in 0..3. With ``flip`` this
        draws uniformly from the 8 symmetries of the square: a nucleus has no
        preferred orientation, and no interpolation blurs the patch.
    brightness : float
        Offset uniform in [-b, b] added to every channel (image in [0, 1]).
    contrast : float
        Factor uniform in [1 - c, 1 + c] applied around each channel's mean.
    channel_shift : float
        Independent offset per channel, uniform in [-s, s]: a mild change of
        the H&E stain balance.
    hed : float
        Stain jitter in the haematoxylin-eosin-DAB space of
        :func:`skimage.color.rgb2hed` (Tellez et al. 2018): each stain's
        optical density (natural log) becomes ``od * a + b`` with ``a``
        uniform in [1 - h, 1 + h] and ``b`` uniform in [-h, h] per patch and
        stain.
        Only for RGB patches; it models what differs between labs (stain
        strength and balance) rather than what differs between nuclei.

    The result is clipped to [0, 1] before standardisation.
    """

    flip: bool = True
    rotate90: bool = True
    brightness: float = 0.05
    contrast: float = 0.1
    channel_shift: float = 0.03
    hed: float = 0.0

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "channel_shift", "hed"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"augment {name} must be in [0, 1), got {value!r}")

    @classmethod
    def none(cls) -> PatchAugment:
        """No augmentation at all."""
        return cls(flip=False, rotate90=False, brightness=0.0, contrast=0.0, channel_shift=0.0, hed=0.0)


@dataclass(frozen=True, eq=False)
class PatchSet:
    """Classified patches held in memory.

    Attributes
    ----------
    patches : (N, s, s, C) uint8 ndarray
        Patch i is centred on ``points[i]`` (its pixel at index
        ``[s // 2, s // 2]``; see :func:`nucleikit.targets.extract_patches`).
    labels : (N,) int64 ndarray
        Class index of each patch into ``classes``.
    classes : tuple of str
    image_ids : (N,) ndarray of str
        Id of the image each patch comes from (splits are by image).
    points : (N, 2) float64 ndarray
        Patch centres (x, y), 0-based pixel centres, at resolution ``mpp``.
    mpp : float or None
        Resolution of the patches in um/px (None: as the images came).
    """

    patches: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    image_ids: np.ndarray
    points: np.ndarray
    mpp: float | None = None

    def __post_init__(self) -> None:
        n = len(self.patches)
        if self.patches.dtype != np.uint8 or self.patches.ndim != 4 or self.patches.shape[1] != self.patches.shape[2]:
            raise ValueError(f"patches must be (N, s, s, C) uint8, got {self.patches.shape} {self.patches.dtype}")
        if not (len(self.labels) == len(self.image_ids) == len(self.points) == n):
            raise ValueError("patches, labels, image_ids and points must have the same length")
        object.__setattr__(self, "classes", tuple(self.classes))
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return len(self.patches)

    @property
    def patch_size(self) -> int:
        """Side s of the patches in pixels."""
        return int(self.patches.shape[1])

    def counts(self) -> np.ndarray:
        """(K,) int64: patches per class."""
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)

    def subset(self, index: np.ndarray) -> PatchSet:
        """The patches at ``index`` (an integer or boolean array), in that order."""
        index = np.asarray(index)
        return PatchSet(self.patches[index], self.labels[index], self.classes, self.image_ids[index],
                        self.points[index], self.mpp)

    @classmethod
    def from_samples(
        cls,
        samples: Sequence[Any],
        *,
        classes: Sequence[str] = CLASSES,
        patch: int = 32,
        mpp: float | None = None,
    ) -> PatchSet:
        """Cut the patches of every classified point of ``samples``.

        Parameters
        ----------
        samples : sequence of PointSample
            Objects with ``id``, ``image_path``, ``points`` ((N, 2) x, y),
            ``classes`` ((N,) str), ``mpp`` and ``load_image()`` returning an
            (H, W, 3) float image in [0, 1]
            (:class:`nucleikit.io.datasets.base.PointSample`). Each image is
            read once.
        classes : sequence of str
            Class names; a point of any other class is an error.
        patch : int
            Patch side in pixels.
        mpp : float or None
            Resolution to resample each image to before cutting (None: keep
            each image's own). Points the resampling moves past the border by
            rounding are clipped to the pixel-centre box.

        Raises
        ------
        InputError
            A sample without classes, with an unknown class name, or with a
            point outside its image (the image file is named).
        """
        classes = tuple(classes)
        index = {name: k for k, name in enumerate(classes)}
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for sample in samples:
            where = getattr(sample, "image_path", sample.id)
            if sample.classes is None:
                raise InputError(where, "sample has no classes (a detection-only sample)")
            unknown = sorted(set(sample.classes.tolist()) - set(index))
            if unknown:
                raise InputError(where, f"unknown class {unknown[0]!r}; expected one of {', '.join(classes)}")
            points = np.asarray(sample.points, dtype=np.float64).reshape(-1, 2)
            if len(points) == 0:
                continue
            image = sample.load_image()
            factor = scale_factor(sample.mpp, mpp)
            if factor != 1.0:
                image = resample(image, factor)
                h, w = image.shape[:2]
                points = scale_points(points, factor)
                points = np.column_stack([np.clip(points[:, 0], 0, w - 1), np.clip(points[:, 1], 0, h - 1)])
            # The images are 8-bit files read as [0, 1] floats: back to uint8
            # without loss keeps 22k patches at 69 MB.
            image8 = np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
            try:
                cut = extract_patches(image8, points, patch)
            except ValueError as exc:
                raise InputError(where, str(exc)) from None
            labels = np.array([index[name] for name in sample.classes], dtype=np.int64)
            parts.append((cut, labels, np.full(len(points), str(sample.id)), points))
        if not parts:
            return cls(
                np.zeros((0, patch, patch, 3), np.uint8),
                np.zeros(0, np.int64),
                classes,
                np.zeros(0, dtype=str),
                np.zeros((0, 2)),
                mpp,
            )
        return cls(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            classes,
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
            mpp,
        )


def patch_stats(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 patches on the [0, 1] scale.

    Exact, from one 256-bin histogram per channel (no float copy of the set).

    Returns
    -------
    mean, std : (C,) float32
    """
    c = patches.shape[-1]
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = np.empty(c)
    std = np.empty(c)
    for k in range(c):
        hist = np.bincount(patches[..., k].ravel(), minlength=256).astype(np.float64)
        total = hist.sum()
        mean[k] = (hist * values).sum() / total
        std[k] = np.sqrt(max((hist * (values - mean[k]) ** 2).sum() / total, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def augment_patches(rng: np.random.Generator, patches: np.ndarray, cfg: PatchAugment) -> np.ndarray:
    """Augment a batch of uint8 patches.

    Parameters
    ----------
    rng : numpy Generator
    patches : (B, s, s, C) uint8
    cfg : PatchAugment

    Returns
    -------
    (B, s, s, C) float32 in [0, 1]
        Each patch flipped/rotated and colour-jittered independently. The
        random numbers are drawn in a fixed order whatever ``cfg`` enables,
        so one generator state gives the same geometry under any colour
        setting.
    """
    x = patches.astype(np.float32) / 255.0
    b, c = len(x), x.shape[-1]
    flips = rng.random(b) < 0.5
    turns = rng.integers(0, 4, size=b)
    factor = 1.0 + rng.uniform(-1.0, 1.0, size=(b, 1, 1, 1)) * cfg.contrast
    offset = rng.uniform(-1.0, 1.0, size=(b, 1, 1, 1)) * cfg.brightness
    shift = rng.uniform(-1.0, 1.0, size=(b, 1, 1, c)) * cfg.channel_shift
    stain_scale = 1.0 + rng.uniform(-1.0, 1.0, size=(b, 1, 1, 3)) * cfg.hed
    stain_shift = rng.uniform(-1.0, 1.0, size=(b, 1, 1, 3)) * cfg.hed
    if cfg.flip:
        x[flips] = x[flips, :, ::-1]
    if cfg.rotate90:
        for k in (1, 2, 3):
            chosen = turns == k
            x[chosen] = np.rot90(x[chosen], k, axes=(1, 2))
    if cfg.hed and c == 3:
        x = jitter_stains(x, stain_scale, stain_shift)
    if cfg.brightness or cfg.contrast or cfg.channel_shift:
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = np.clip((x - mean) * factor + mean + offset + shift, 0.0, 1.0).astype(np.float32)
    return x


def epoch_order(rng: np.random.Generator, labels: np.ndarray, weights: np.ndarray, sampling: str) -> np.ndarray:
    """Indices of the patches of one epoch, in training order.

    ``"shuffle"``: a permutation of all patches; ``"balanced"``: as many draws
    with replacement, with probabilities ``weights[labels]`` (normalised).
    """
    n = len(labels)
    if sampling == "balanced":
        p = weights[labels]
        return rng.choice(n, size=n, replace=True, p=p / p.sum())
    return rng.permutation(n)


def patch_split(
    labels: np.ndarray,
    *,
    fractions: Sequence[float] = PATCH_SPLIT_FRACTIONS,
    seed: int = PATCH_SPLIT_SEED,
) -> dict[str, np.ndarray]:
    """Patch-level random split, stratified by class (module docstring, protocol "patch").

    Parameters
    ----------
    labels : (N,) int ndarray
        Class index of each patch (:attr:`PatchSet.labels`).
    fractions : (3,) float
        Train, validation and test shares; positive, summing to 1.
    seed : int
        Seeds the one generator that permutes each class in turn (class 0 first).

    Returns
    -------
    dict of {"train", "validation", "test"} -> (n,) int64 ndarray
        Sorted indices into ``labels``: disjoint, together every index once. Of
        the ``n_c`` patches of class c, ``round(n_c * fractions[2])`` go to test,
        ``round(n_c * fractions[1])`` to validation and the rest to training.
    """
    labels = np.asarray(labels)
    shares = np.asarray(fractions, dtype=np.float64)
    if shares.shape != (3,) or (shares <= 0).any() or abs(shares.sum() - 1.0) > 1e-9:
        raise ConfigError(f"split fractions must be three positive shares summing to 1, got {list(fractions)}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be (N,), got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(members) * shares[2]))
        n_val = int(round(len(members) * shares[1]))
        parts["test"].append(members[:n_test])
        parts["validation"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64) for k, v in parts.items()}


def crchisto_patch_split(
    root: Any,
    *,
    classes: Sequence[str] = CLASSES,
    patch: int = 32,
    mpp: float | None = 0.55,
    limit_images: int | None = None,
) -> tuple[dict[str, PatchSet], dict]:
    """The patch-level protocol on CRCHisto: every classified patch of the 100 images, split by :func:`patch_split`.

    Parameters
    ----------
    root : path
        The ``crchisto`` data folder (its ``splits/crchisto.json`` is found as
        :class:`~nucleikit.io.datasets.crchisto.CRCHisto` finds it).
    classes, patch, mpp
        As :meth:`PatchSet.from_samples` (the classifier's).
    limit_images : int or None
        Only the first N images in CRCHisto order (quick checks, not protocol figures).

    Returns
    -------
    parts : dict of {"train", "validation", "test"} -> PatchSet
    meta : dict
        What the weights record about the split: ``protocol`` ("patch"), ``split``
        (a readable name), ``split_fractions``, ``split_seed``, ``split_patches``
        (patches before the split) and ``split_images``.
    """
    from ..io.datasets.crchisto import CRCHisto

    samples = list(CRCHisto(root, split="fixed", subset="all", task="classification"))
    if limit_images:
        samples = samples[:limit_images]
    every = PatchSet.from_samples(samples, classes=classes, patch=patch, mpp=mpp)
    parts = {name: every.subset(index) for name, index in patch_split(every.labels).items()}
    shares = "/".join(f"{round(100 * f)}" for f in PATCH_SPLIT_FRACTIONS)
    meta = {
        "protocol": "patch",
        "split": f"crchisto patch-level random {shares} (Alom et al.'s protocol), seed {PATCH_SPLIT_SEED}",
        "split_fractions": list(PATCH_SPLIT_FRACTIONS),
        "split_seed": PATCH_SPLIT_SEED,
        "split_patches": len(every),
        "split_images": len(samples),
    }
    return parts, meta
