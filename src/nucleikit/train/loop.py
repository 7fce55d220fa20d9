"""The dense training loop: checkpoints, resume, validation, best weights, DDP.

One loop, :func:`train_dense`, serves every dense model — the detectors
(MicroNet, UD-Net, the baselines; :func:`train_detector`), the segmenters
(U-Net, R2U-Net; :func:`train_segmenter`), fine-tuning (``init`` +
``freeze_blocks``) and the transfer experiments. What differs between tasks
(targets, loss, validation scoring) comes from an adapter in
:mod:`nucleikit.train.tasks`. It writes into ``out_dir``:

* ``checkpoint.pt`` — model, optimiser, scheduler, step and RNG states after
  the last validation (loaded with ``torch.load(weights_only=True)``); a run
  started again with the same ``out_dir`` resumes from it;
* ``best.safetensors`` — the weights with the best validation score so far
  (F1 or Dice), with their metadata (resolution, normalisation, tuned
  post-processing, the validation figures, the configuration);
* ``log.jsonl`` — one JSON object per validation.
"""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..transforms import channel_stats, standardise
from .augment import random_crop
from .config import TrainConfig
from .tasks import PreparedImage, task_for

__all__ = ["train_dense", "train_detector", "train_segmenter", "TrainResult"]


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


@dataclass(frozen=True)
class _Dist:
    """This process's place in a torch.distributed job (world 1 without one)."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "_Dist":
        """Join the job that ``torchrun`` describes in the environment (gloo, CPU)."""
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 or not dist.is_available():
            return cls()
        owns = False
        if not dist.is_initialized():
            dist.init_process_group("gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), owns)

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (a barrier too)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()}"


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

    Notes
    -----
    Run under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` set), the loop
    joins the job with the gloo backend (CPU) and trains with
    DistributedDataParallel: each process draws its own crops, gradients are
    averaged, process 0 validates, logs and saves, and broadcasts the
    validation F1 so that all processes follow one learning-rate schedule.
    on_validate : callable or None
        Called as ``on_validate(step, record)`` after each validation.
    task : {"detection", "segmentation"} or None
        Must match the model's registry task when given (None: the model's).

    Returns
    -------
    TrainResult
    """
    import torch

    from ..infer.predict import DensePredictor, InferenceConfig
    from ..infer.tiling import measure_halo, measure_halo_grown
    from ..losses import get_loss
    from ..models import build_model, get_spec
    from ..models.blocks import freeze_blocks
    from ..models.weights import load_weights, read_weights_meta, resolve_weights, save_weights

    cfg = cfg.resolved()
    spec = get_spec(cfg.model)
    if task is not None and spec.task != task:
        raise ConfigError(f"model {cfg.model!r} is a {spec.task} model, not a {task} model")
    if cfg.init and spec.task == "segmentation":
        cfg = _inherit_input_format(cfg, read_weights_meta(resolve_weights(cfg.init)))
    adapter = task_for(spec.target, spec.task, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if train_sets and not isinstance(train_sets[0], (list, tuple)) and hasattr(train_sets[0], "load_image"):
        train_sets = [train_sets]
    weights_per_set = list(set_weights) if set_weights is not None else [1.0] * len(train_sets)
    if len(weights_per_set) != len(train_sets):
        raise ConfigError(f"{len(train_sets)} training sets but {len(weights_per_set)} set weights")
    if not val_samples:
        raise ConfigError("validation images are needed to choose the best weights and xi")

    torch.set_num_threads(cfg.threads)
    dist = _Dist.from_env()
    # Dropout masks differ between DDP processes; everything else is shared.
    _set_seeds(cfg.seed + dist.rank)

    # --- data -----------------------------------------------------------------
    train_images: list[PreparedImage] = []
    for samples, w in zip(train_sets, weights_per_set):
        train_images += adapter.prepare(samples, weight=w, training=True)
    adapter.check(train_images)
    val_images = adapter.prepare(val_samples, training=False)
    sizes = np.array([im.pixels.shape[0] * im.pixels.shape[1] for im in train_images], float)
    probs = sizes / sizes.sum()

    # --- model ----------------------------------------------------------------
    init_meta: dict = {}
    if cfg.init:
        model, init_meta = load_weights(resolve_weights(cfg.init))
        if init_meta.get("model") != cfg.model:
            raise ConfigError(f"--init weights are a {init_meta.get('model')!r} model, not {cfg.model!r}")
        model_kwargs = dict(init_meta.get("model_kwargs", {}))
        mean, std = np.asarray(init_meta["mean"], np.float32), np.asarray(init_meta["std"], np.float32)
    else:
        model_kwargs = dict(cfg.model_kwargs)
        model = build_model(cfg.model, **model_kwargs)
        mean, std = channel_stats([im.pixels for im in train_images])
    if cfg.freeze_blocks:
        freeze_blocks(model, cfg.freeze_blocks)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Gradients are averaged over the processes after each backward pass,
        # so every process holds the same weights; each draws its own crops
        # (the effective batch is batch_size * world).
        net = DistributedDataParallel(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    loss_kwargs = {"lam": cfg.lam} if spec.loss == "weighted_mse" else {}
    loss_fn = get_loss(spec.loss, **loss_kwargs)

    step = 0
    best: dict = {"score": -1.0}
    best_step = 0
    elapsed = 0.0
    # seconds spent in optimisation steps only (no validation, no saving): the
    # fair clock for comparing architectures at equal wall time
    train_s = 0.0
    ckpt_path = out / "checkpoint.pt"
    best_path = out / "best.safetensors"
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck["config"]["model"] != cfg.model:
            raise ConfigError(f"{ckpt_path} belongs to a {ck['config']['model']!r} run, not {cfg.model!r}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step = int(ck["step"])
        best = dict(ck["best"])
        best.setdefault("score", best.get("f1", -1.0))  # checkpoints of version 0.1.0 runs
        best_step = int(ck["best_step"])
        elapsed = float(ck["elapsed"])
        train_s = float(ck.get("train_s", elapsed))  # older checkpoints kept only the total
        mean = np.asarray(ck["mean"], np.float32)
        std = np.asarray(ck["std"], np.float32)
        torch.set_rng_state(ck["torch_rng"])
        if dist.rank:
            torch.manual_seed(cfg.seed + dist.rank + step)  # the checkpoint holds process 0's generator

    meta_base = {
        "name": (extra_meta or {}).get("name", cfg.model),
        "model": cfg.model,
        "model_kwargs": model_kwargs,
        "task": spec.task,
        "target": spec.target,
        "mpp": cfg.mpp,
        "in_channels": int(len(mean)),
        "colour": "rgb",
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "train_config": cfg.to_dict(),
        "init": init_meta.get("name") if cfg.init else None,
        "machine": _machine(),
        **adapter.meta(),
        **(extra_meta or {}),
    }

    def validate():
        model.eval()
        predictor = DensePredictor(
            model, mean=mean, std=std, halo=halo, config=InferenceConfig(threads=None, channels_last=cfg.channels_last)
        )
        return adapter.validate([predictor(im.pixels) for im in val_images], val_images)

    # Validation images are small (usually one tile), so validation uses the
    # untrained network's receptive field; the halo saved with the weights is
    # measured again on the trained network (training widens the effective
    # receptive field, and tiled inference is exact only with the wider one).
    model.eval()
    halo = measure_halo(
        DensePredictor(model, mean=mean, std=std, halo=0, config=InferenceConfig(channels_last=cfg.channels_last)).forward,
        in_channels=len(mean),
    )

    def trained_halo() -> int:
        model.eval()
        fwd = DensePredictor(model, mean=mean, std=std, halo=0, config=InferenceConfig(channels_last=cfg.channels_last)).forward
        try:
            return measure_halo_grown(fwd, in_channels=len(mean), tol=1e-4)
        except ValueError:
            # wider than any probe: keep training, save the widest measurement
            # (measure_halo warns that tiled output will differ from untiled)
            return measure_halo(fwd, in_channels=len(mean), size=1024, tol=1e-4)

    log = open(out / "log.jsonl", "a", encoding="utf-8") if dist.main else None
    bar = None
    if progress and dist.main:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[score]:.3f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        bar.start()
        task_bar = bar.add_task(f"train {cfg.model}", total=cfg.steps, completed=step, loss=float("nan"),
                                score=max(best["score"], 0.0))
    t0 = time.perf_counter() - elapsed
    running = []
    # Augmentation (NumPy/SciPy, which release the GIL) of the next batch runs
    # in a thread while torch computes the current one.
    pool = ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(_batch, cfg.seed, step, train_images, cfg, probs, dist.rank)
    try:
        while step < cfg.steps:
            net.train()
            if cfg.freeze_blocks:
                freeze_blocks(model, cfg.freeze_blocks)  # re-applies eval() to frozen BN layers
            t_step = time.perf_counter()
            x, y, w = pending.result()
            if step + 1 < cfg.steps:
                pending = pool.submit(_batch, cfg.seed, step + 1, train_images, cfg, probs, dist.rank)
            x = standardise(x, mean, std)
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            # (B, H, W) one-channel targets, (B, H, W, K) for multi-channel heads
            yt = torch.from_numpy(np.ascontiguousarray(y[:, None] if y.ndim == 3 else y.transpose(0, 3, 1, 2)))
            if cfg.channels_last:
                xt = xt.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                o = net(xt)
            o = o.float()
            if np.all(w == 1.0):
                loss = loss_fn(o, yt)
            else:
                per = torch.stack([loss_fn(o[i : i + 1], yt[i : i + 1]) for i in range(len(w))])
                loss = (per * torch.from_numpy(w)).sum() / float(len(w))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            train_s += time.perf_counter() - t_step
            running.append(float(loss.detach()))
            if bar is not None:
                bar.update(task_bar, completed=step, loss=float(np.mean(running[-50:])))
            if step % cfg.val_every == 0 or step == cfg.steps:
                res = validate() if dist.main else None
                # every process follows the same learning-rate schedule
                sched.step(dist.broadcast(res.score if res is not None else None))
                if not dist.main:
                    continue
                record = {
                    "step": step,
                    "loss": float(np.mean(running)) if running else None,
                    **res.record,
                    "score": res.score,
                    "lr": opt.param_groups[0]["lr"],
                    "elapsed_s": time.perf_counter() - t0,
                    "train_s": train_s,
                }
                running = []
                if res.score > best["score"]:
                    best = {**res.record, **res.postprocess, "score": res.score}
                    best_step = step
                    meta = dict(meta_base)
                    meta.update(
                        {
                            "postprocess": dict(res.postprocess),
                            "halo": trained_halo(),
                            "step": step,
                            "validation": {
                                **{k[4:] if k.startswith("val_") else k: v for k, v in res.record.items()},
                                "images": [im.id for im in val_images],
                            },
                        }
                    )
                    save_weights(best_path, model, meta)
                    record["best"] = True
                log.write(json.dumps(record) + "\n")
                log.flush()
                if on_validate is not None:
                    on_validate(step, record)
                _save_checkpoint(ckpt_path, model, opt, sched, step, best, best_step, time.perf_counter() - t0,
                                 mean, std, cfg, train_s)
                if bar is not None:
                    bar.update(task_bar, score=max(best["score"], 0.0))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if log is not None:
            log.close()
        if bar is not None:
            bar.stop()
        dist.close()
    return TrainResult(best_path, best_step, best, step, time.perf_counter() - t0, model)


def _inherit_input_format(cfg: TrainConfig, init_meta: dict) -> TrainConfig:
    """A fine-tuned segmenter sees its input as the ``--init`` weights were trained to.

    Colour and per-image intensity normalisation always come from the initial weights (the
    network's first layer and its stored mean/std were fitted to them); the resolution too,
    unless the configuration names one.
    """
    import dataclasses

    changes = {"colour": init_meta.get("colour", cfg.colour), "intensity": init_meta.get("intensity", cfg.intensity)}
    if cfg.mpp is None and init_meta.get("mpp") is not None:
        changes["mpp"] = float(init_meta["mpp"])
    return dataclasses.replace(cfg, **changes)


def _save_checkpoint(path: Path, model, opt, sched, step, best, best_step, elapsed, mean, std, cfg,
                     train_s: float) -> None:
    import torch

    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "best": best,
        "best_step": best_step,
        "elapsed": elapsed,
        "train_s": train_s,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "torch_rng": torch.get_rng_state(),
        "config": cfg.to_dict(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
