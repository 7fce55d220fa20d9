"""Distillation: a narrower detector trained on a teacher detector's maps.

The student learns what the teacher outputs, not what annotators clicked, so any
image can train it: the labelled training images of the data sets and images
nobody annotated (tissue tiles of slides, :func:`slide_tiles`; folders of images,
:func:`image_folder`). :class:`DistillationTask` is a task adapter of the dense loop
(:func:`nucleikit.train.loop.train_dense` with ``adapter=``):

* **targets**: the teacher's raw map (first output channel, before any peak finding
  or calibration) of each training image at the model's resolution, computed by the
  teacher :class:`~nucleikit.infer.predict.Detector` exactly as inference computes it
  (same tiling, halo and memory plan; fp32 whatever the CPU, so targets do not depend
  on the machine's bf16 units). On labelled images the point target
  (:func:`~nucleikit.train.tasks.make_target`) may be mixed in:
  ``(1 - point_weight) * teacher + point_weight * points`` (default 0: teacher only);
* **cache** (:class:`TeacherMaps`): each map is computed once and kept in memory and,
  given a folder (the run folder's ``teacher_maps/``), on disk as ``.npy`` keyed by
  the teacher file's SHA-256 and the image's pixels, so a resumed run, or a second
  run on the same images, reads them instead of running the teacher again;
* **validation**: exactly :class:`~nucleikit.train.tasks.DetectionTask`'s (F1 on the
  validation images' points, xi, peak distance and floor tuned); validation images
  never get a teacher target and unlabelled images are never validation images;
* **loss**: the model's registry loss, Xing et al.'s weighted MSE for MicroNet (the
  teacher's recipe), with the teacher's map as the target.

:func:`flops_per_megapixel` measures what the student saves (torch's FLOP counter,
2 FLOPs per multiply-add).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..transforms import MPP_TOLERANCE, resample, scale_factor, scale_points
from .config import TrainConfig
from .tasks import DetectionTask, PreparedImage, make_target

__all__ = ["DistillationTask", "TeacherMaps", "UnlabelledSample", "flops_per_megapixel", "slide_tiles",
           "image_folder", "file_sha256"]


@dataclass(frozen=True)
class UnlabelledSample:
    """An image nobody annotated: it trains a student on its teacher map, never validates.

    Attributes
    ----------
    id : str
    mpp : float
        Resolution of ``pixels`` (um/px).
    pixels : (H, W, 3) float32 in [0, 1]
    source : str
        Where it comes from (a slide and window, a file), for reports.
    points : (0, 2) array
        Always empty (the loop's samples carry points).
    """

    id: str
    mpp: float
    pixels: np.ndarray = field(repr=False)
    source: str = ""
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), repr=False)

    def load_image(self, mode: str = "rgb") -> np.ndarray:
        return self.pixels


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TeacherMaps:
    """A teacher detector's raw maps of images at its resolution, each computed once.

    Parameters
    ----------
    teacher : str or Path
        Bundled weights name (e.g. ``"micronet_he"``) or a weights file.
    cache_dir : path or None
        Folder of the maps on disk (created on first write); None keeps them in memory only.
    threads : int or None
        torch threads of the teacher's forward passes (None: torch's setting).

    Attributes
    ----------
    path : Path
        The teacher's weights file.
    sha256 : str
        Its content hash: part of every cache key.
    meta : WeightsMeta
        Its metadata, typed (``name``, ``mpp``, ``halo``, ...).
    computed, reused : int
        Maps computed by the teacher and maps read from the cache (memory or disk) so far.
    seconds : float
        Wall time of the teacher's forward passes so far.
    """

    def __init__(self, teacher: str | Path, *, cache_dir: str | Path | None = None, threads: int | None = None) -> None:
        from ..models.weights import read_weights_meta, resolve_weights

        self.path = Path(resolve_weights(teacher))
        self.meta = read_weights_meta(self.path)
        if self.meta.task not in (None, "detection"):
            raise ConfigError(f"teacher {teacher!r} is a {self.meta.task} model, not a detector")
        if self.meta.mpp is None:
            raise ConfigError(f"teacher {teacher!r} records no mpp (the resolution its maps are at)")
        self.sha256 = file_sha256(self.path)
        self.mpp = float(self.meta.mpp)
        self.name = self.meta.name if self.meta.name is not None else self.path.stem
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.threads = threads
        self._detector = None
        self._memory: dict[str, np.ndarray] = {}
        self.computed = self.reused = 0
        self.seconds = 0.0

    @property
    def detector(self):
        """The teacher as inference runs it (fp32), built on first use."""
        if self._detector is None:
            from ..infer.predict import Detector, InferenceConfig

            self._detector = Detector.from_weights(self.path, config=InferenceConfig(threads=self.threads,
                                                                                     precision="fp32"))
        return self._detector

    def key(self, pixels: np.ndarray) -> str:
        """Cache key of an image at the teacher's resolution: teacher hash, shape and pixel bytes."""
        h = hashlib.sha1(self.sha256.encode())
        h.update(repr((pixels.shape, str(pixels.dtype))).encode())
        h.update(np.ascontiguousarray(pixels).tobytes())
        return h.hexdigest()[:16]

    def _file(self, image_id: str, key: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)[:80]
        return self.cache_dir / f"{slug}-{key}.npy"

    def __call__(self, image_id: str, pixels: np.ndarray) -> np.ndarray:
        """(H, W) float32 raw map of an (H, W, C) image already at the teacher's resolution."""
        key = self.key(pixels)
        if key in self._memory:
            self.reused += 1
            return self._memory[key]
        path = self._file(image_id, key) if self.cache_dir is not None else None
        if path is not None and path.is_file():
            m = np.load(path)
            if m.shape == pixels.shape[:2] and m.dtype == np.float32:
                self.reused += 1
                self._memory[key] = m
                return m
        t0 = time.perf_counter()
        m = np.ascontiguousarray(self.detector.probability_map(pixels), dtype=np.float32)
        dt = time.perf_counter() - t0
        self.seconds += dt
        self.computed += 1
        self._memory[key] = m
        if path is not None:
            self._store(path, m, image_id, dt)
        return m

    def _store(self, path: Path, m: np.ndarray, image_id: str, seconds: float) -> None:
        """Write one map (temporary name, then rename) and its line in ``index.jsonl``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, m)
        os.replace(tmp, path)
        with open(path.parent / "index.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"id": image_id, "file": path.name, "shape": list(m.shape),
                                "seconds": round(seconds, 4), "teacher": self.name,
                                "teacher_sha256": self.sha256}) + "\n")

    def describe(self) -> dict:
        """What the weights record about the teacher."""
        from ..models.weights_meta import to_json

        return {"teacher": self.name, "teacher_file": self.path.name, "teacher_sha256": self.sha256,
                "teacher_mpp": self.mpp, "teacher_halo": self.meta.halo,
                "teacher_model_kwargs": to_json(self.meta.model_kwargs)}


class DistillationTask(DetectionTask):
    """A detector trained on a teacher's raw maps (module docstring).

    Parameters
    ----------
    target : str
        The student's registry target ("proximity"), for the point target that may be mixed in.
    cfg : TrainConfig
        With ``mpp`` (the student's resolution, which must be the teacher's).
    teacher : str, Path or TeacherMaps
    cache_dir : path or None
        Where the maps are kept on disk (ignored when ``teacher`` is a TeacherMaps).
    point_weight : float
        In [0, 1]: share of the point target in a labelled image's target (0: teacher only).
    threads : int or None
        torch threads of the teacher.
    """

    name = "distillation"

    def __init__(self, target: str, cfg: TrainConfig, *, teacher: Any, cache_dir: str | Path | None = None,
                 point_weight: float = 0.0, threads: int | None = None) -> None:
        super().__init__(target, cfg)
        if isinstance(point_weight, bool) or not 0.0 <= float(point_weight) <= 1.0:
            raise ConfigError(f"point_weight must be a number in [0, 1], got {point_weight!r}")
        self.point_weight = float(point_weight)
        self.teacher = teacher if isinstance(teacher, TeacherMaps) else TeacherMaps(
            teacher, cache_dir=cache_dir, threads=threads)
        if abs(self.teacher.mpp / cfg.mpp - 1.0) > MPP_TOLERANCE:
            raise ConfigError(f"teacher {self.teacher.name!r} works at {self.teacher.mpp:g} um/px, the student at "
                              f"{cfg.mpp:g}: distil at the teacher's resolution")
        self.labelled = self.unlabelled = 0

    def prepare(self, samples: Sequence[Any], *, weight: float = 1.0, training: bool = True) -> list[PreparedImage]:
        """Training images with the teacher's map as target; validation images as :class:`DetectionTask`."""
        if not training:
            return super().prepare(samples, weight=weight, training=False)
        out = []
        for s in samples:
            factor = scale_factor(s.mpp, self.cfg.mpp)
            pixels = resample(s.load_image(), factor).astype(np.float32)
            pts = scale_points(getattr(s, "points", np.zeros((0, 2))), factor)
            target = self.teacher(str(s.id), pixels)
            labelled = not isinstance(s, UnlabelledSample)
            if labelled and self.point_weight > 0:
                points = make_target(self.target, pts, pixels.shape[:2], self.cfg, self.cfg.mpp)
                target = ((1.0 - self.point_weight) * target + self.point_weight * points).astype(np.float32)
            self.labelled += labelled
            self.unlabelled += not labelled
            out.append(PreparedImage(str(s.id), pixels, pts, target, weight))
        return out

    def check(self, images: list[PreparedImage]) -> None:
        if not images:
            raise ConfigError("no training image for the student")

    def meta(self) -> dict:
        return {**super().meta(), "distillation": {**self.teacher.describe(), "point_weight": self.point_weight,
                                                   "target": "the teacher's raw map (fp32, tiled as inference)",
                                                   "labelled_images": self.labelled,
                                                   "unlabelled_images": self.unlabelled}}


