"""Training a box detector (Faster R-CNN) on point annotations.

The dense training loop (:class:`~nucleikit.train.loop.Trainer`) is reused
whole — batches, augmentation, optimiser and plateau schedule, checkpoints and
resume, validation F1 with tuned xi / peak distance / floor, best weights with
their metadata — with three differences, in :class:`BoxTrainer`:

* **targets**: a box detector learns from boxes, but the loop's crops rotate,
  flip, zoom and warp the image and a *dense* target through one sampling grid.
  So each training image's target is a map of small Gaussian blobs (peak 1,
  ``sigma`` 1 px) at its points (:func:`point_blobs`); after the crop, the blobs'
  local maxima, refined to sub-pixel by a 3x3 centroid, are the points of the
  crop (:func:`points_from_blobs`), and the boxes are squares of the model's
  ``box_px`` (``box_um / mpp``) centred on them;
* **loss**: the network's own (:meth:`~nucleikit.models.faster_rcnn.FasterRCNN.forward`
  with target boxes): RPN objectness and box regression plus the RoI head's
  classification and box regression;
* **halo**: the network's stated bound (:attr:`~nucleikit.models.faster_rcnn.FasterRCNN.halo`),
  not an impulse measurement (suppression has no impulse response).

Validation runs the network as every detector runs (its output is a detection
map: each detection's score at its box centre), so F1 is computed by the same
peak finder and the same matching (:mod:`nucleikit.metrics`) as for MicroNet.

Coordinates: (x, y), 0-based pixel centres, in pixels of the model's resolution.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..transforms import resample, scale_factor, scale_points
from .config import TrainConfig
from .loop import Trainer
from .tasks import DetectionTask, PreparedImage

__all__ = ["BLOB_SIGMA", "point_blobs", "points_from_blobs", "BoxDetectionTask", "BoxTrainer"]

#: Standard deviation (pixels) of the blob drawn at each point of a training target.
BLOB_SIGMA = 1.0
#: A blob maximum above this is a point (a blob's peak is 1; after bilinear resampling >= 0.78).
_BLOB_LEVEL = 0.5


def point_blobs(points: np.ndarray, shape: tuple[int, int], *, sigma: float = BLOB_SIGMA) -> np.ndarray:
    """A map of Gaussian blobs of height 1 at the points (the maximum where blobs overlap).

    Parameters
    ----------
    points : (N, 2) array
        (x, y) in pixels, 0-based pixel centres; points outside the map add only
        the part of their blob that falls inside.
    shape : (H, W)
    sigma : float
        Blob standard deviation in pixels.

    Returns
    -------
    (H, W) float32 in [0, 1]
    """
    h, w = shape
    out = np.zeros((h, w), np.float32)
    r = int(np.ceil(3 * sigma))
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    for x, y in pts:
        c0, c1 = max(int(np.floor(x)) - r, 0), min(int(np.ceil(x)) + r + 1, w)
        r0, r1 = max(int(np.floor(y)) - r, 0), min(int(np.ceil(y)) + r + 1, h)
        if c0 >= c1 or r0 >= r1:
            continue
        xx = np.arange(c0, c1) - x
        yy = np.arange(r0, r1) - y
        blob = np.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)
        np.maximum(out[r0:r1, c0:c1], blob, out=out[r0:r1, c0:c1])
    return out


def points_from_blobs(blobs: np.ndarray, *, level: float = _BLOB_LEVEL) -> np.ndarray:
    """The points of a (possibly resampled) blob map: its 3x3 maxima above ``level``, to sub-pixel.

    Each maximum is refined to the value-weighted centroid of its 3x3
    neighbourhood; maxima closer than 1.5 px (a plateau: a blob centred between
    pixels) are counted once, the stronger kept.

    Parameters
    ----------
    blobs : (H, W) array
        A map made by :func:`point_blobs`, possibly warped by the crop.
    level : float
        Smallest value of a point's maximum.

    Returns
    -------
    (N, 2) float64 array of (x, y), by decreasing blob value.
    """
    blobs = np.asarray(blobs, np.float64)
    peaks = (blobs >= ndimage.maximum_filter(blobs, size=3, mode="constant")) & (blobs > level)
    rows, cols = np.nonzero(peaks)
    if rows.size == 0:
        return np.zeros((0, 2))
    order = np.argsort(-blobs[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    padded = np.pad(blobs, 1)
    offsets = np.arange(-1, 2)
    pts = []
    for r, c in zip(rows, cols):
        win = padded[r : r + 3, c : c + 3]
        total = win.sum()
        pt = (c + float((win.sum(axis=0) * offsets).sum() / total), r + float((win.sum(axis=1) * offsets).sum() / total))
        if all((pt[0] - q[0]) ** 2 + (pt[1] - q[1]) ** 2 >= 1.5**2 for q in pts):
            pts.append(pt)
    return np.asarray(pts, np.float64)


class BoxDetectionTask(DetectionTask):
    """Point detection by a box detector: blob targets for the crops, F1 validation as for dense detectors."""

    def __init__(self, cfg: TrainConfig, box_um: float) -> None:
        super().__init__("boxes", cfg)
        self.box_um = float(box_um)

    def prepare(self, samples: Sequence[Any], *, weight: float = 1.0, training: bool = True) -> list[PreparedImage]:
        """Samples with ``id``, ``points``, ``mpp``, ``load_image()``, at the model's mpp, blob targets."""
        out = []
        for s in samples:
            factor = scale_factor(s.mpp, self.cfg.mpp)
            pixels = resample(s.load_image(), factor).astype(np.float32)
            pts = scale_points(s.points, factor)
            target = point_blobs(pts, pixels.shape[:2]) if training else None
            out.append(PreparedImage(str(s.id), pixels, pts, target, weight))
        return out

    def meta(self) -> dict:
        return {"target_params": {"box_um": self.box_um, "box_px": self.box_um / self.cfg.mpp,
                                  "blob_sigma_px": BLOB_SIGMA},
                "radius_px": self.radius_px}


