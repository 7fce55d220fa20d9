"""The dense training loop: a :class:`Trainer` with checkpoints, resume, validation, DDP.

One loop serves every dense model — the detectors (MicroNet, UD-Net, the
baselines; :func:`train_detector`), the segmenters (U-Net, R2U-Net;
:func:`train_segmenter`), fine-tuning (``init`` + ``freeze_blocks``) and the
transfer experiments. What differs between tasks (targets, loss, validation
scoring) comes from a task adapter (:class:`~nucleikit.train.tasks.TaskAdapter`,
:mod:`nucleikit.train.tasks`; distillation: :mod:`nucleikit.train.distill`) plugged into
the trainer (``train_dense(..., adapter=)``). The DDP job, progress bar and machine
description live in :mod:`nucleikit.train.runtime`. The trainer's parts:

* **setup** (the constructor): configuration, the torch.distributed job, seeds,
  the data prepared by the adapter, the network (built, or loaded from ``init``
  and frozen), optimiser and plateau schedule, the checkpoint of a run in
  progress, the halo validation tiles with;
* :meth:`Trainer.step` — one optimisation step on one batch;
* :meth:`Trainer.validate` — the adapter's score of the validation maps;
* :meth:`Trainer.save_best` and :meth:`Trainer.checkpoint` — what is written;
* :meth:`Trainer.run` — steps up to :attr:`Trainer.total_steps`, a validation, log line
  and checkpoint every :attr:`Trainer.val_every` steps (``cfg.steps``, ``cfg.val_every``),
  batches from :meth:`Trainer.batch`.

The patch classifiers run on the same :meth:`Trainer.run`:
:class:`nucleikit.train.classify.ClassificationTrainer` overrides the setup and these
hooks (an epoch of patches is ``val_every`` steps; its own checkpoint keys).

It writes into ``out_dir``:

* ``checkpoint.pt`` — after each validation (``torch.load(weights_only=True)``);
  a run started again with the same ``out_dir`` resumes from it. Its keys
  (:data:`CHECKPOINT_KEYS`, the format runs in progress were written with):
  ``model``, ``optimizer``, ``scheduler`` (state dicts), ``step``, ``best``,
  ``best_step``, ``elapsed``, ``train_s`` (as :class:`RunState`), ``mean`` and
  ``std`` (input statistics, lists), ``torch_rng`` (process 0's generator) and
  ``config`` (:meth:`TrainConfig.to_dict`);
* ``best.safetensors`` — the weights with the best validation score so far
  (F1, Dice or AJI), with their metadata (resolution, normalisation, tuned
  post-processing, the validation figures, the configuration, the halo of the
  trained network);
* ``log.jsonl`` — one JSON object per validation.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..transforms import channel_stats, standardise
from .augment import random_crop
from .config import TrainConfig
from .runtime import Dist, ProgressBar, machine
from .stopping import plateaued, scores_from_log, stop_reason, stopped_reason
from .tasks import PreparedImage, TaskAdapter, Validation, task_for

if TYPE_CHECKING:
    from ..models.weights_meta import WeightsMeta

__all__ = ["CHECKPOINT_KEYS", "Trainer", "TrainResult", "train_dense", "train_detector", "train_segmenter"]

#: Keys of ``checkpoint.pt`` (module docstring). Changing them breaks the resume of runs in progress.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "step", "best", "best_step", "elapsed", "train_s", "mean",
                   "std", "torch_rng", "config")


@dataclass(frozen=True)
class TrainResult:
    """Where a run ended.

    Attributes
    ----------
    best_weights : Path
        Weights with the best validation score (written by process 0).
    best_step : int
    best : dict
        Their validation figures and post-processing values.
    steps_done : int
    wall_time_s : float
    model : torch.nn.Module or None
        The network as it is after the last step (not the best one).
    """

    best_weights: Path
    best_step: int
    best: dict
    steps_done: int
    wall_time_s: float
    model: Any = field(default=None, repr=False, compare=False)


@dataclass
class RunState:
    """How far a run is: what a checkpoint holds besides the network and optimiser states.

    Attributes
    ----------
    step : int
        Optimisation steps done.
    best : dict
        Validation record and post-processing of the best weights, with ``score``
        (-1 before the first validation).
    best_step : int
    elapsed : float
        Wall seconds of the run at the last checkpoint (resumes included).
    train_s : float
        Seconds in optimisation steps only (no validation, no saving): the clock for equal-time comparisons.
    """

    step: int = 0
    best: dict = field(default_factory=lambda: {"score": -1.0})
    best_step: int = 0
    elapsed: float = 0.0
    train_s: float = 0.0


@dataclass(frozen=True)
class _Data:
    """The prepared images, and the probability of drawing each training image (by area)."""

    train: list[PreparedImage]
    val: list[PreparedImage]
    probs: np.ndarray


def _set_seeds(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # only for third-party code that uses the legacy global RNG


def _batch(seed: int, step: int, images: list[PreparedImage], cfg: TrainConfig, probs: np.ndarray, rank: int = 0):
    """The augmented batch of one step (of one process, under DDP).

    Its random generator is derived from (seed, step[, rank]) alone, so a batch
    does not depend on what came before: a resumed run draws exactly the
    batches the uninterrupted run would have, batches can be prepared ahead in a
    thread, and DDP processes draw different crops.

    Returns
    -------
    x : (B, crop, crop, C) float32
    y : (B, crop, crop) or (B, crop, crop, K) float32
    w : (B,) float32
        The loss weight of each image's data set.
    """
    rng = np.random.default_rng((seed, step) if rank == 0 else (seed, step, rank))
    idx = rng.choice(len(images), size=cfg.batch_size, p=probs)
    xs, ys, ws = [], [], []
    for i in idx:
        im = images[i]
        x, y = random_crop(rng, im.pixels, im.target, cfg.crop, cfg.augment)
        xs.append(x)
        ys.append(y)
        ws.append(im.weight)
    return np.stack(xs), np.stack(ys), np.asarray(ws, np.float32)


def train_detector(train_sets, val_samples, cfg: TrainConfig, out_dir, **kwargs) -> "TrainResult":
    """Train a point detector (MicroNet, UD-Net, FCRN, U-Net regressor); see :func:`train_dense`."""
    return train_dense(train_sets, val_samples, cfg, out_dir, task="detection", **kwargs)


def train_segmenter(train_sets, val_samples, cfg: TrainConfig, out_dir, **kwargs) -> "TrainResult":
    """Train a nucleus segmenter (U-Net, R2U-Net) on labelled samples; see :func:`train_dense`."""
    return train_dense(train_sets, val_samples, cfg, out_dir, task="segmentation", **kwargs)


def train_dense(
    train_sets: Sequence[Sequence[Any]] | Sequence[Any],
    val_samples: Sequence[Any],
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    set_weights: Sequence[float] | None = None,
    resume: bool = True,
    progress: bool = True,
    extra_meta: dict | None = None,
    on_validate: Callable[[int, dict], None] | None = None,
    task: str | None = None,
    adapter: TaskAdapter | None = None,
) -> TrainResult:
    """Train a dense model with validation-driven checkpointing.

    Parameters
    ----------
    train_sets : sequence of samples, or sequence of sequences of samples
        Training images (point samples for detection, label samples for
        segmentation; see :mod:`nucleikit.train.tasks`). Several sets (target and
        auxiliary data) may be given; each batch draws images from all of them
        in proportion to their sizes and each loss term is multiplied by the
        set's weight (``set_weights``; Xing et al.'s gamma).
    val_samples : sequence of samples
        Validation images: the score every ``cfg.val_every`` steps picks the
        best weights and the post-processing values saved with them.
    cfg : TrainConfig
    out_dir : path
        Run folder (checkpoint, best weights, log).
    set_weights : sequence of float or None
        Loss weight per training set (default 1 each).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when present.
    progress : bool
        Show a Rich progress bar (loss, F1, ETA).
    extra_meta : dict or None
        Added to the saved weights' metadata (e.g. the data set and split).
    on_validate : callable or None
        Called as ``on_validate(step, record)`` after each validation.
    task : {"detection", "segmentation"} or None
        Must match the model's registry task when given (None: the model's).
    adapter : TaskAdapter or None
        Targets and validation of another kind than the registry task's (e.g.
        :class:`~nucleikit.train.distill.DistillationTask`: a teacher's maps as targets);
        None: the model's registry task (:func:`~nucleikit.train.tasks.task_for`).

    Returns
    -------
    TrainResult

    Notes
    -----
    Run under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` set), the loop
    joins the job with the gloo backend (CPU) and trains with
    DistributedDataParallel: each process draws its own crops, gradients are
    averaged, process 0 validates, logs and saves, and broadcasts the
    validation score so that all processes follow one learning-rate schedule.
    """
    trainer_class = Trainer
    from ..models import get_spec

    if get_spec(cfg.model).target == "boxes":
        # box detectors (Faster R-CNN) learn from boxes around the points, not from a dense map
        from .boxes import BoxTrainer as trainer_class
    # given only when set: the box trainer chooses its own adapter otherwise
    chosen = {"adapter": adapter} if adapter is not None else {}
    trainer = trainer_class(train_sets, val_samples, cfg, out_dir, set_weights=set_weights, resume=resume,
                            extra_meta=extra_meta, task=task, **chosen)
    return trainer.run(progress=progress, on_validate=on_validate)


class Trainer:
    """One dense training run (module docstring): set up here, then :meth:`run`.

    Parameters
    ----------
    train_sets, val_samples, cfg, out_dir, set_weights, resume, extra_meta, task
        As :func:`train_dense`.
    adapter : TaskAdapter or None
        What turns samples into targets and scores validation maps; None takes the
        adapter of the model's registry task (:func:`~nucleikit.train.tasks.task_for`).

    Attributes
    ----------
    cfg : TrainConfig
        Resolved (recipe values filled; input format inherited from ``init``).
    model, net : torch.nn.Module
        The network, and the same one wrapped for DDP (``net is model`` in one process).
    state : RunState
    mean, std : (C,) float32
        Input statistics (of the training images, of ``init``, or of the checkpoint).
    halo : int
        Context of the validation tiles: the untrained network's receptive field.
    """

    def __init__(
        self,
        train_sets: Sequence[Sequence[Any]] | Sequence[Any],
        val_samples: Sequence[Any],
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        set_weights: Sequence[float] | None = None,
        resume: bool = True,
        extra_meta: dict | None = None,
        task: str | None = None,
        adapter: TaskAdapter | None = None,
    ) -> None:
        import torch

        from ..models import get_spec
        from ..models.weights import read_weights_meta, resolve_weights

        cfg = cfg.resolved()
        self.spec = get_spec(cfg.model)
        if task is not None and self.spec.task != task:
            raise ConfigError(f"model {cfg.model!r} is a {self.spec.task} model, not a {task} model")
        if cfg.init and self.spec.task == "segmentation":
            cfg = _inherit_input_format(cfg, read_weights_meta(resolve_weights(cfg.init)))
        self.cfg = cfg
        self.adapter = adapter if adapter is not None else task_for(self.spec.target, self.spec.task, cfg)
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path, self.best_path = self.out / "checkpoint.pt", self.out / "best.safetensors"
        train_sets, weights_per_set = _training_sets(train_sets, set_weights)
        if not val_samples:
            raise ConfigError("validation images are needed to choose the best weights and xi")

        torch.set_num_threads(cfg.threads)
        self.dist = Dist.from_env()
        # Dropout masks differ between DDP processes; everything else is shared.
        _set_seeds(cfg.seed + self.dist.rank)
        self.data = _prepare(self.adapter, train_sets, weights_per_set, val_samples)
        self._build_network()
        self._build_optimiser()
        self.state = RunState()
        if resume and self.checkpoint_path.exists():
            self.load_checkpoint()
        self.meta_base = self._meta_base(extra_meta)
        # Validation images are small (usually one tile), so validation uses the
        # untrained network's receptive field; the halo saved with the weights is
        # measured again on the trained network (training widens the effective
        # receptive field, and tiled inference is exact only with the wider one).
        self.halo = self._measure_halo(trained=False)

    # ----------------------------------------------------------------- setup

    def _build_network(self) -> None:
        """The network: loaded from ``cfg.init`` or built; frozen, channels-last, DDP-wrapped."""
        import torch

        from ..models import build_model
        from ..models.blocks import freeze_blocks
        from ..models.weights import load_weights, resolve_weights
        from ..models.weights_meta import WeightsMeta, to_json

        cfg = self.cfg
        self.init_meta: WeightsMeta | None = None  # the --init weights' metadata
        if cfg.init:
            model, self.init_meta = load_weights(resolve_weights(cfg.init))
            if self.init_meta.model != cfg.model:
                raise ConfigError(f"--init weights are a {self.init_meta.model!r} model, not {cfg.model!r}")
            self.model_kwargs = to_json(self.init_meta.model_kwargs)
            self.mean = np.asarray(self.init_meta.mean, np.float32)
            self.std = np.asarray(self.init_meta.std, np.float32)
        else:
            self.model_kwargs = dict(cfg.model_kwargs)
            model = build_model(cfg.model, **self.model_kwargs)
            self.mean, self.std = channel_stats([im.pixels for im in self.data.train])
        if cfg.freeze_blocks:
            freeze_blocks(model, cfg.freeze_blocks)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.net = model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Gradients are averaged over the processes after each backward pass,
            # so every process holds the same weights; each draws its own crops
            # (the effective batch is batch_size * world).
            self.net = DistributedDataParallel(model)

    def _build_optimiser(self) -> None:
        """SGD (Nesterov) or Adam over the trainable parameters, a plateau schedule, the loss."""
        import torch

        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                       weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
        self.loss_fn = self._make_loss()

    def _make_loss(self):
        """The model's registry loss (:mod:`nucleikit.losses`), as a function of (output, target)."""
        from ..losses import get_loss

        loss_kwargs = {"lam": self.cfg.lam} if self.spec.loss == "weighted_mse" else {}
        return get_loss(self.spec.loss, **loss_kwargs)

    def _meta_base(self, extra_meta: dict | None) -> dict:
        """The metadata every saved best weights carry (validation figures are added per save)."""
        cfg = self.cfg
        return {
            "name": (extra_meta or {}).get("name", cfg.model),
            "model": cfg.model,
            "model_kwargs": self.model_kwargs,
            "task": self.spec.task,
            "target": self.spec.target,
            "mpp": cfg.mpp,
            "in_channels": int(len(self.mean)),
            "colour": "rgb",
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "train_config": cfg.to_dict(),
            "init": self.init_meta.name if self.init_meta is not None else None,
            "machine": machine(),
            **self.adapter.meta(),
            **(extra_meta or {}),
        }

    def _predictor(self, halo: int):
        """The network in eval mode as a tiled predictor (its own lattice, ``model.alignment``)."""
        from ..infer.predict import DensePredictor, InferenceConfig

        self.model.eval()
        # threads=None: torch keeps the training's thread count
        config = InferenceConfig(threads=None, channels_last=self.cfg.channels_last)
        return DensePredictor(self.model, mean=self.mean, std=self.std, halo=halo, config=config)

    def _measure_halo(self, *, trained: bool) -> int:
        """Receptive-field radius of the network (:mod:`nucleikit.infer.tiling`), in model pixels.

        Untrained: one 256-px impulse probe (tolerance 1e-3). Trained (saved with the
        weights): probes grown until the field fits (tolerance 1e-4); a field wider than
        any probe keeps training and saves the widest measurement (``measure_halo``
        warns that tiled output will then differ from untiled output).
        """
        from ..infer.tiling import measure_halo, measure_halo_grown

        predictor = self._predictor(halo=0)
        forward, channels, align = predictor.forward, len(self.mean), predictor.align
        if not trained:
            return measure_halo(forward, in_channels=channels, align=align)
        try:
            return measure_halo_grown(forward, in_channels=channels, tol=1e-4, align=align)
        except ValueError:
            return measure_halo(forward, in_channels=channels, size=1024, tol=1e-4, align=align)

    # ----------------------------------------------------------------- the parts of a run

    @property
    def total_steps(self) -> int:
        """Optimisation steps of the whole run (``cfg.steps``)."""
        return self.cfg.steps

    @property
    def val_every(self) -> int:
        """Steps between validations and checkpoints (``cfg.val_every``)."""
        return self.cfg.val_every

    def batch(self, step: int):
        """The batch of optimisation step ``step`` (0-based): :func:`_batch` of this process; runs in a thread."""
        return _batch(self.cfg.seed, step, self.data.train, self.cfg, self.data.probs, self.dist.rank)

    def train_mode(self) -> None:
        """The network in training mode before each step (frozen blocks kept in eval mode)."""
        from ..models.blocks import freeze_blocks

        self.net.train()
        if self.cfg.freeze_blocks:
            freeze_blocks(self.model, self.cfg.freeze_blocks)  # re-applies eval() to frozen BN layers

    def step(self, batch: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        """One optimisation step on a batch of :func:`_batch`; returns the loss (weighted mean)."""
        import torch

        x, y, w = batch
        xt = self._inputs(x)
        # (B, H, W) one-channel targets, (B, H, W, K) for multi-channel heads
        yt = torch.from_numpy(np.ascontiguousarray(y[:, None] if y.ndim == 3 else y.transpose(0, 3, 1, 2)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.bf16):
            o = self.net(xt)
        o = o.float()
        if np.all(w == 1.0):
            loss = self.loss_fn(o, yt)
        else:
            per = torch.stack([self.loss_fn(o[i : i + 1], yt[i : i + 1]) for i in range(len(w))])
            loss = (per * torch.from_numpy(w)).sum() / float(len(w))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.state.step += 1
        return float(loss.detach())

    def _inputs(self, x: np.ndarray):
        """A (B, H, W, C) batch in [0, 1] as the network's standardised (B, C, H, W) float tensor."""
        import torch

        x = standardise(x, self.mean, self.std)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        if self.cfg.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        return xt

    def validate(self) -> Validation:
        """The adapter's score of the network's maps of the validation images (eval mode)."""
        predictor = self._predictor(self.halo)
        return self.adapter.validate([predictor(im.pixels) for im in self.data.val], self.data.val)

    def save_best(self, res: Validation) -> None:
        """Record ``res`` as the best so far and write the weights with their metadata."""
        from ..models.weights import save_weights

        state = self.state
        state.best = {**res.record, **res.postprocess, "score": res.score}
        state.best_step = state.step
        meta = dict(self.meta_base)
        meta.update(
            {
                "postprocess": dict(res.postprocess),
                "halo": self._measure_halo(trained=True),
                "step": state.step,
                "validation": {
                    **{k[4:] if k.startswith("val_") else k: v for k, v in res.record.items()},
                    "images": [im.id for im in self.data.val],
                },
            }
        )
        save_weights(self.best_path, self.model, meta)

    def checkpoint(self, elapsed: float) -> None:
        """Write ``checkpoint.pt`` (keys :data:`CHECKPOINT_KEYS`) under a temporary name, then rename."""
        import torch

        self.state.elapsed = elapsed
        s = self.state
        ck = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": s.step,
            "best": s.best,
            "best_step": s.best_step,
            "elapsed": s.elapsed,
            "train_s": s.train_s,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "torch_rng": torch.get_rng_state(),
            "config": self.cfg.to_dict(),
        }
        save_checkpoint_file(ck, self.checkpoint_path)

    def load_checkpoint(self) -> None:
        """Continue from ``checkpoint.pt``: network, optimiser, schedule, state, statistics, RNG.

        Raises
        ------
        ConfigError
            The checkpoint belongs to a run of another model.
        """
        import torch

        path = self.checkpoint_path
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck["config"]["model"] != self.cfg.model:
            raise ConfigError(f"{path} belongs to a {ck['config']['model']!r} run, not {self.cfg.model!r}")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        best = dict(ck["best"])
        best.setdefault("score", best.get("f1", -1.0))  # checkpoints of version 0.1.0 runs
        elapsed = float(ck["elapsed"])
        train_s = float(ck.get("train_s", elapsed))  # older checkpoints kept only the total
        self.state = RunState(int(ck["step"]), best, int(ck["best_step"]), elapsed, train_s)
        self.mean = np.asarray(ck["mean"], np.float32)
        self.std = np.asarray(ck["std"], np.float32)
        torch.set_rng_state(ck["torch_rng"])
        if self.dist.rank:
            # the checkpoint holds process 0's generator
            torch.manual_seed(self.cfg.seed + self.dist.rank + self.state.step)

    # ----------------------------------------------------------------- the run

    def run(self, *, progress: bool = True, on_validate: Callable[[int, dict], None] | None = None) -> TrainResult:
        """Train up to ``cfg.steps``, validating, logging and checkpointing every ``cfg.val_every``.

        With ``cfg.stop_patience`` the run ends earlier once validation has plateaued
        (:mod:`nucleikit.train.stopping`); the last log record then says why (``stopped``).

        Parameters
        ----------
        progress : bool
            Show a Rich progress bar (process 0).
        on_validate : callable or None
            Called as ``on_validate(step, record)`` after each validation (process 0).

        Returns
        -------
        TrainResult
        """
        cfg, state, dist = self.cfg, self.state, self.dist
        total, every = self.total_steps, self.val_every
        log = open(self.out / "log.jsonl", "a", encoding="utf-8") if dist.main else None
        bar = ProgressBar(progress and dist.main, f"train {cfg.model}", total, state.step, state.best["score"])
        t0 = time.perf_counter() - state.elapsed
        running: list[float] = []
        # Augmentation (NumPy/SciPy, which release the GIL) of the next batch runs
        # in a thread while torch computes the current one.
        pool = ThreadPoolExecutor(max_workers=1)
        pending = pool.submit(self.batch, state.step)
        # early stopping reads the scores the log already holds, so a resumed run decides as an unbroken one
        scores = self._score_history() if dist.main else []
        stop = self._plateaued(scores)
        if stop and log is not None and stopped_reason(self.out / "log.jsonl") is None:
            # plateaued before this resume (e.g. a run from before early stopping): say so once, without a score
            log.write(json.dumps({"step": state.step, "stopped": stop_reason(cfg.stop_patience, cfg.stop_min_delta)})
                      + "\n")
            log.flush()
        try:
            while state.step < total and not stop:
                self.train_mode()
                t_step = time.perf_counter()
                batch = pending.result()
                if state.step + 1 < total:
                    pending = pool.submit(self.batch, state.step + 1)
                running.append(self.step(batch))
                state.train_s += time.perf_counter() - t_step
                bar.update(completed=state.step, loss=float(np.mean(running[-50:])))
                if state.step % every == 0 or state.step == total:
                    record = self._validation_round(running, t0)
                    if record is not None:
                        scores.append(self._record_score(record))
                    stop = self._plateaued(scores)
                    if record is None:
                        continue  # not process 0
                    if stop:
                        record["stopped"] = stop_reason(cfg.stop_patience, cfg.stop_min_delta)
                    running = []
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    if on_validate is not None:
                        on_validate(state.step, record)
                    self.checkpoint(time.perf_counter() - t0)
                    bar.update(score=max(state.best["score"], 0.0))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if log is not None:
                log.close()
            bar.stop()
            dist.close()
        return TrainResult(self.best_path, state.best_step, state.best, state.step, time.perf_counter() - t0,
                           self.model)

    def _score_history(self) -> list[float]:
        """Validation scores so far, in order (from the log, which a resumed run keeps)."""
        return scores_from_log(self.out / "log.jsonl", self.state.step)

    @staticmethod
    def _record_score(record: dict) -> float:
        """The selection score of one validation's log record."""
        return float(record["score"])

    def _plateaued(self, scores: list[float]) -> bool:
        """Whether to stop now (``cfg.stop_patience``); process 0 decides from its scores, every process follows."""
        decision = plateaued(scores, self.cfg.stop_patience, self.cfg.stop_min_delta) if self.dist.main else None
        return bool(self.dist.broadcast(decision))

    def _validation_round(self, running: list[float], t0: float) -> dict | None:
        """Validate (process 0), step the schedule (every process), save the best weights.

        Returns the log record on process 0, None on the others.
        """
        dist, state = self.dist, self.state
        res = self.validate() if dist.main else None
        # every process follows the same learning-rate schedule
        self.sched.step(dist.broadcast(res.score if res is not None else None))
        if not dist.main:
            return None
        record = {
            "step": state.step,
            "loss": float(np.mean(running)) if running else None,
            **res.record,
            "score": res.score,
            "lr": self.opt.param_groups[0]["lr"],
            "elapsed_s": time.perf_counter() - t0,
            "train_s": state.train_s,
        }
        if res.score > state.best["score"]:
            self.save_best(res)
            record["best"] = True
        return record


def _training_sets(train_sets, set_weights) -> tuple[list, list[float]]:
    """Training sets as a list of sets (one bare set of samples is one set), and their loss weights."""
    if train_sets and not isinstance(train_sets[0], (list, tuple)) and hasattr(train_sets[0], "load_image"):
        train_sets = [train_sets]
    weights = list(set_weights) if set_weights is not None else [1.0] * len(train_sets)
    if len(weights) != len(train_sets):
        raise ConfigError(f"{len(train_sets)} training sets but {len(weights)} set weights")
    return train_sets, weights


def _prepare(adapter: TaskAdapter, train_sets, weights: list[float], val_samples) -> _Data:
    """Training and validation images through the adapter; training images drawn by area."""
    train: list[PreparedImage] = []
    for samples, w in zip(train_sets, weights):
        train += adapter.prepare(samples, weight=w, training=True)
    adapter.check(train)
    val = adapter.prepare(val_samples, training=False)
    sizes = np.array([im.pixels.shape[0] * im.pixels.shape[1] for im in train], float)
    return _Data(train, val, sizes / sizes.sum())


def _inherit_input_format(cfg: TrainConfig, init_meta: WeightsMeta) -> TrainConfig:
    """A fine-tuned segmenter sees its input as the ``--init`` weights were trained to.

    Colour and per-image intensity normalisation always come from the initial weights (the
    network's first layer and its stored mean/std were fitted to them); the resolution too,
    unless the configuration names one. Weights that record no colour or intensity keep the
    configuration's (not the metadata's legacy defaults).
    """
    import dataclasses

    changes = {"colour": init_meta.colour if init_meta.recorded("colour") else cfg.colour,
               "intensity": init_meta.intensity if init_meta.recorded("intensity") else cfg.intensity}
    if cfg.mpp is None and init_meta.mpp is not None:
        changes["mpp"] = float(init_meta.mpp)
    return dataclasses.replace(cfg, **changes)


def save_checkpoint_file(checkpoint: dict, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a killed run never leaves half a checkpoint."""
    import torch

    tmp = Path(path).with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