def flops_per_megapixel(model: Any, *, side: int = 256, in_channels: int | None = None) -> float:
    """GFLOP of one forward pass per megapixel of input (torch.utils.flop_counter; 2 FLOPs a multiply-add).

    Measured in eval mode on one ``side`` x ``side`` random input; convolutions dominate, so the
    figure does not depend on the side for fully convolutional networks.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if in_channels is None:
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        in_channels = first.in_channels
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, in_channels, side, side))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / (side * side / 1e6) / 1e9


def slide_tiles(path: str | Path, *, count: int, tile: int, mpp: float, min_tissue: float = 0.5,
                method: str = "otsu", seed: int = 0, slide_mpp: float | None = None) -> list[UnlabelledSample]:
    """Up to ``count`` tissue tiles of a slide, for training a student on its teacher's maps.

    The slide is cut into a grid of non-overlapping windows of ``tile`` px at ``mpp`` (read from
    the coarsest level at least that fine; the samples keep that level's resolution and are
    resampled when prepared); a window qualifies when at least ``min_tissue`` of it is tissue by
    the slide's tissue mask (:func:`~nucleikit.infer.tissue.slide_tissue_mask`, ``method``);
    ``count`` of the qualifying windows are drawn with ``seed`` (all of them when fewer), in
    reading order.

    Parameters
    ----------
    path : path
        A slide file (:func:`~nucleikit.io.slides.open_slide`).
    count, tile : int
    mpp : float
        Resolution the tile side is given at (the model's).
    min_tissue : float
        In (0, 1].
    method : {"otsu", "fixed"}
    seed : int
    slide_mpp : float or None
        Level-0 resolution for a slide that records none.

    Returns
    -------
    list of UnlabelledSample
        Ids ``<slide stem>@<y0>,<x0>`` (level-0 pixels).
    """
    from ..infer.tissue import slide_tissue_mask, tissue_fractions
    from ..io.slides import open_slide
    from ..windows import Window

    path = Path(path)
    with open_slide(path, mpp=slide_mpp) as slide:
        slide.require_mpp()
        level, level_mpp = slide.best_level_for_mpp(mpp)
        down = slide.level_downsamples[level]
        side = max(1, int(round(tile * mpp / level_mpp)))
        width, height = slide.level_dimensions[level]
        windows = [Window(y, x, y + side, x + side) for y in range(0, height - side + 1, side)
                   for x in range(0, width - side + 1, side)]
        if not windows:
            return []
        mask, scale = slide_tissue_mask(slide, method=method)
        fractions = tissue_fractions(mask, scale * down, windows)
        good = [w for w, f in zip(windows, fractions) if f > 0 and f >= min_tissue]
        rng = np.random.default_rng(seed)
        picked = sorted(rng.choice(len(good), size=min(count, len(good)), replace=False)) if good else []
        out = []
        for i in picked:
            w = good[int(i)]
            y0, x0 = int(round(w.y0 * down)), int(round(w.x0 * down))
            pixels = np.ascontiguousarray(slide.read_region(w, level), dtype=np.float32)
            out.append(UnlabelledSample(f"{path.stem}@{y0},{x0}", float(level_mpp), pixels,
                                        f"{path.name} level {level} window {w.y0}:{w.y1},{w.x0}:{w.x1}"))
    return out


def image_folder(folder: str | Path, *, mpp: float | None = None) -> list[UnlabelledSample]:
    """Every image of a folder as an unlabelled sample (``mpp``: their resolution, else each image's own)."""
    from ..io.datasets.folder import find_images
    from ..io.images import read_image

    out = []
    for p in find_images(folder):
        img = read_image(p)
        res = mpp if mpp is not None else img.mpp
        if res is None:
            raise ConfigError(f"{p}: the image records no resolution; give the folder's mpp")
        out.append(UnlabelledSample(p.stem, float(res), np.asarray(img.pixels, np.float32), str(p.resolve())))
    return out