def _with_model_mpp(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` whose ``model_kwargs["mpp"]`` is the training resolution (boxes are microns)."""
    kwargs = dict(cfg.model_kwargs)
    given = kwargs.get("mpp")
    if given is not None and abs(float(given) - float(cfg.mpp)) > 1e-9:
        raise ConfigError(f"model_kwargs mpp {given} differs from the training resolution {cfg.mpp} um/px")
    kwargs["mpp"] = float(cfg.mpp)
    return dataclasses.replace(cfg, model_kwargs=kwargs)


class BoxTrainer(Trainer):
    """The training loop for box detectors (module docstring); same arguments as :class:`Trainer`."""

    def __init__(self, train_sets, val_samples, cfg: TrainConfig, out_dir, **kwargs) -> None:
        from ..models import get_spec

        cfg = cfg.resolved()
        spec = get_spec(cfg.model)
        if spec.target != "boxes":
            raise ConfigError(f"model {cfg.model!r} is not a box detector")
        if cfg.freeze_blocks:
            raise ConfigError(f"{cfg.model!r} has no numbered blocks to freeze")
        if cfg.init:
            from ..models.weights import read_weights_meta, resolve_weights
            from ..models.weights_meta import to_json

            model_kwargs = to_json(read_weights_meta(resolve_weights(cfg.init)).model_kwargs)
        else:
            cfg = _with_model_mpp(cfg)
            model_kwargs = cfg.model_kwargs
        box_um = spec.full_kwargs(**model_kwargs)["box_um"]
        kwargs.setdefault("adapter", BoxDetectionTask(cfg, box_um))
        super().__init__(train_sets, val_samples, cfg, out_dir, **kwargs)

    def _make_loss(self):
        return None  # the network computes its own losses from target boxes

    def _measure_halo(self, *, trained: bool) -> int:
        return int(self.model.halo)

    def target_boxes(self, blobs: np.ndarray) -> list:
        """Target boxes (G_i, 4) of each crop of a batch, from its (B, crop, crop) blob maps."""
        import torch

        from ..models.box_ops import boxes_around

        return [boxes_around(torch.from_numpy(points_from_blobs(b)), self.model.box_px) for b in blobs]

    def step(self, batch: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        """One optimisation step: crops, their target boxes, the network's losses; returns the loss."""
        import torch

        x, y, w = batch
        xt = self._inputs(x)
        boxes = self.target_boxes(y)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.bf16):
            losses = self.net(xt, boxes, torch.from_numpy(np.asarray(w, np.float32)))
        loss = losses["loss"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.state.step += 1
        return float(loss.detach())
