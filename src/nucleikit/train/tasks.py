"""What differs between dense training tasks: targets, loss, validation.

The training loop (:class:`nucleikit.train.loop.Trainer`) is one; a task
adapter (:class:`TaskAdapter`) tells it how to turn annotated samples into
dense targets and how to score validation maps (the loss is the model's, from
the registry):

* :class:`DetectionTask` — points → proximity map (Xing) or Gaussian density
  (Alom); validation F1 over a grid of xi and peak distances, then the largest
  absolute floor that costs (almost) no validation F1 and no nucleus any xi of
  the grid finds (:func:`~nucleikit.train.tuning.tune_peaks`); the three values
  are saved with the weights.
* :class:`SegmentationTask` — instance labels → foreground mask (target
  "mask"; validation pixel Dice over a grid of thresholds, and the DSB score
  of the watershed instances at the best threshold), or → foreground,
  boundary and distance maps (target "instance"; validation AJI over a grid
  of foreground thresholds, marker kinds and marker thresholds, with pixel
  Dice, PQ and the DSB score at the best).
* :class:`ClassificationTask` — classified points → patches centred on them
  (:class:`~nucleikit.train.patches.PatchSet`); validation scores the class
  probabilities of the validation patches (PROTOCOL.md's classification figures;
  the selection criterion is the weighted F1). Its trainer is
  :class:`nucleikit.train.classify.ClassificationTrainer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ..errors import ConfigError
from ..targets import gaussian_density_map, instance_targets, proximity_map, proximity_radius_px
from ..transforms import percentile_normalise, resample, resize_labels, scale_factor, scale_points
from .config import TrainConfig
from .tuning import FLOOR_GRID, FLOOR_TOLERANCE, tune_peaks

__all__ = ["PreparedImage", "Validation", "TaskAdapter", "DetectionTask", "SegmentationTask", "ClassificationTask",
           "make_target", "task_for"]


@dataclass(frozen=True)
class PreparedImage:
    """One training/validation image at the model's resolution.

    Attributes
    ----------
    id : str
    pixels : (H, W, C) float32 in [0, 1]
    truth : Any
        What validation compares with: (N, 2) points (x, y) for detection, an
        (H, W) int32 label image for segmentation; at the model's resolution.
    target : (H, W) float32 or None
        The dense training target (None for validation images).
    weight : float
        Relative loss weight of the data set this image belongs to (gamma).
    """

    id: str
    pixels: np.ndarray
    truth: Any
    target: np.ndarray | None
    weight: float = 1.0


@dataclass(frozen=True)
class Validation:
    """A validation result.

    Attributes
    ----------
    score : float
        The selection criterion (higher is better): F1 or Dice.
    record : dict
        Figures logged and saved with the weights (``val_*`` keys).
    postprocess : dict
        Post-processing values tuned on the validation images.
    """

    score: float
    record: dict
    postprocess: dict


class TaskAdapter(Protocol):
    """What the :class:`~nucleikit.train.loop.Trainer` asks of a task.

    ``prepare`` turns samples into :class:`PreparedImage` (at the model's resolution;
    with dense targets when ``training``), ``check`` refuses training data that cannot
    train (no annotation at all), ``validate`` scores the network's (K, H, W) maps of
    the validation images, and ``meta`` returns what the saved weights must record
    about the task (target parameters, input format).
    """

    def prepare(self, samples: Sequence[Any], *, weight: float = 1.0, training: bool = True) -> list[PreparedImage]:
        ...

    def check(self, images: list[PreparedImage]) -> None:
        ...

    def validate(self, maps: list[np.ndarray], images: list[PreparedImage]) -> Validation:
        ...

    def meta(self) -> dict:
        ...


def make_target(kind: str, points: np.ndarray, shape: tuple[int, int], cfg: TrainConfig, mpp: float) -> np.ndarray:
    """Dense detection target ("proximity" or "density") at resolution ``mpp``."""
    if kind == "proximity":
        return proximity_map(points, shape, d=proximity_radius_px(mpp, cfg.d_microns), alpha=cfg.alpha)
    if kind == "density":
        return gaussian_density_map(points, shape, sigma=cfg.sigma_px, dilation=cfg.dilation)
    raise ConfigError(f"no detection target of kind {kind!r}")


class DetectionTask:
    """Point detection by regressing a dense map (see module docstring)."""

    name = "detection"

    def __init__(self, target: str, cfg: TrainConfig) -> None:
        if cfg.mpp is None:
            raise ConfigError("detection training needs a resolution (mpp)")
        self.target = target
        self.cfg = cfg
        self.radius_px = cfg.val_radius_um / cfg.mpp

    def prepare(self, samples: Sequence[Any], *, weight: float = 1.0, training: bool = True) -> list[PreparedImage]:
        """Samples with ``id``, ``points``, ``mpp``, ``load_image()``, resampled to the model's mpp."""
        out = []
        for s in samples:
            factor = scale_factor(s.mpp, self.cfg.mpp)
            pixels = resample(s.load_image(), factor).astype(np.float32)
            pts = scale_points(s.points, factor)
            target = make_target(self.target, pts, pixels.shape[:2], self.cfg, self.cfg.mpp) if training else None
            out.append(PreparedImage(str(s.id), pixels, pts, target, weight))
        return out

    def check(self, images: list[PreparedImage]) -> None:
        if not any(len(im.truth) for im in images):
            raise ConfigError("no training image has any annotated point")

    def validate(self, maps: list[np.ndarray], images: list[PreparedImage]) -> Validation:
        res = tune_peaks(
            [m[0] for m in maps],
            [im.truth for im in images],
            radius=self.radius_px,
            xi_grid=self.cfg.xi_grid,
            min_distance_grid=self.cfg.min_distance_grid,
            threshold_abs_grid=FLOOR_GRID,
            tolerance=FLOOR_TOLERANCE,
        )
        record = {
            "val_f1": res.f1,
            "val_precision": res.precision,
            "val_recall": res.recall,
            "threshold_rel": res.threshold_rel,
            "min_distance": res.min_distance,
            "threshold_abs": res.threshold_abs,
        }
        post = {"threshold_rel": res.threshold_rel, "min_distance": res.min_distance,
                "threshold_abs": res.threshold_abs}
        return Validation(res.f1, record, post)

    def meta(self) -> dict:
        if self.target == "proximity":
            params = {"d_microns": self.cfg.d_microns, "alpha": self.cfg.alpha}
        else:
            params = {"sigma_px": self.cfg.sigma_px, "dilation": self.cfg.dilation}
        return {"target_params": params, "radius_px": self.radius_px}


