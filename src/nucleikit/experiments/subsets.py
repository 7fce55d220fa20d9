"""A fraction of a data set's training images, by annotated area.

Xing et al. vary the share of target (and auxiliary) training data from 1% to
100%. A MoNuSeg organ has three training images, so 10% cannot be a number of
images; here a fraction ``f`` keeps, of *every* training image, the central
window covering ``f`` of its area (sides scaled by ``sqrt(f)``), with the
points inside it. The training loop draws images in proportion to their area,
so a 10% window also receives 10% of that image's share of the batches. The
window is fixed (not random), so a fraction is the same data in every run and
smaller fractions are nested in larger ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["WindowSample", "central_window", "fraction_of"]


@dataclass(frozen=True, eq=False)
class WindowSample:
    """A rectangular part of a point sample, usable wherever a sample is.

    Attributes
    ----------
    id : str
        ``"<id>@<fraction>"``.
    image_path : Path
    points : (N, 2) float64
        Points inside the window, (x, y) 0-based pixel centres of the window.
    mpp : float
    window : (row0, row1, col0, col1)
        Half-open pixel ranges of the window in the full image.
    """

    id: str
    image_path: Path
    points: np.ndarray
    mpp: float
    window: tuple[int, int, int, int]
    source: Any = None
    classes: None = None

    def load_image(self, mode: str = "rgb") -> np.ndarray:
        r0, r1, c0, c1 = self.window
        return self.source.load_image(mode)[r0:r1, c0:c1]


def central_window(shape: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    """The centred window of about ``fraction`` of an (H, W) image's area.

    Returns
    -------
    (row0, row1, col0, col1)
        Half-open; each side is ``max(1, round(side * sqrt(fraction)))``.
    """
    h, w = shape
    s = float(np.sqrt(fraction))
    hh, ww = max(1, int(round(h * s))), max(1, int(round(w * s)))
    r0, c0 = (h - hh) // 2, (w - ww) // 2
    return r0, r0 + hh, c0, c0 + ww


def _image_shape(sample: Any) -> tuple[int, int]:
    from PIL import Image

    path = getattr(sample, "image_path", None)
    if path is not None and Path(path).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        try:
            with Image.open(path) as im:  # header only
                return im.size[1], im.size[0]
        except Exception:  # noqa: BLE001 - fall back to decoding (e.g. exotic TIFF)
            pass
    return sample.load_image().shape[:2]


def fraction_of(samples: Sequence[Any], fraction: float) -> list[Any]:
    """The samples themselves (``fraction`` = 1) or their central windows.

    Parameters
    ----------
    samples : sequence of point samples (``id``, ``points``, ``mpp``, ``load_image()``)
    fraction : float in (0, 1]

    Returns
    -------
    list
        :class:`WindowSample` records (or the samples when ``fraction`` is 1).
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"a data fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(samples)
    out = []
    for s in samples:
        r0, r1, c0, c1 = central_window(_image_shape(s), fraction)
        pts = np.asarray(s.points, np.float64).reshape(-1, 2)
        # pixel centres inside the window's pixels [c0 - 0.5, c1 - 0.5)
        inside = (pts[:, 0] >= c0 - 0.5) & (pts[:, 0] < c1 - 0.5) & (pts[:, 1] >= r0 - 0.5) & (pts[:, 1] < r1 - 0.5)
        out.append(WindowSample(f"{s.id}@{fraction:g}", s.image_path, pts[inside] - (c0, r0), s.mpp,
                                (r0, r1, c0, c1), s))
    return out
