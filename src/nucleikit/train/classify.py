"""Nucleus classification: patch data set, training loop and batched prediction.

Alom et al. 2022 classify CRCHistoPhenotypes nuclei (epithelial, fibroblast,
inflammatory, others) from 32x32 patches centred on the annotated centres,
with DenseNet or DCRN (:mod:`nucleikit.models.densenet`) trained by SGD
(learning rate 1e-3, momentum 0.9, weight decay 1e-4, batches of 32).

* :class:`PatchSet` — every classified point of a set of images as one
  in-memory uint8 array of patches (cut once per image by
  :func:`nucleikit.targets.extract_patches`, reflected at the image border),
  with the class index and image id of each patch. 22,441 CRCHisto patches of
  32x32x3 take 69 MB.
* :func:`train_classifier` — epochs over the training patches with
  augmentation (:class:`PatchAugment`: flips, 90-degree rotations, mild
  colour jitter), class-imbalance handling (below), validation after every
  epoch (:func:`nucleikit.metrics.classification_report`; the best epoch
  is the one of highest weighted F1, PROTOCOL.md's headline), the best
  weights saved with :func:`nucleikit.models.weights.save_weights`, and
  exact resume.
* :func:`predict_patches` / :func:`patch_features` — class probabilities or
  bottleneck features (for UMAP) of many patches, batched, under
  ``torch.inference_mode``.

Class imbalance
---------------
CRCHisto's classes are far from balanced (the 15,261 training patches of
the fixed split: 5,971 epithelial, 3,375 fibroblast, 4,721 inflammatory,
1,194 others). Two remedies, chosen by
:attr:`ClassifyConfig.sampling`:

``"shuffle"`` (default)
    Every training patch once per epoch in random order; the cross-entropy is
    weighted per class by :func:`nucleikit.losses.class_weights` (inverse
    frequency, mean 1), so each class contributes the same total weight.
``"balanced"``
    Each epoch draws as many patches as the set holds, with replacement, with
    probabilities proportional to the class weights (every class equally
    likely); the loss is then unweighted.

``weighted_loss`` overrides the loss weighting of either mode (None: on for
``"shuffle"``, off for ``"balanced"``).

Run folder
----------
``out_dir`` receives ``checkpoint.pt`` (after every epoch: model, optimiser,
RNG, history; loaded with ``torch.load(weights_only=True)``),
``best.safetensors`` (the weights of the best validation weighted F1 so far,
with their metadata) and ``log.jsonl`` (one JSON object per epoch). Each
epoch's patch order and augmentation come from a generator seeded with
``(seed, epoch)`` alone, so a run resumed from the checkpoint computes exactly
what the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..io.datasets.crchisto import CLASSES
from ..metrics import classification_report
from ..targets import extract_patches
from ..transforms import jitter_stains, lab_moments, resample, scale_factor, scale_points

__all__ = [
    "SAMPLING",
    "LR_SCHEDULES",
    "scheduled_lr",
    "PatchAugment",
    "ClassifyConfig",
    "PatchSet",
    "ClassifyResult",
    "augment_patches",
    "patch_stats",
    "train_classifier",
    "predict_patches",
    "patch_features",
]

#: Values of :attr:`ClassifyConfig.sampling`.
SAMPLING = ("shuffle", "balanced")

#: Values of :attr:`ClassifyConfig.lr_schedule`.
LR_SCHEDULES = ("constant", "cosine")


# --------------------------------------------------------------------------- configuration


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


@dataclass(frozen=True)
class ClassifyConfig:
    """Everything that defines a classifier training run.

    Values left as ``None`` are filled from the model's registry recipe
    (:data:`nucleikit.models.densenet.CLASSIFY_RECIPE`) by :meth:`resolved`.

    Attributes
    ----------
    model : str
        Registry name of a classification model ("densenet" or "dcrn").
    model_kwargs : dict
        Overrides of the builder's defaults; ``n_classes`` is set from
        ``classes``.
    classes : tuple of str
        Class names; the model's output k is ``classes[k]``. Default: the
        four CRCHisto classes.
    epochs : int
        Epochs in total (a resumed run continues up to this). 30 is
        nucleikit's starting value; Alom et al. do not state theirs.
    batch_size, lr, momentum, weight_decay : None or value
        SGD settings (recipe: 32, 1e-3, 0.9, 1e-4).
    lr_schedule : {"constant", "cosine"}
        "constant" keeps ``lr`` throughout (Alom et al.); "cosine" anneals it
        every step from ``lr`` to 0 at the end of the last epoch, so a short
        budget ends on small steps instead of the noise of a large constant
        rate. The schedule depends on ``epochs``: resuming with more epochs
        stretches the rest of it.
    patch : int or None
        Patch side in pixels (recipe: 32).
    mpp : float or None
        Resolution of the patches in um/px (recipe: 0.55); images at another
        resolution are resampled first.
    sampling : {"shuffle", "balanced"}
        Class-imbalance remedy (module docstring).
    weighted_loss : bool or None
        Class-weighted cross-entropy; None means ``sampling == "shuffle"``.
    augment : PatchAugment
    seed : int
        Seeds the initial weights and, with the epoch, each epoch's order and
        augmentation.
    threads : int
        torch intra-op threads during the run.
    bf16 : bool
        bfloat16 autocast for the forward pass.
    channels_last : bool
        Channels-last memory format for model and batches (about 30% faster
        training steps on this machine's CPU).
    """

    model: str = "dcrn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = CLASSES
    epochs: int = 30
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    patch: int | None = None
    mpp: float | None = None
    lr_schedule: str = "constant"
    sampling: str = "shuffle"
    weighted_loss: bool | None = None
    augment: PatchAugment = field(default_factory=PatchAugment)
    seed: int = 0
    threads: int = 2
    bf16: bool = False
    channels_last: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes must be at least two distinct names, got {self.classes!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("batch_size", "patch", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if "n_classes" in self.model_kwargs and self.model_kwargs["n_classes"] != len(self.classes):
            raise ConfigError(
                f"model_kwargs n_classes={self.model_kwargs['n_classes']} contradicts {len(self.classes)} classes"
            )

    def resolved(self) -> ClassifyConfig:
        """A copy with every ``None`` filled from the model's recipe (and ``weighted_loss`` decided)."""
        from ..models import get_spec

        spec = get_spec(self.model)
        if spec.task != "classification":
            raise ConfigError(f"model {self.model!r} is a {spec.task} model, not a classifier")
        recipe = dict(spec.train)
        fill = {
            key: getattr(self, key) if getattr(self, key) is not None else recipe[key]
            for key in ("batch_size", "lr", "momentum", "weight_decay", "patch")
        }
        fill["mpp"] = self.mpp if self.mpp is not None else spec.mpp
        fill["weighted_loss"] = self.weighted_loss if self.weighted_loss is not None else self.sampling == "shuffle"
        return dataclasses.replace(self, **fill)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifyConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown classification option(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            d["augment"] = PatchAugment(**d["augment"])
        if "classes" in d:
            d["classes"] = tuple(d["classes"])
        return cls(**d)


# --------------------------------------------------------------------------- data


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


def scheduled_lr(base_lr: float, schedule: str, step: int, total_steps: int) -> float:
    """Learning rate of optimisation step ``step`` (0-based) of ``total_steps``.

    ``"constant"`` returns ``base_lr``; ``"cosine"`` returns
    ``base_lr * (1 + cos(pi * step / total_steps)) / 2``: ``base_lr`` at step 0,
    half of it midway, approaching 0 at the last step.
    """
    if schedule == "constant":
        return float(base_lr)
    if schedule == "cosine":
        frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
        return float(base_lr * 0.5 * (1.0 + np.cos(np.pi * frac)))
    raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


def _epoch_order(rng: np.random.Generator, labels: np.ndarray, weights: np.ndarray, sampling: str) -> np.ndarray:
    """Indices of the patches of one epoch, in training order."""
    n = len(labels)
    if sampling == "balanced":
        p = weights[labels]
        return rng.choice(n, size=n, replace=True, p=p / p.sum())
    return rng.permutation(n)


# --------------------------------------------------------------------------- prediction


def _batched(fn, patches: np.ndarray, mean: np.ndarray, std: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    if patches.dtype != np.uint8 or patches.ndim != 4:
        raise ValueError(f"patches must be (N, s, s, C) uint8, got {patches.shape} {patches.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    if mean.shape != (patches.shape[-1],) or std.shape != mean.shape:
        raise ValueError(f"mean and std must have {patches.shape[-1]} entries, got {mean.shape} and {std.shape}")
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(patches), batch_size):
            x = (patches[start : start + batch_size].astype(np.float32) / 255.0 - mean) / std
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            outputs.append(fn(xt).float().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def predict_patches(
    model: Any, patches: np.ndarray, mean: Sequence[float], std: Sequence[float], *, batch_size: int = 256
) -> np.ndarray:
    """Class probabilities of uint8 patches.

    Parameters
    ----------
    model : nn.Module
        A classifier returning (B, K) logits (DenseNet, DCRN); put in eval mode.
    patches : (N, s, s, C) uint8 ndarray
        E.g. :attr:`PatchSet.patches`.
    mean, std : (C,) float
        Standardisation of the [0, 1] pixel values (the weights' metadata).
    batch_size : int
        Patches per forward pass.

    Returns
    -------
    (N, K) float32 ndarray
        Softmax probabilities; rows sum to 1. ``N = 0`` gives shape (0, 0).
    """
    import torch

    model.eval()
    return _batched(lambda x: torch.softmax(model(x).float(), dim=1), patches, mean, std, batch_size)


def patch_features(
    model: Any, patches: np.ndarray, mean: Sequence[float], std: Sequence[float], *, batch_size: int = 256
) -> np.ndarray:
    """Bottleneck features of uint8 patches (``model.features``), e.g. for UMAP.

    Parameters and batching as :func:`predict_patches`.

    Returns
    -------
    (N, F) float32 ndarray
        The globally averaged last dense block (F = ``model.feature_dim``).
    """
    model.eval()
    return _batched(model.features, patches, mean, std, batch_size)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class ClassifyResult:
    """Where a classifier run ended.

    Attributes
    ----------
    best_weights : Path
        ``out_dir/best.safetensors``.
    best_epoch : int
        1-based epoch of the best validation weighted F1.
    best : dict
        That epoch's validation figures: :func:`nucleikit.metrics.classification_report`
        (accuracy, weighted and macro F1, per-class figures, ROC AUC, AP,
        confusion matrix) plus ``loss`` (mean cross-entropy, unweighted).
    epochs_done : int
    history : tuple of dict
        One record per epoch (as in ``log.jsonl``), resumed epochs included.
    wall_time_s : float
        Training time over all sessions of the run.
    """

    best_weights: Path
    best_epoch: int
    best: dict
    epochs_done: int
    history: tuple[dict, ...]
    wall_time_s: float


def _machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()}"


def _as_patch_set(data: Any, cfg: ClassifyConfig, what: str) -> PatchSet:
    if isinstance(data, PatchSet):
        if data.classes != cfg.classes:
            raise ConfigError(f"{what} patches have classes {data.classes}, the configuration {cfg.classes}")
        if data.patch_size != cfg.patch:
            raise ConfigError(f"{what} patches are {data.patch_size} px, the configuration asks for {cfg.patch}")
        if data.mpp is not None and scale_factor(data.mpp, cfg.mpp) != 1.0:
            raise ConfigError(f"{what} patches are at {data.mpp} um/px, the configuration at {cfg.mpp}")
        return data
    return PatchSet.from_samples(data, classes=cfg.classes, patch=cfg.patch, mpp=cfg.mpp)


#: Configuration fields a resumed run may change (everything else must match).
_RESUMABLE = ("epochs", "threads")


def train_classifier(
    train_samples: Sequence[Any] | PatchSet,
    val_samples: Sequence[Any] | PatchSet,
    cfg: ClassifyConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
) -> ClassifyResult:
    """Train a patch classifier, validating and checkpointing every epoch.

    Parameters
    ----------
    train_samples, val_samples : sequence of PointSample, or PatchSet
        Images with classified points (see :meth:`PatchSet.from_samples`),
        or patches already cut (their classes, patch size and resolution
        must agree with ``cfg``).
    cfg : ClassifyConfig
    out_dir : str or Path
        Run folder (created if needed; see the module docstring).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when present. The checkpoint's
        configuration must equal ``cfg`` except for ``epochs`` and ``threads``.
    progress : bool
        Show a Rich progress bar.

    Returns
    -------
    ClassifyResult

    Raises
    ------
    ConfigError
        Not a classification model, no training or validation patch, or a
        checkpoint from a different configuration.
    InputError
        A sample that cannot be cut into patches.
    """
    import torch

    from ..losses import class_weights, cross_entropy
    from ..models import build_model
    from ..models.weights import save_weights

    cfg = cfg.resolved()
    train = _as_patch_set(train_samples, cfg, "training")
    val = _as_patch_set(val_samples, cfg, "validation")
    if len(train) == 0:
        raise ConfigError("no training patch: the training samples have no classified point")
    if len(val) == 0:
        raise ConfigError("no validation patch: the best epoch cannot be chosen")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    best_path = out / "best.safetensors"

    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model_kwargs = {**cfg.model_kwargs, "n_classes": len(cfg.classes)}
    model = build_model(cfg.model, **model_kwargs)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    counts = train.counts()
    weights = class_weights(counts)
    loss_weight = torch.from_numpy(weights.astype(np.float32)) if cfg.weighted_loss else None
    mean, std = patch_stats(train.patches)

    epoch = 0
    best: dict = {"weighted_f1": -1.0}
    best_epoch = 0
    history: list[dict] = []
    elapsed = 0.0
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = ClassifyConfig.from_dict(ck["config"])
        differ = [
            f.name
            for f in dataclasses.fields(ClassifyConfig)
            if f.name not in _RESUMABLE and getattr(saved, f.name) != getattr(cfg, f.name)
        ]
        if differ:
            raise ConfigError(f"{ckpt_path} was written with a different {', '.join(differ)}; use another out_dir")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        epoch = int(ck["epoch"])
        best = dict(ck["best"])
        best_epoch = int(ck["best_epoch"])
        history = [dict(h) for h in ck["history"]]
        elapsed = float(ck["elapsed"])
        mean = np.asarray(ck["mean"], np.float32)
        std = np.asarray(ck["std"], np.float32)
        torch.set_rng_state(ck["torch_rng"])

    meta_base = {
        "name": cfg.model,
        "model": cfg.model,
        "model_kwargs": model_kwargs,
        "task": "classification",
        "target": "label",
        "classes": list(cfg.classes),
        "mpp": cfg.mpp,
        "patch": cfg.patch,
        "in_channels": int(train.patches.shape[-1]),
        "colour": "rgb",
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "train_counts": [int(v) for v in counts],
        "class_weights": [float(v) for v in weights],
        "train_config": cfg.to_dict(),
        "train_images": sorted(set(train.image_ids.tolist())),
        "machine": _machine(),
    }
    if train.patches.shape[-1] == 3:
        # The stain of the training patches, for Reinhard normalisation of
        # other labs' patches at inference (PatchInferenceConfig.stain_normalise).
        lab_mean, lab_std = lab_moments(train.patches)
        meta_base["lab_mean"] = [float(v) for v in lab_mean]
        meta_base["lab_std"] = [float(v) for v in lab_std]
    val_images = list(dict.fromkeys(val.image_ids.tolist()))
    steps_per_epoch = -(-len(train) // cfg.batch_size)

    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}  wF1 {task.fields[f1]:.3f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        bar.start()
        task = bar.add_task(
            f"train {cfg.model}",
            total=cfg.epochs * steps_per_epoch,
            completed=epoch * steps_per_epoch,
            loss=float("nan"),
            f1=max(best["weighted_f1"], 0.0),
        )
    t0 = time.perf_counter() - elapsed
    try:
        while epoch < cfg.epochs:
            rng = np.random.default_rng((cfg.seed, epoch))
            order = _epoch_order(rng, train.labels, weights, cfg.sampling)
            model.train()
            losses = []
            for step, start in enumerate(range(0, len(order), cfg.batch_size)):
                idx = order[start : start + cfg.batch_size]
                x = augment_patches(rng, train.patches[idx], cfg.augment)
                x = (x - mean) / std
                xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
                if cfg.channels_last:
                    xt = xt.contiguous(memory_format=torch.channels_last)
                yt = torch.from_numpy(train.labels[idx])
                lr = scheduled_lr(cfg.lr, cfg.lr_schedule, epoch * steps_per_epoch + step, cfg.epochs * steps_per_epoch)
                for group in opt.param_groups:
                    group["lr"] = lr
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                    logits = model(xt)
                loss = cross_entropy(logits.float(), yt, weight=loss_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if bar is not None:
                    bar.update(task, completed=epoch * steps_per_epoch + step + 1, loss=float(np.mean(losses[-50:])))
            epoch += 1

            probs = predict_patches(model, val.patches, mean, std)
            names = np.asarray(cfg.classes)
            scores = classification_report(names[val.labels], names[probs.argmax(axis=1)], probs, cfg.classes)
            picked = probs[np.arange(len(val)), val.labels]
            scores["loss"] = float(-np.log(np.maximum(picked, 1e-12)).mean())
            record = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": scores["loss"],
                "val_weighted_f1": scores["weighted_f1"],
                "val_macro_f1": scores["macro_f1"],
                "val_accuracy": scores["accuracy"],
                "lr": opt.param_groups[0]["lr"],
                "elapsed_s": time.perf_counter() - t0,
            }
            if scores["weighted_f1"] > best["weighted_f1"]:
                best = scores
                best_epoch = epoch
                meta = {**meta_base, "epoch": epoch, "validation": {**scores, "images": val_images}}
                save_weights(best_path, model, meta)
                record["best"] = True
            history.append(record)
            with open(out / "log.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
            _save_checkpoint(
                ckpt_path,
                model=model.state_dict(),
                optimizer=opt.state_dict(),
                epoch=epoch,
                best=best,
                best_epoch=best_epoch,
                history=history,
                elapsed=time.perf_counter() - t0,
                mean=[float(v) for v in mean],
                std=[float(v) for v in std],
                torch_rng=torch.get_rng_state(),
                config=cfg.to_dict(),
            )
            if bar is not None:
                bar.update(task, f1=max(best["weighted_f1"], 0.0))
    finally:
        if bar is not None:
            bar.stop()
        torch.set_num_threads(threads_before)
    return ClassifyResult(best_path, best_epoch, best, epoch, tuple(history), time.perf_counter() - t0)


def _save_checkpoint(path: Path, **state: Any) -> None:
    """``torch.save`` under a temporary name, then rename: never a half-written checkpoint."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