class SegmentationTask:
    """Foreground segmentation with watershed instances (see module docstring).

    Samples have ``id``, ``load_image(mode)``, ``load_labels()`` and ``mpp``
    (e.g. :class:`nucleikit.io.datasets.base.LabelSample`); images without a
    resolution are used as they are.
    """

    name = "segmentation"

    def __init__(self, target: str, cfg: TrainConfig, *, colour: str = "rgb", intensity: str = "none") -> None:
        self.target = target
        self.cfg = cfg
        self.colour = colour
        self.intensity = intensity

    def prepare(self, samples: Sequence[Any], *, weight: float = 1.0, training: bool = True) -> list[PreparedImage]:
        out = []
        for s in samples:
            pixels = s.load_image(mode=self.colour)
            if self.intensity == "percentile":
                pixels = percentile_normalise(pixels)
            labels = s.load_labels()
            factor = scale_factor(getattr(s, "mpp", None), self.cfg.mpp)
            if factor != 1.0:
                pixels = resample(pixels, factor)
                # nearest neighbour, never smoothed: anti-aliasing would blend label numbers
                # into fragments with made-up labels
                labels = resize_labels(labels, pixels.shape[:2])
            target = None
            if training:
                target = instance_targets(labels) if self.target == "instance" else (labels > 0).astype(np.float32)
            out.append(PreparedImage(str(s.id), pixels.astype(np.float32), labels, target, weight))
        return out

    def check(self, images: list[PreparedImage]) -> None:
        if not any(np.any(im.truth > 0) for im in images):
            raise ConfigError("no training image has any labelled nucleus")

    def validate(self, maps: list[np.ndarray], images: list[PreparedImage]) -> Validation:
        if self.target == "instance":
            return self._validate_instances(maps, images)
        return self._validate_mask(maps, images)

    def _validate_instances(self, maps: list[np.ndarray], images: list[PreparedImage]) -> Validation:
        from ..metrics import segmentation_scores
        from ..postprocess import instances_from_maps

        truths = [im.truth for im in images]
        best_score, best_post, best_scores = -1.0, None, None
        for post in instance_grid(self.cfg.seg_min_size):
            scores = [segmentation_scores(t, instances_from_maps(m, **post)) for t, m in zip(truths, maps)]
            score = float(np.mean([sc.aji for sc in scores]))
            if score > best_score:
                best_score, best_post, best_scores = score, post, scores
        record = {
            "val_aji": best_score,
            **{f"val_{k}": float(np.mean([getattr(sc, k) for sc in best_scores])) for k in ("pq", "dice", "dsb")},
            **best_post,
        }
        return Validation(best_score, record, dict(best_post))

    def _validate_mask(self, maps: list[np.ndarray], images: list[PreparedImage]) -> Validation:
        from ..metrics import dice, dsb_score
        from ..postprocess import instances_from_probability

        thresholds = (0.3, 0.4, 0.5, 0.6, 0.7)
        truths = [im.truth for im in images]
        dices = [float(np.mean([dice(t, m[0] > th) for t, m in zip(truths, maps)])) for th in thresholds]
        k = int(np.argmax(dices))
        th = thresholds[k]
        md = self.cfg.seg_min_distance
        ms = self.cfg.seg_min_size
        dsb = [dsb_score(t, instances_from_probability(m[0], threshold=th, min_distance=md, min_size=ms))["score"]
               for t, m in zip(truths, maps)]
        record = {"val_dice": dices[k], "val_dsb": float(np.mean(dsb)), "threshold": th}
        post = {"threshold": th, "min_distance": md, "min_size": ms}
        return Validation(dices[k], record, post)

    def meta(self) -> dict:
        return {"colour": self.colour, "intensity": self.intensity}


