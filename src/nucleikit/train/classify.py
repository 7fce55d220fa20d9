"""Nucleus classification training: :class:`ClassifyConfig` and a trainer on the one loop.

Alom et al. 2022 classify CRCHistoPhenotypes nuclei (epithelial, fibroblast,
inflammatory, others) from 32x32 patches centred on the annotated centres,
with DenseNet or DCRN (:mod:`nucleikit.models.densenet`) trained by SGD
(learning rate 1e-3, momentum 0.9, weight decay 1e-4, batches of 32).

* data: :mod:`nucleikit.train.patches` (:class:`~nucleikit.train.patches.PatchSet`,
  :class:`~nucleikit.train.patches.PatchAugment`: flips, 90-degree rotations, mild
  colour and stain jitter; the image- and patch-level split protocols);
* task: :class:`nucleikit.train.tasks.ClassificationTask` cuts the patches and scores
  validation (:func:`nucleikit.metrics.classification_report`; the best epoch is the
  one of highest weighted F1, PROTOCOL.md's headline);
* loop: :class:`ClassificationTrainer` is a :class:`nucleikit.train.loop.Trainer`
  and runs on its :meth:`~nucleikit.train.loop.Trainer.run` (batches prepared in a
  thread, step timing, log, checkpoint cadence, progress bar). An epoch is
  ``ceil(N / batch_size)`` steps, followed by a validation and a checkpoint;
* prediction: validation, :func:`predict_patches` and :func:`patch_features` go
  through :class:`nucleikit.infer.classify.Classifier`, the predictor of
  ``nucleikit classify``, so training and inference cannot disagree (an empty input
  gives (0, K) probabilities).

Class imbalance
---------------
CRCHisto's classes are far from balanced (the 15,261 training patches of
the fixed split: 5,971 epithelial, 3,375 fibroblast, 4,721 inflammatory,
1,194 others). Two remedies, chosen by :attr:`ClassifyConfig.sampling`:

``"shuffle"`` (default)
    Every training patch once per epoch in random order; the cross-entropy is
    weighted per class by :func:`nucleikit.losses.class_weights` (inverse
    frequency, mean 1), so each class contributes the same total weight.
``"balanced"``
    Each epoch draws as many patches as the set holds, with replacement, with
    probabilities proportional to the class weights (every class equally
    likely); the loss is then unweighted.

``weighted_loss`` overrides the loss weighting of either mode (None: on for
``"shuffle"``, off for ``"balanced"``). Beyond the paper, each off by default
and recorded with the weights (``train_config``; ``tta`` and ``patch``/``mpp``
also at the top level): ``label_smoothing``, ``tta`` and a larger context patch
(:class:`ClassifyConfig`).

Run folder
----------
``out_dir`` receives ``checkpoint.pt`` (after every epoch; keys
:data:`CHECKPOINT_KEYS`, those runs in progress were written with, plus
``train_s``; loaded with ``torch.load(weights_only=True)``),
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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from ..infer.tta import TTA_SIZES
from ..io.datasets.crchisto import CLASSES
from .loop import RunState, Trainer, save_checkpoint_file
from .patches import (
    PROTOCOLS,
    SAMPLING,
    PatchAugment,
    PatchSet,
    augment_patches,
    epoch_order,
    patch_split,
    patch_stats,
)
from .runtime import Dist, machine
from .stopping import check_stopping
from .tasks import ClassificationTask, Validation

__all__ = [
    "SAMPLING",
    "LR_SCHEDULES",
    "PROTOCOLS",
    "CHECKPOINT_KEYS",
    "scheduled_lr",
    "PatchAugment",
    "ClassifyConfig",
    "PatchSet",
    "ClassifyResult",
    "ClassificationTrainer",
    "augment_patches",
    "patch_split",
    "patch_stats",
    "train_classifier",
    "predict_patches",
    "patch_features",
]

#: Values of :attr:`ClassifyConfig.lr_schedule`.
LR_SCHEDULES = ("constant", "cosine")

#: Keys of a classification ``checkpoint.pt`` (module docstring); runs in progress were written with these.
CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "best", "best_epoch", "history", "elapsed", "mean", "std",
                   "torch_rng", "config")

#: Configuration fields a resumed run may change (everything else must match).
_RESUMABLE = ("epochs", "threads", "stop_patience", "stop_min_delta")


# --------------------------------------------------------------------------- configuration


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
    label_smoothing : float
        Beyond the paper, off (0) by default: training targets
        ``(1 - e) * onehot + e / K`` (:func:`nucleikit.losses.cross_entropy`).
    tta : {1, 2, 4, 8}
        Beyond the paper, off (1) by default: validation (and so the choice of
        the best epoch) averages the probabilities over this many flips and
        rotations of each patch; the weights record it as their ``tta``, which
        :class:`~nucleikit.infer.classify.Classifier` then uses unless told
        otherwise. With more than one view the log also gives the one-view
        weighted F1 (``val_weighted_f1_one_view``), so one run measures its worth.
    stop_patience, stop_min_delta : int or None, float
        Stop before ``epochs`` once this many epochs in a row have not improved
        the best validation weighted F1 by ``stop_min_delta``
        (:mod:`nucleikit.train.stopping`); None trains every epoch. A resumed
        run may change them.

    A larger context around the nucleus needs no option of its own: ``patch``
    64 at the recipe's 0.55 um/px, or ``patch`` 32 at ``mpp`` 1.1 (the same
    64-pixel field at half the resolution); DenseNet and DCRN average their last
    block globally, so they take any patch side of at least 8.
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
    label_smoothing: float = 0.0
    tta: int = 1
    stop_patience: int | None = None
    stop_min_delta: float = 0.005

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
        if not isinstance(self.label_smoothing, (int, float)) or not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        check_stopping(self.stop_patience, self.stop_min_delta)
        if self.tta not in TTA_SIZES:
            raise ConfigError(f"tta must be one of {', '.join(map(str, TTA_SIZES))} views, got {self.tta!r}")
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


# --------------------------------------------------------------------------- prediction


def _classifier(model: Any, patches: np.ndarray, mean: Sequence[float], std: Sequence[float], batch_size: int):
    """A :class:`~nucleikit.infer.classify.Classifier` around a bare model, leaving the model's memory format alone."""
    from ..infer.classify import Classifier, PatchInferenceConfig

    n = int(getattr(model, "n_classes"))
    side = int(patches.shape[1]) if np.ndim(patches) == 4 else 1
    meta = {"classes": [str(k) for k in range(n)], "mpp": 1.0, "patch": side, "mean": list(mean), "std": list(std)}
    config = PatchInferenceConfig(batch_size=batch_size, threads=None, channels_last=False, fold_bn=False, tta=1)
    return Classifier(model, meta, config=config)


