"""Random crops with joint geometric and colour augmentation.

A crop is drawn by building one sampling grid that combines the random
position (shift), a rotation by any angle, a flip and an elastic distortion,
and resampling the image and its dense target through that same grid with
``scipy.ndimage.map_coordinates``. One resampling per crop keeps it cheap and
guarantees the image and target stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..transforms import jitter_stains

__all__ = ["AugmentConfig", "random_crop"]


@dataclass(frozen=True)
class AugmentConfig:
    """What a training crop may undergo.

    Attributes
    ----------
    rotate : bool
        Rotation by a uniform random angle in [0, 360).
    flip : bool
        Horizontal flip with probability 1/2 (with rotation this covers all 8
        dihedral orientations).
    elastic_alpha : float
        Largest elastic displacement in pixels (0 disables it).
    elastic_sigma : float
        Smoothness of the displacement field in pixels.
    scale : float
        Random zoom in [1/(1+scale), 1+scale] (0 disables it); keep small, the
        model is tied to one resolution.
    brightness, contrast, channel_shift : float
        Colour jitter on the [0, 1] image: a global brightness offset and
        contrast factor, and an independent small per-channel offset that
        mimics stain variation.
    hed : float
        H&E stain jitter (RGB images only): each stain's optical density
        becomes ``od * a + b`` with ``a`` uniform in [1 - h, 1 + h] and ``b``
        uniform in [-h, h] per crop and stain
        (:func:`nucleikit.transforms.jitter_stains`); 0 disables it.
    """

    rotate: bool = True
    flip: bool = True
    elastic_alpha: float = 4.0
    elastic_sigma: float = 10.0
    scale: float = 0.1
    brightness: float = 0.08
    contrast: float = 0.15
    channel_shift: float = 0.04
    hed: float = 0.0

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(False, False, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _sampling_grid(
    rng: np.random.Generator, shape: tuple[int, int], crop: int, cfg: AugmentConfig
) -> np.ndarray:
    """(2, crop, crop) array of (row, col) source coordinates for one crop."""
    h, w = shape
    c = (crop - 1) / 2.0
    yy, xx = np.mgrid[0:crop, 0:crop].astype(np.float64)
    yy -= c
    xx -= c
    if cfg.flip and rng.random() < 0.5:
        xx = -xx
    zoom = 1.0
    if cfg.scale > 0:
        zoom = float(np.exp(rng.uniform(-np.log1p(cfg.scale), np.log1p(cfg.scale))))
    theta = rng.uniform(0, 2 * np.pi) if cfg.rotate else 0.0
    ct, st = np.cos(theta) / zoom, np.sin(theta) / zoom
    ry = ct * yy - st * xx
    rx = st * yy + ct * xx
    if cfg.elastic_alpha > 0:
        # Smooth random field, rescaled so its largest displacement is alpha.
        for arr in (ry, rx):
            noise = ndimage.gaussian_filter(rng.standard_normal((crop, crop)), cfg.elastic_sigma)
            peak = np.abs(noise).max()
            if peak > 0:
                arr += noise * (cfg.elastic_alpha / peak)
    # The crop centre is uniform over the image: near borders part of the crop
    # is filled by reflection, as at inference.
    cy = rng.uniform(0, h - 1)
    cx = rng.uniform(0, w - 1)
    return np.stack([ry + cy, rx + cx])


def random_crop(
    rng: np.random.Generator,
    image: np.ndarray,
    target: np.ndarray,
    crop: int,
    cfg: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented crop of an image and its dense target.

    Parameters
    ----------
    rng : numpy Generator
    image : (H, W, C) float32 in [0, 1]
    target : (H, W) or (H, W, K) float32
    crop : int
        Side of the square crop in pixels.
    cfg : AugmentConfig

    Returns
    -------
    image_crop : (crop, crop, C) float32
    target_crop : (crop, crop[, K]) float32
    """
    grid = _sampling_grid(rng, image.shape[:2], crop, cfg)
    geometric = cfg.rotate or cfg.elastic_alpha > 0 or cfg.scale > 0

    def warp(channel: np.ndarray) -> np.ndarray:
        if not geometric:
            # Pure shift/flip: integer sampling, no interpolation blur.
            r = np.clip(np.rint(grid[0]).astype(int), 0, channel.shape[0] - 1)
            c = np.clip(np.rint(grid[1]).astype(int), 0, channel.shape[1] - 1)
            return channel[r, c]
        return ndimage.map_coordinates(channel, grid, order=1, mode="mirror")

    img = np.stack([warp(image[..., k]) for k in range(image.shape[-1])], axis=-1)
    if target.ndim == 2:
        tgt = warp(target)
    else:
        tgt = np.stack([warp(target[..., k]) for k in range(target.shape[-1])], axis=-1)
    if cfg.hed > 0 and img.shape[-1] == 3:
        # drawn only when enabled, so runs without it keep their random streams
        scale = 1.0 + rng.uniform(-cfg.hed, cfg.hed, size=3)
        shift = rng.uniform(-cfg.hed, cfg.hed, size=3)
        img = jitter_stains(img, scale, shift)
    if cfg.contrast > 0 or cfg.brightness > 0 or cfg.channel_shift > 0:
        mean = img.mean(axis=(0, 1), keepdims=True)
        factor = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        offset = rng.uniform(-cfg.brightness, cfg.brightness)
        shift = rng.uniform(-cfg.channel_shift, cfg.channel_shift, size=img.shape[-1])
        img = np.clip((img - mean) * factor + mean + offset + shift, 0.0, 1.0)
    return img.astype(np.float32), tgt.astype(np.float32)