class ClassificationTask:
    """Nucleus typing from patches centred on classified points (see module docstring).

    Parameters
    ----------
    cfg : ClassifyConfig
        Resolved (:meth:`nucleikit.train.classify.ClassifyConfig.resolved`): its
        ``classes``, ``patch`` and ``mpp`` define the patches.
    """

    name = "classification"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def prepare(self, samples: Any, *, weight: float = 1.0, training: bool = True):
        """A :class:`~nucleikit.train.patches.PatchSet` of ``samples`` (point samples with classes).

        Patches already cut are checked against the configuration instead: their
        classes, patch side and resolution must be the configuration's.
        """
        from .patches import PatchSet

        cfg, what = self.cfg, "training" if training else "validation"
        if isinstance(samples, PatchSet):
            if samples.classes != cfg.classes:
                raise ConfigError(f"{what} patches have classes {samples.classes}, the configuration {cfg.classes}")
            if samples.patch_size != cfg.patch:
                raise ConfigError(f"{what} patches are {samples.patch_size} px, the configuration asks for {cfg.patch}")
            if samples.mpp is not None and scale_factor(samples.mpp, cfg.mpp) != 1.0:
                raise ConfigError(f"{what} patches are at {samples.mpp} um/px, the configuration at {cfg.mpp}")
            return samples
        return PatchSet.from_samples(samples, classes=cfg.classes, patch=cfg.patch, mpp=cfg.mpp)

    def check(self, train: Any, val: Any) -> None:
        """Refuse patch sets that cannot train (no training patch) or choose the best epoch (no validation patch)."""
        if len(train) == 0:
            raise ConfigError("no training patch: the training samples have no classified point")
        if len(val) == 0:
            raise ConfigError("no validation patch: the best epoch cannot be chosen")

    def validate(self, probs: np.ndarray, val: Any, *, one_view: np.ndarray | None = None) -> Validation:
        """Score (N, K) class probabilities of the validation patches ``val``.

        ``record`` holds :func:`nucleikit.metrics.classification_report` (accuracy,
        weighted and macro F1, per-class figures, ROC AUC, AP, confusion matrix) and
        ``loss`` (mean cross-entropy of the probabilities, unweighted); with
        ``one_view`` (the probabilities without test-time augmentation, when
        ``probs`` are averaged over views), also ``weighted_f1_one_view``.
        """
        from ..metrics import classification_report

        classes = self.cfg.classes
        names = np.asarray(classes)
        scores = classification_report(names[val.labels], names[probs.argmax(axis=1)], probs, classes)
        picked = probs[np.arange(len(val)), val.labels]
        scores["loss"] = float(-np.log(np.maximum(picked, 1e-12)).mean())
        if one_view is not None:
            single = classification_report(names[val.labels], names[one_view.argmax(axis=1)], one_view, classes)
            scores["weighted_f1_one_view"] = single["weighted_f1"]
        return Validation(float(scores["weighted_f1"]), scores, {})

    def meta(self) -> dict:
        cfg = self.cfg
        return {"target": "label", "classes": list(cfg.classes), "mpp": cfg.mpp, "patch": cfg.patch, "tta": cfg.tta}


def instance_grid(min_size: int) -> list[dict]:
    """Post-processing values of :func:`~nucleikit.postprocess.instances_from_maps` tried on validation."""
    grid = []
    for threshold in (0.4, 0.5, 0.6):
        for marker_threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
            grid.append({"threshold": threshold, "markers": "distance", "marker_threshold": marker_threshold,
                         "min_size": min_size})
        for marker_threshold in (0.2, 0.35, 0.5):
            grid.append({"threshold": threshold, "markers": "boundary", "marker_threshold": marker_threshold,
                         "min_size": min_size})
    return grid


def task_for(target: str, task: str, cfg: TrainConfig):
    """The adapter of a registry task ("detection" or "segmentation")."""
    if task == "detection":
        return DetectionTask(target, cfg)
    if task == "segmentation":
        return SegmentationTask(target, cfg, colour=cfg.colour, intensity=cfg.intensity)
    raise ConfigError(f"no dense training for {task!r} models (classifiers: nucleikit.train.classify)")