def predict_patches(
    model: Any, patches: np.ndarray, mean: Sequence[float], std: Sequence[float], *, batch_size: int = 256
) -> np.ndarray:
    """Class probabilities of uint8 patches (through :meth:`Classifier.predict_patches`).

    Parameters
    ----------
    model : nn.Module
        A classifier returning (B, K) logits with an ``n_classes`` attribute
        (DenseNet, DCRN); put in eval mode.
    patches : (N, s, s, C) uint8 ndarray
        E.g. :attr:`PatchSet.patches`.
    mean, std : (C,) float
        Standardisation of the [0, 1] pixel values (the weights' metadata).
    batch_size : int
        Patches per forward pass.

    Returns
    -------
    (N, K) float32 ndarray
        Softmax probabilities; rows sum to 1. ``N = 0`` gives shape (0, K).
    """
    return _classifier(model, patches, mean, std, batch_size).predict_patches(patches)


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
    return _classifier(model, patches, mean, std, batch_size).patch_features(patches)


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


class ClassificationTrainer(Trainer):
    """One classifier training run on the shared :meth:`Trainer.run <nucleikit.train.loop.Trainer.run>`.

    Set up here (patches through :class:`~nucleikit.train.tasks.ClassificationTask`,
    the network, plain SGD with momentum and weight decay, the per-step learning-rate
    schedule, the class weights, the checkpoint of a run in progress), then
    :meth:`run`. The loop's hooks: :attr:`total_steps` is ``epochs`` epochs of
    :attr:`steps_per_epoch` steps, :attr:`val_every` one epoch, :meth:`batch` the
    augmented patches of one step, :meth:`step` one SGD step, :meth:`validate`
    the :class:`~nucleikit.infer.classify.Classifier`'s probabilities of the
    validation patches scored by the task.

    Parameters
    ----------
    train_samples, val_samples, cfg, out_dir, resume
        As :func:`train_classifier`.
    extra_meta : dict or None
        Added to the saved weights' metadata (e.g. the protocol and split).
    """

    def __init__(
        self,
        train_samples: Sequence[Any] | PatchSet,
        val_samples: Sequence[Any] | PatchSet,
        cfg: ClassifyConfig,
        out_dir: str | Path,
        *,
        resume: bool = True,
        extra_meta: dict | None = None,
    ) -> None:
        import torch

        from ..losses import class_weights
        from ..models import build_model, get_spec

        cfg = cfg.resolved()
        self.cfg = cfg
        self.spec = get_spec(cfg.model)
        self.adapter = ClassificationTask(cfg)
        self.train_set = self.adapter.prepare(train_samples, training=True)
        self.val_set = self.adapter.prepare(val_samples, training=False)
        self.adapter.check(self.train_set, self.val_set)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("classifiers train in one process: run `train classification` without torchrun")
        self.dist = Dist()
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path, self.best_path = self.out / "checkpoint.pt", self.out / "best.safetensors"

        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model_kwargs = {**cfg.model_kwargs, "n_classes": len(cfg.classes)}
        model = build_model(cfg.model, **self.model_kwargs)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = self.net = model
        self.opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.counts = self.train_set.counts()
        self.class_weights = class_weights(self.counts)
        self.loss_weight = torch.from_numpy(self.class_weights.astype(np.float32)) if cfg.weighted_loss else None
        self.mean, self.std = patch_stats(self.train_set.patches)
        self.steps_per_epoch = -(-len(self.train_set) // cfg.batch_size)
        self.state = RunState(best={"weighted_f1": -1.0, "score": -1.0})
        self.history: list[dict] = []
        if resume and self.checkpoint_path.exists():
            self.load_checkpoint()
        self.meta_base = self._meta_base(extra_meta)
        self._cursor: tuple[int, int, np.random.Generator, np.ndarray] | None = None

    def _meta_base(self, extra_meta: dict | None) -> dict:
        """The metadata every saved best weights carry (the epoch and validation figures are added per save)."""
        cfg, train = self.cfg, self.train_set
        meta = {
            "name": cfg.model,
            "model": cfg.model,
            "model_kwargs": self.model_kwargs,
            "task": "classification",
            **self.adapter.meta(),
            "in_channels": int(train.patches.shape[-1]),
            "colour": "rgb",
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "train_counts": [int(v) for v in self.counts],
            "class_weights": [float(v) for v in self.class_weights],
            "train_config": cfg.to_dict(),
            "train_images": sorted(set(train.image_ids.tolist())),
            "machine": machine(),
        }
        if train.patches.shape[-1] == 3:
            from ..transforms import lab_moments

            # The stain of the training patches, for Reinhard normalisation of
            # other labs' patches at inference (PatchInferenceConfig.stain_normalise).
            lab_mean, lab_std = lab_moments(train.patches)
            meta["lab_mean"] = [float(v) for v in lab_mean]
            meta["lab_std"] = [float(v) for v in lab_std]
        return {**meta, **(extra_meta or {})}

    # ----------------------------------------------------------------- hooks of the loop

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch

    @property
    def val_every(self) -> int:
        return self.steps_per_epoch

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return self.state.step // self.steps_per_epoch

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Standardised augmented patches (B, s, s, C) float32 and their labels (B,) of step ``step``.

        The epoch's generator (seeded with ``(seed, epoch)``) draws the epoch's
        order, then each batch's augmentation in turn; steps are asked for in
        order, and a step asked for out of order (none is, within one run) is
        reached by replaying the draws of the epoch's earlier batches.
        """
        cfg, train = self.cfg, self.train_set
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._cursor is None or self._cursor[:2] != (epoch, position):
            rng = np.random.default_rng((cfg.seed, epoch))
            order = epoch_order(rng, train.labels, self.class_weights, cfg.sampling)
            for k in range(position):
                augment_patches(rng, train.patches[order[k * cfg.batch_size : (k + 1) * cfg.batch_size]], cfg.augment)
            self._cursor = (epoch, position, rng, order)
        _, _, rng, order = self._cursor
        idx = order[position * cfg.batch_size : (position + 1) * cfg.batch_size]
        x = (augment_patches(rng, train.patches[idx], cfg.augment) - self.mean) / self.std
        self._cursor = (epoch, position + 1, rng, order)
        return x, train.labels[idx]

    def train_mode(self) -> None:
        self.net.train()

    def step(self, batch: tuple[np.ndarray, np.ndarray]) -> float:
        """One SGD step at the scheduled learning rate; returns the loss."""
        import torch

        from ..losses import cross_entropy

        cfg = self.cfg
        x, y = batch
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        if cfg.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        lr = scheduled_lr(cfg.lr, cfg.lr_schedule, self.state.step, self.total_steps)
        for group in self.opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = self.net(xt)
        loss = cross_entropy(logits.float(), torch.from_numpy(y), weight=self.loss_weight,
                             label_smoothing=cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.state.step += 1
        return float(loss.detach())

    def classifier(self):
        """The network as it is now, as the :class:`~nucleikit.infer.classify.Classifier` the weights will load as."""
        from ..infer.classify import Classifier, PatchInferenceConfig

        cfg = self.cfg
        meta = {"task": "classification", "classes": list(cfg.classes), "mpp": cfg.mpp, "patch": cfg.patch,
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
        # threads=None keeps the training's threads; no BN folding copy; the training memory format
        config = PatchInferenceConfig(threads=None, channels_last=cfg.channels_last, fold_bn=False, tta=cfg.tta)
        return Classifier(self.model, meta, config=config, source=self.out)

    def validate(self) -> Validation:
        """The task's scores of the validation patches' probabilities (with ``tta`` views; eval mode)."""
        clf = self.classifier()
        patches = self.val_set.patches
        one_view = clf.predict_patches(patches, tta=1) if self.cfg.tta > 1 else None
        return self.adapter.validate(clf.predict_patches(patches), self.val_set, one_view=one_view)

    def save_best(self, res: Validation) -> None:
        from ..models.weights import save_weights

        self.state.best = {**res.record, "score": res.score}
        self.state.best_step = self.state.step
        images = list(dict.fromkeys(self.val_set.image_ids.tolist()))
        meta = {**self.meta_base, "epoch": self.epoch, "validation": {**res.record, "images": images}}
        save_weights(self.best_path, self.model, meta)

    def _score_history(self) -> list[float]:
        return [float(h["val_weighted_f1"]) for h in self.history]

    @staticmethod
    def _record_score(record: dict) -> float:
        return float(record["val_weighted_f1"])

    def _validation_round(self, running: list[float], t0: float) -> dict:
        """Validate after an epoch, save the best weights; the epoch's log record."""
        res = self.validate()
        scores = res.record
        record = {
            "epoch": self.epoch,
            "train_loss": float(np.mean(running)),
            "val_loss": scores["loss"],
            "val_weighted_f1": scores["weighted_f1"],
            "val_macro_f1": scores["macro_f1"],
            "val_accuracy": scores["accuracy"],
            "lr": self.opt.param_groups[0]["lr"],
            "elapsed_s": time.perf_counter() - t0,
        }
        if "weighted_f1_one_view" in scores:
            record["val_weighted_f1_one_view"] = scores["weighted_f1_one_view"]
        if res.score > self.state.best["score"]:
            self.save_best(res)
            record["best"] = True
        self.history.append(record)
        return record

    # ----------------------------------------------------------------- checkpoint

    def checkpoint(self, elapsed: float) -> None:
        """Write ``checkpoint.pt`` (:data:`CHECKPOINT_KEYS` and ``train_s``) under a temporary name, then rename."""
        import torch

        s = self.state
        s.elapsed = elapsed
        ck = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": self.epoch,
            "best": s.best,
            "best_epoch": s.best_step // self.steps_per_epoch,
            "history": self.history,
            "elapsed": elapsed,
            "train_s": s.train_s,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "torch_rng": torch.get_rng_state(),
            "config": self.cfg.to_dict(),
        }
        save_checkpoint_file(ck, self.checkpoint_path)

    def load_checkpoint(self) -> None:
        """Continue from ``checkpoint.pt`` (this format, or a run started before 0.2 without ``train_s``).

        Raises
        ------
        ConfigError
            In one line: the file is no classification checkpoint (e.g. a detector's run
            folder), or was written with another configuration than ``cfg`` (apart from
            ``epochs`` and ``threads``).
        """
        import torch

        path = self.checkpoint_path
        ck = torch.load(path, map_location="cpu", weights_only=True)
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
        if missing:
            raise ConfigError(f"{path} is not a classification checkpoint (no {', '.join(missing)}); "
                              "move it away or use another run folder")
        try:
            saved = ClassifyConfig.from_dict(ck["config"])
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{path} holds a configuration this version cannot read ({exc}); "
                              "use another run folder") from None
        differ = [f.name for f in dataclasses.fields(ClassifyConfig)
                  if f.name not in _RESUMABLE and getattr(saved, f.name) != getattr(self.cfg, f.name)]
        if differ:
            raise ConfigError(f"{path} was written with a different {', '.join(differ)}; use another out_dir")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        best = dict(ck["best"])
        best.setdefault("score", best.get("weighted_f1", -1.0))
        elapsed = float(ck["elapsed"])
        spe = self.steps_per_epoch
        self.state = RunState(int(ck["epoch"]) * spe, best, int(ck["best_epoch"]) * spe, elapsed,
                              float(ck.get("train_s", elapsed)))
        self.history = [dict(h) for h in ck["history"]]
        self.mean = np.asarray(ck["mean"], np.float32)
        self.std = np.asarray(ck["std"], np.float32)
        torch.set_rng_state(ck["torch_rng"])

    # ----------------------------------------------------------------- the run

    def run(self, *, progress: bool = True,
            on_validate: Callable[[int, dict], None] | None = None) -> ClassifyResult:
        """Train up to ``cfg.epochs`` on the shared loop; torch's thread count is restored afterwards."""
        import torch

        try:
            res = super().run(progress=progress, on_validate=on_validate)
        finally:
            torch.set_num_threads(self._threads_before)
        best = {k: v for k, v in self.state.best.items() if k != "score"}
        return ClassifyResult(self.best_path, self.state.best_step // self.steps_per_epoch, best, self.epoch,
                              tuple(self.history), res.wall_time_s)


def train_classifier(
    train_samples: Sequence[Any] | PatchSet,
    val_samples: Sequence[Any] | PatchSet,
    cfg: ClassifyConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    extra_meta: dict | None = None,
) -> ClassifyResult:
    """Train a patch classifier, validating and checkpointing every epoch.

    Parameters
    ----------
    train_samples, val_samples : sequence of PointSample, or PatchSet
        Images with classified points (see :meth:`PatchSet.from_samples`),
        or patches already cut (their classes, patch size and resolution
        must agree with ``cfg``; the patch-level protocol passes these).
    cfg : ClassifyConfig
    out_dir : str or Path
        Run folder (created if needed; see the module docstring).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when present. The checkpoint's
        configuration must equal ``cfg`` except for ``epochs`` and ``threads``.
    progress : bool
        Show a Rich progress bar.
    extra_meta : dict or None
        Added to the saved weights' metadata (protocol, split).

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
    trainer = ClassificationTrainer(train_samples, val_samples, cfg, out_dir, resume=resume, extra_meta=extra_meta)
    return trainer.run(progress=progress)
