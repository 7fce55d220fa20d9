"""The slide at the model's resolution: the pyramid level read and the model grid over it.

Steps 1 and 2 of the slide engine (:mod:`nucleikit.infer.wsi`, whose docstring gives the
arithmetic): :func:`slide_geometry` chooses the level and sizes the *model grid*, the slide
seen at the model's µm/px (:class:`SlideGeometry`, which also maps model pixels to level-0
pixel centres), and ``_ModelGrid`` is that grid as a lazy, standardised (Hm, Wm, 3) float32
array whose blocks are resampled from the level when sliced, equal to the same pixels of
:func:`nucleikit.transforms.resample` on the whole level. Points are (x, y), 0-based pixel
centres (PROTOCOL.md). Re-exported by :mod:`nucleikit.infer.wsi`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..transforms import scale_factor
from ..windows import Window, read_window

__all__ = ["SlideGeometry", "slide_geometry"]


@dataclass(frozen=True)
class SlideGeometry:
    """How the model grid (the slide at the model's resolution) lies on a pyramid level.

    Attributes
    ----------
    level : int
        Pyramid level read.
    level_mpp : float or None
        µm/px of that level (None if the slide's pixel size is unknown).
    factor : float
        Nominal resize factor ``level_mpp / model_mpp`` (1.0 within 2 % or when unknown).
    level_shape : (int, int)
        (Hk, Wk) of the level.
    model_shape : (int, int)
        (Hm, Wm) = ``round(Hk * factor), round(Wk * factor)`` (as ``resample``).
    scale : (float, float)
        (sy, sx) = ``(Hm / Hk, Wm / Wk)``: model pixels per level pixel, per axis.
    level0_per_model : (float, float)
        (ay, ax): level-0 pixels per model pixel, per axis.
    """

    level: int
    level_mpp: float | None
    factor: float
    level_shape: tuple[int, int]
    model_shape: tuple[int, int]
    scale: tuple[float, float]
    level0_per_model: tuple[float, float]

    @property
    def resampled(self) -> bool:
        """True when model pixels are not level pixels."""
        return self.factor != 1.0

    def to_level0(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) model-grid (x, y) pixel centres → level-0 (x, y) pixel centres (float64)."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        ay, ax = self.level0_per_model
        return np.stack([(p[:, 0] + 0.5) * ax - 0.5, (p[:, 1] + 0.5) * ay - 0.5], axis=1)


def slide_geometry(slide: Any, model_mpp: float | None, *, level: int | None = None) -> SlideGeometry:
    """Choose the level to read and the model grid over it.

    Parameters
    ----------
    slide : SlideReader
        An open slide.
    model_mpp : float or None
        The model's µm/px; None for a model that runs at its input's own resolution
        (then the level is read as is: factor 1, and ``level=None`` means level 0).
    level : int or None
        Level to read; None picks the coarsest level not coarser than the model
        (:meth:`Slide.best_level_for_mpp <nucleikit.io.slides.Slide.best_level_for_mpp>`,
        5 % slack), which needs the slide's pixel size.

    Returns
    -------
    SlideGeometry

    Raises
    ------
    InputError
        ``level`` does not exist, or it is None and the pixel size is unknown.
    """
    if level is None and model_mpp is not None:
        level, level_mpp = slide.best_level_for_mpp(model_mpp)
    else:
        level = 0 if level is None else level
        slide.level_view(level)  # raises InputError naming the levels that exist
        level = int(level)
        # Unknown pixel size with an explicit level: the user says that level is the model's.
        level_mpp = slide.mpp * slide.level_downsamples[level] if slide.mpp is not None else None
    factor = scale_factor(level_mpp, model_mpp)
    wk, hk = slide.level_dimensions[level]
    w0, h0 = slide.dimensions
    hm, wm = max(1, int(round(hk * factor))), max(1, int(round(wk * factor)))
    sy, sx = hm / hk, wm / wk
    return SlideGeometry(
        level=int(level),
        level_mpp=level_mpp,
        factor=factor,
        level_shape=(hk, wk),
        model_shape=(hm, wm),
        scale=(sy, sx),
        level0_per_model=((h0 / hk) / sy, (w0 / wk) / sx),
    )


class _ModelGrid:
    """The slide at the model's resolution, standardised: a lazy (Hm, Wm, 3) float32 array.

    Supports in-bounds unit-step slicing ``grid[y0:y1, x0:x1]`` (what
    :func:`~nucleikit.windows.read_window` asks for); see :mod:`nucleikit.infer.wsi`'s docstring, step 2.
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, level: Any, geometry: SlideGeometry, mean: np.ndarray, std: np.ndarray) -> None:
        self._level = level
        self._geometry = geometry
        self._mean = np.asarray(mean, dtype=np.float32)
        self._std = np.asarray(std, dtype=np.float32)
        self.shape = (*geometry.model_shape, 3)

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key[:2] if isinstance(key, tuple) else (key, slice(None))
        y0, y1, _ = rows.indices(self.shape[0])
        x0, x1, _ = cols.indices(self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), dtype=np.float32)
        if self._geometry.resampled:
            pixels = _resample_block(self._level, self._geometry, y0, y1, x0, x1)
        else:
            pixels = np.asarray(self._level[y0:y1, x0:x1], dtype=np.float32)
        return (pixels - self._mean) / self._std


def _sources(o0: int, o1: int, scale: float, antialias: bool) -> tuple[np.ndarray, float, int]:
    """Level coordinates of model pixels ``o0 .. o1 - 1``, the Gaussian sigma and its radius."""
    u = (np.arange(o0, o1, dtype=np.float64) + 0.5) / scale - 0.5
    sigma = max(0.0, (1.0 / scale - 1.0) / 2.0) if antialias else 0.0
    radius = int(4.0 * sigma + 0.5) if sigma > 0 else 0  # scipy's truncate=4 kernel radius
    return u, sigma, radius


def _lerp(block: np.ndarray, u: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``block`` at fractional positions ``u`` along ``axis`` (float64)."""
    i0 = np.floor(u).astype(np.int64)
    w = u - i0
    a = np.take(block, i0, axis=axis).astype(np.float64)
    b = np.take(block, i0 + 1, axis=axis).astype(np.float64)
    shape = [1] * block.ndim
    shape[axis] = len(u)
    w = w.reshape(shape)
    return a * (1.0 - w) + b * w


def _resample_block(level: Any, g: SlideGeometry, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Model-grid pixels ``[y0, y1) x [x0, x1)`` (inside the grid) from level pixels; (h, w, 3) float32."""
    from scipy import ndimage

    antialias = g.factor < 1.0  # as resample(): anti-aliasing when shrinking
    uy, sy, ry = _sources(y0, y1, g.scale[0], antialias)
    ux, sx, rx = _sources(x0, x1, g.scale[1], antialias)
    ly0, lx0 = int(math.floor(uy[0])) - ry, int(math.floor(ux[0])) - rx
    ly1, lx1 = int(math.floor(uy[-1])) + 2 + ry, int(math.floor(ux[-1])) + 2 + rx
    block = read_window(level, Window(ly0, lx0, ly1, lx1), pad_mode="reflect")
    if sy > 0 or sx > 0:
        # The margin holds the whole kernel for every pixel interpolated, so the filter's own
        # border mode never reaches them; mirror is skimage's "reflect".
        block = ndimage.gaussian_filter(block, (sy, sx, 0.0), mode="mirror")
    out = _lerp(_lerp(block, uy - ly0, axis=0), ux - lx0, axis=1)
    return out.astype(np.float32)
