"""Which tiles a slide run works on: the tissue mask, the tile grid, the tiles still to run.

Steps 3 and 4 of the slide engine (:mod:`nucleikit.infer.wsi`): ``_plan_slide`` chooses the
level and the model grid (:func:`~nucleikit.infer.wsi_geometry.slide_geometry`), takes the
tissue mask (``_tissue``: a thumbnail's, the user's, or none), lays a
:class:`~nucleikit.infer.tiling.TileGrid` over the model grid and keeps the tiles with
tissue (``_SlidePlan``); ``_pending`` leaves out the tiles a resume store already holds.
:func:`slide_tile` and ``_slide_halo`` give detection's core size and halo (segmentation has
its own, :mod:`nucleikit.infer.wsi_segment`). Sizes are in model pixels unless said.
Re-exported by :mod:`nucleikit.infer.wsi`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from .tiling import Tile, TileGrid, lattice_halo, lattice_margin
from .wsi_geometry import SlideGeometry, slide_geometry
from .wsi_store import _TileStore

__all__ = ["MASK_SIDE", "slide_tile"]

#: Largest side of a tissue mask read from a user's file.
MASK_SIDE = 2048


def _tissue(slide: Any, tissue_mask: Any) -> tuple[np.ndarray | None, float]:
    """(mask, mask pixels per level-0 pixel); (None, 1.0) for ``"all"``."""
    from .tissue import load_mask, slide_tissue_mask

    w0, h0 = slide.dimensions
    if tissue_mask is None:
        return slide_tissue_mask(slide)
    if isinstance(tissue_mask, str) and tissue_mask == "all":
        return None, 1.0
    if isinstance(tissue_mask, np.ndarray):
        mask = tissue_mask
        if mask.ndim != 2 or mask.dtype != np.bool_:
            raise ConfigError(f"a tissue mask array must be 2-D bool, got {mask.dtype} of shape {mask.shape}")
        h, w = mask.shape
        if abs(h - w * h0 / w0) > max(1.0, 0.05 * h):
            raise ConfigError(f"tissue mask of {w}x{h} px does not have the slide's aspect ratio ({w0}x{h0} px)")
        return mask, w / w0
    if isinstance(tissue_mask, (str, Path)):
        scale = min(1.0, MASK_SIDE / max(w0, h0))
        shape = (max(1, math.ceil(h0 * scale)), max(1, math.ceil(w0 * scale)))
        return load_mask(tissue_mask, shape), scale
    raise ConfigError(f"tissue_mask must be None, 'all', a mask file or a bool array, got {tissue_mask!r}")


def _slide_halo(halo: int, margin: int, align: int) -> int:
    """The predictor's halo plus room for the peak margin, on the predictor's pooling lattice.

    Read windows start at ``core start - halo``; the one-pass map (``predict_tiled`` with
    the predictor's halo, :func:`~nucleikit.infer.tiling.lattice_halo`) and the slide's agree
    only if both halos are congruent modulo ``align`` (tiling module docstring, condition 3),
    so the extra context is :func:`~nucleikit.infer.tiling.lattice_margin`'s.
    """
    return lattice_halo(halo, align) + lattice_margin(margin, align)


def slide_tile(predictor: Any, tile: int | None, halo: int) -> Any:
    """The core size of a slide's tiles: ``tile``, else ``predictor.config.tile``, else a function
    of the model grid's shape giving the memory budget's choice for reads with ``halo``
    (:meth:`DensePredictor.plan <nucleikit.infer.predict.DensePredictor.plan>`; the largest
    balanced cores whose window fits ``config.memory``)."""
    given = tile or getattr(getattr(predictor, "config", None), "tile", None)
    if given:
        return given
    return lambda shape: predictor.plan(shape, halo=halo).tile


@dataclass(frozen=True)
class _SlidePlan:
    """The tiles a slide run works on.

    Attributes
    ----------
    geometry : SlideGeometry
    grid : TileGrid
        Over the model grid (``geometry.model_shape``).
    mask : (h, w) bool ndarray or None
        The tissue mask (None with ``tissue_mask="all"``).
    mask_scale : float
        Mask pixels per level-0 pixel.
    selected : (len(grid),) bool ndarray
        Tiles with tissue.
    """

    geometry: SlideGeometry
    grid: TileGrid
    mask: np.ndarray | None
    mask_scale: float
    selected: np.ndarray

    @property
    def tissue_tiles(self) -> set[int]:
        return {int(i) for i in np.flatnonzero(self.selected)}


def _plan_slide(slide: Any, slide_path: Path, model_mpp: float | None, *, level: int | None, tissue_mask: Any,
                tile: Any, halo: int, align: int) -> _SlidePlan:
    """Level, model grid, tissue mask and the tiles with tissue (:mod:`nucleikit.infer.wsi`, steps 1-4).

    ``align`` is the network's total downsampling factor (the grid's lattice). ``tile`` is a
    core size, or a function of the model grid's (H, W) giving one (the memory budget's plan,
    :meth:`DensePredictor.plan <nucleikit.infer.predict.DensePredictor.plan>`).

    Raises
    ------
    InputError
        No tile has tissue (nothing is written then).
    """
    geometry = slide_geometry(slide, model_mpp, level=level)
    mask, mask_scale = _tissue(slide, tissue_mask)
    if callable(tile):
        tile = tile(geometry.model_shape)
    grid = TileGrid(geometry.model_shape, tile=tile, halo=halo, align=align)
    if mask is None:
        selected = np.ones(len(grid), dtype=bool)
    else:
        from .tissue import tiles_with_tissue

        # mask pixels per model pixel (the two axes differ only by the pyramid's rounding)
        per_model = mask_scale * float(np.mean(geometry.level0_per_model))
        selected = tiles_with_tissue(mask, per_model, grid, min_fraction=0.0)
    if not selected.any():
        raise InputError(slide_path, "no tissue found (the tissue mask is empty); "
                                     "use --tissue-mask all to process every tile")
    return _SlidePlan(geometry=geometry, grid=grid, mask=mask, mask_scale=mask_scale, selected=selected)


def _pending(store: _TileStore, plan: _SlidePlan) -> tuple[set[int], list[Tile]]:
    """(tissue tiles already stored, tissue tiles still to run in index order)."""
    tissue = plan.tissue_tiles
    done, _, _ = store.finished()
    done &= tissue
    return done, [plan.grid[i] for i in sorted(tissue - done)]
