"""Pixel windows and how pixels outside an image are made up.

A :class:`Window` is a half-open rectangle of image pixels; :func:`read_window`
cuts one out of any array-like (ndarray, memmap, a slide level), padding
outside the image by a rule applied to the *global* pixel position, so every
window agrees with every other. Readers (:mod:`nucleikit.io.slides`) and the
tiling engine (:mod:`nucleikit.infer.tiling`) both build on this module, which
depends on NumPy only.

Place in the layout: the bottom layer, beside :mod:`nucleikit.errors`. It is
shared by ``io`` (slide regions), ``infer`` (tiles, slide engines, tissue
masks) and the slide result store, so it cannot live inside any one of them
without an edge going backwards (``io`` would import ``infer`` or the
reverse); hence a top-level module of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PAD_MODES", "Window", "read_window"]

#: Ways to make up pixels outside the image (see :func:`read_window`).
PAD_MODES = ("reflect", "symmetric", "edge", "constant")


@dataclass(frozen=True)
class Window:
    """A half-open rectangle of image pixels, ``[y0, y1) x [x0, x1)``.

    Coordinates are integer pixel indices of the full image (row ``y``, column ``x``); a window
    may extend outside the image (negative starts, ends beyond the size).
    """

    y0: int
    x0: int
    y1: int
    x1: int

    def __post_init__(self) -> None:
        if self.y1 <= self.y0 or self.x1 <= self.x0:
            raise ValueError(f"empty window {self}")

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices; only meaningful for a window inside the image."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    def inside(self, shape: tuple[int, ...]) -> bool:
        """True if the window lies entirely within an image of ``shape`` (H, W, ...)."""
        return self.y0 >= 0 and self.x0 >= 0 and self.y1 <= shape[0] and self.x1 <= shape[1]



def _source_indices(start: int, stop: int, size: int, mode: str) -> np.ndarray:
    """Image indices supplying positions ``start .. stop - 1`` of an axis of length ``size``.

    Out-of-range positions map by the padding rule, applied to the global position so that
    every window agrees; reflection is periodic, hence valid for pads of any length.
    For ``"constant"`` out-of-range positions map to -1.
    """
    idx = np.arange(start, stop)
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 ...  (edge not repeated)
        if size == 1:
            return np.zeros_like(idx)
        period = 2 * (size - 1)
        m = idx % period
        return np.where(m < size, m, period - m)
    if mode == "symmetric":  # ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...  (edge repeated)
        m = idx % (2 * size)
        return np.where(m < size, m, 2 * size - 1 - m)
    if mode == "edge":
        return np.clip(idx, 0, size - 1)
    return np.where((idx >= 0) & (idx < size), idx, -1)


def read_window(image: Any, window: Window, *, pad_mode: str = "reflect") -> np.ndarray:
    """Pixels of ``window``, made up outside the image by ``pad_mode``.

    Parameters
    ----------
    image : (H, W[, C]) array_like
        Any array-like with ``.shape`` and NumPy basic slicing (only the bounding box of the
        needed pixels is sliced, so a memmap or zarr array is read lazily).
    window : Window
        Half-open pixel window in image coordinates; may extend outside the image by any
        amount (a 256-pixel window on a 20 x 20 image is fine).
    pad_mode : {"reflect", "symmetric", "edge", "constant"}
        ``"reflect"`` mirrors about the border pixel without repeating it (``numpy.pad``'s
        ``"reflect"``), ``"symmetric"`` repeats it, ``"edge"`` repeats the border pixel,
        ``"constant"`` fills with 0. Applied periodically, so pads longer than the image work.

    Returns
    -------
    (h, w[, C]) ndarray
        A new array with the image's dtype; ``(h, w) = window.shape``.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    shape = tuple(image.shape)
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"image must be (H, W[, C]) with H, W >= 1, got shape {shape}")
    if window.inside(shape):
        return np.array(image[window.y0 : window.y1, window.x0 : window.x1])
    iy = _source_indices(window.y0, window.y1, shape[0], pad_mode)
    ix = _source_indices(window.x0, window.x1, shape[1], pad_mode)
    valid_y, valid_x = iy >= 0, ix >= 0
    if not valid_y.any() or not valid_x.any():  # constant mode, window entirely outside
        return np.zeros(window.shape + shape[2:], dtype=np.asarray(image[:1, :1]).dtype)
    # Read the bounding box of the needed pixels once, then gather within it.
    ylo, yhi = int(iy[valid_y].min()), int(iy[valid_y].max()) + 1
    xlo, xhi = int(ix[valid_x].min()), int(ix[valid_x].max()) + 1
    block = np.asarray(image[ylo:yhi, xlo:xhi])
    out = block[np.ix_(np.clip(iy - ylo, 0, None), np.clip(ix - xlo, 0, None))]
    if pad_mode == "constant":
        out[~valid_y] = 0
        out[:, ~valid_x] = 0
    return out
