"""The one tiling engine: images and whole slides are cut into tiles here, and nowhere else.

A network is a free function ``forward((B, C, h, w) float32) -> (B, K, h, w)``; it knows
nothing about tiles (as Cellpose's ``run_net``). The image is cut into a grid of **cores** that
partition it exactly; each core is read with a **halo** of context on every side (its **read
window**, as StarDist's ``big.py`` blocks), the network runs on the read window, and only the
core of its output is kept. Every pixel of the output is therefore written by exactly one
tile, and no blending is needed.

Tiled equals untiled, exactly
-----------------------------
The output of a tile at a core pixel equals the untiled output there when three things hold:

1. **Same input.** Pixels outside the image are made up the same way in every window: padding
   is a function of the *global* pixel position (reflection about the image border, see
   :func:`read_window`), not of the window, so all windows are cut from one virtual,
   infinitely padded image.
2. **Enough context.** The halo is at least the network's receptive-field radius (measured by
   :func:`measure_halo`), so no core pixel sees the window border, where the network's own zero
   padding differs between windows.
3. **Same lattice.** A network that downsamples by ``align`` (pooling, strided convolutions)
   computes a core pixel from the pooling cell it falls in, and the cells are laid out from
   the window origin. Outputs of two windows agree only if their origins are congruent modulo
   ``align``. Core starts are multiples of the core size, itself a multiple of ``align``, so
   every read window starts at ``core start - halo``: all origins lie on the lattice
   ``-halo + align * Z``, the same lattice as the untiled pass (the single tile whose read
   window starts at ``-halo``). This holds whatever the halo, as long as both passes use
   the same one: two passes whose halos differ by a non-multiple of ``align`` sit on
   shifted lattices and their outputs differ (the whole-slide path therefore grows its
   halo only in steps of ``align``).

The network also needs each window side to be a multiple of ``align`` (the skip connections
of a U-Net must line up). The side is ``core + 2 * halo`` with the core a multiple of
``align``, so ``2 * halo`` must be a multiple of ``align``: the halo is rounded **up** to a
multiple of ``align / 2`` (of ``align`` when ``align`` is odd). Rounding up only adds context.

The lattice rule, in one place
------------------------------
``align`` is the network's total downsampling factor, declared on its registry spec
(:meth:`ModelSpec.alignment_for <nucleikit.models.registry.ModelSpec.alignment_for>`, set
on every built network as ``model.alignment`` and checked against the network by the test
suite); nothing here assumes a value. Whoever lays out windows uses these two functions:

* :func:`lattice_halo` — the halo a :class:`TileGrid` actually reads with;
* :func:`lattice_margin` — extra context added on top of a halo, or the margin of a
  window cut around a core, kept on the lattice (a multiple of ``align``), so that a
  whole-slide tile and a one-pass run see the same pooling cells.

The "untiled" pass is :func:`predict_tiled` with ``tile >= max(H, W)``: one tile whose core
is the whole image (its side rounded up to ``align``).

An image that fits in one tile can also be run with **no halo** (:func:`predict_aligned`):
one window, the image padded only to the network's alignment, so the network's own zero
padding meets the image border as it met the border of its training crops. That costs the
network's pixels and nothing more (a 256 x 256 image with a 96 px halo reads 448 x 448, 3.1x
the pixels), but its output within the receptive field of the border is not the halo pass's:
a choice of the caller (:class:`~nucleikit.infer.segment.Segmenter` ``padding="align"``, for
images no larger than one read window), never a tiling of a larger image.

How large a tile
----------------
Every read window pays for its halo: the network runs ``(core + 2 * halo)**2`` pixels to keep
``core**2``. That ratio, the **halo overhead** (:func:`halo_overhead`: pixels run over pixels
kept, for a whole grid), is 2.07x for a 512 px core with MicroNet's 112 px slide halo and falls
only as the core grows: it is at most ``r`` once ``core >= 2 * halo / (sqrt(r) - 1)``, 14.3 halos
for 1.3x (:func:`tile_for_overhead`; 8 halos still give 1.56x). Larger windows cost memory,
though: a network holds several full-resolution activations at once (MicroNet in fp32 about
0.5 KiB per window pixel on its lean inference route, 1.1 KiB before it,
:meth:`~nucleikit.infer.predict.DensePredictor.bytes_per_pixel`).
:func:`plan_tiles` therefore works within a memory budget for one forward pass:

1. the **whole image in one window** when that window fits the budget (one window has the
   least halo any tiling can have);
2. otherwise the **largest cores whose window fits** (:func:`tile_for_memory`), **balanced**
   per axis (``n = ceil(side / largest)`` cores of ``ceil(side / n)`` rounded up to ``align``),
   so no thin last row of tiles pays a full window for a few pixels. On a large image the
   overhead is then at most :data:`MAX_HALO_OVERHEAD` when the budget holds windows about 1.5
   times the side of :func:`tile_for_overhead`'s core (equal cores cut from the side can fall
   below that core when the budget only just holds it); when it does not, **memory wins** and
   the plan says so (``rule="memory"``);
3. as many windows per forward pass as the budget leaves room for (at most :data:`MAX_BATCH`).

An explicit tile size overrides steps 1-2; the batch is still taken from the budget unless
given. The plan changes which pixels share a window, never the output (tiled equals
untiled, above).

Ownership of objects
--------------------
An object (a detected centre) found on a tile's output belongs to the tile whose *core*
contains its pixel (:meth:`Tile.owns`), so an object near a seam is kept exactly once.

Where the code is
-----------------
This module runs a network over tiles (:func:`predict_tiles`, :func:`predict_tiled`,
:func:`predict_aligned`); the rest of the engine is beside it, re-exported here so that
``nucleikit.infer.tiling`` stays the one import path:

* :mod:`nucleikit.infer.tiling_grid` — :class:`Tile`, :class:`TileGrid`, :func:`lattice_halo`,
  :func:`lattice_margin` (the grid and the lattice rule);
* :mod:`nucleikit.infer.tiling_plan` — :func:`plan_tiles` and its parts (how large a tile);
* :mod:`nucleikit.infer.tiling_halo` — :func:`measure_halo`, :func:`measure_halo_grown`
  (how large a halo).

This module imports neither torch nor :mod:`nucleikit.io`; ``image`` may be any array-like
with ``.shape`` and NumPy slicing (ndarray, memmap, zarr array of a slide level).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..windows import PAD_MODES, Window, read_window
from .tiling_grid import Forward, Tile, TileGrid, _as_int, _round_up, lattice_halo, lattice_margin
from .tiling_halo import measure_halo, measure_halo_grown
from .tiling_plan import (
    MAX_BATCH,
    MAX_HALO_OVERHEAD,
    TilePlan,
    halo_overhead,
    plan_tiles,
    tile_for_memory,
    tile_for_overhead,
)

__all__ = [
    "PAD_MODES",
    "Window",
    "Tile",
    "TileGrid",
    "read_window",
    "predict_tiles",
    "predict_tiled",
    "aligned_window",
    "predict_aligned",
    "measure_halo",
    "measure_halo_grown",
    "lattice_halo",
    "lattice_margin",
    "MAX_HALO_OVERHEAD",
    "MAX_BATCH",
    "TilePlan",
    "halo_overhead",
    "tile_for_overhead",
    "tile_for_memory",
    "plan_tiles",
]


def predict_tiles(
    forward: Forward,
    image: Any,
    tiles: Iterable[Tile],
    *,
    batch_size: int = 4,
    pad_mode: str = "reflect",
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Run ``forward`` on batches of read windows and yield each tile's core output.

    The streaming form of :func:`predict_tiled`, for callers that do not hold the whole output
    (whole slides) or run only some tiles (tissue only, resume).

    Parameters
    ----------
    forward : callable
        ``forward(x)`` with ``x`` a (B, C, h, w) float32 C-contiguous ndarray returns a
        (B, K, h, w) array (anything ``numpy.asarray`` accepts).
    image : (H, W, C) array_like
        See :func:`read_window`.
    tiles : iterable of Tile
        Tiles whose read windows all have the same size (any subset of one :class:`TileGrid`).
    batch_size : int
        Tiles per ``forward`` call.
    pad_mode : str
        See :func:`read_window`.

    Yields
    ------
    tile : Tile
    core : (K, core_h, core_w) float32 ndarray
        The output over ``tile.core``.
    """
    batch_size = _as_int(batch_size, "batch_size", minimum=1)
    batch: list[Tile] = []
    for tile in tiles:
        batch.append(tile)
        if len(batch) == batch_size:
            yield from _run_batch(forward, image, batch, pad_mode)
            batch = []
    if batch:
        yield from _run_batch(forward, image, batch, pad_mode)


def _run_batch(
    forward: Forward, image: Any, batch: list[Tile], pad_mode: str
) -> Iterator[tuple[Tile, np.ndarray]]:
    windows = [read_window(image, t.read, pad_mode=pad_mode) for t in batch]
    x = np.ascontiguousarray(np.stack(windows).transpose(0, 3, 1, 2), dtype=np.float32)
    y = np.asarray(forward(x))
    if y.ndim != 4 or y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"forward must map (B, C, h, w) to (B, K, h, w); got input {x.shape} and output {y.shape}"
        )
    for tile, out in zip(batch, y):
        rows, cols = tile.core_in_read
        yield tile, np.asarray(out[:, rows, cols], dtype=np.float32)


def predict_tiled(
    forward: Forward,
    image: Any,
    *,
    tile: int = 512,
    halo: int = 64,
    align: int,
    batch_size: int = 4,
    pad_mode: str = "reflect",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Dense network output for a whole image, computed tile by tile.

    Parameters
    ----------
    forward : callable
        ``(B, C, h, w) float32 ndarray -> (B, K, h, w)``; see :func:`predict_tiles`.
    image : (H, W, C) array_like
        Network input (already normalised), channels last.
    tile : int
        Core side in pixels (see :class:`TileGrid`); ``tile >= max(H, W)`` is the untiled pass.
    halo : int
        Context per side in pixels; at least the receptive-field radius (:func:`measure_halo`)
        for the result to equal the untiled pass exactly.
    align : int
        Total downsampling factor of the network (the model's ``alignment``); no default,
        since a wrong one silently breaks tiled == untiled.
    batch_size : int
        Tiles per ``forward`` call. Memory is the output plus one batch.
    pad_mode : str
        How pixels outside the image are made up (see :func:`read_window`).
    progress : callable or None
        Called as ``progress(done, total)`` after each tile.

    Returns
    -------
    (K, H, W) float32 ndarray
        Each pixel written by the one tile whose core contains it.
    """
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[0] < 1 or shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"image must be (H, W, C) with H, W, C >= 1, got shape {shape}")
    grid = TileGrid(shape[:2], tile=tile, halo=halo, align=align)
    total = len(grid)
    out: np.ndarray | None = None
    for done, (t, core) in enumerate(
        predict_tiles(forward, image, grid, batch_size=batch_size, pad_mode=pad_mode), start=1
    ):
        if out is None:
            # Every pixel belongs to exactly one core, so no initialisation is needed.
            out = np.empty((core.shape[0],) + shape[:2], dtype=np.float32)
        elif core.shape[0] != out.shape[0]:
            raise ValueError(f"forward returned {core.shape[0]} channels, earlier {out.shape[0]}")
        out[(slice(None),) + t.core.slices] = core
        if progress is not None:
            progress(done, total)
    assert out is not None  # a grid has at least one tile
    return out


def aligned_window(shape: tuple[int, int], *, halo: int, align: int) -> Window:
    """The one read window of an image run without a halo, on the tiled pass's lattice.

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image.
    halo : int
        The halo a tiled pass would read with (its lattice is ``-lattice_halo(halo, align)``
        modulo ``align``, module docstring condition 3).
    align : int
        Total downsampling factor of the network.

    Returns
    -------
    Window
        Starts at ``-p`` on both axes, ``p = lattice_halo(halo, align) % align`` (0 when the
        halo is a multiple of ``align``, as for the bundled networks), and ends at the
        smallest multiple of ``align`` past the image: the image padded only to the network's
        alignment, bottom and right (plus ``p`` top and left to stay on the lattice).

    Examples
    --------
    >>> aligned_window((256, 250), halo=96, align=16)
    Window(y0=0, x0=0, y1=256, x1=256)
    >>> aligned_window((100, 100), halo=8, align=16)
    Window(y0=-8, x0=-8, y1=104, x1=104)
    """
    h = _as_int(shape[0], "image height", minimum=1)
    w = _as_int(shape[1], "image width", minimum=1)
    align = _as_int(align, "align", minimum=1)
    p = lattice_halo(halo, align) % align
    return Window(-p, -p, _round_up(h + p, align) - p, _round_up(w + p, align) - p)


def predict_aligned(
    forward: Forward,
    image: Any,
    *,
    halo: int,
    align: int,
    pad_mode: str = "reflect",
) -> np.ndarray:
    """Dense network output for a whole image in one window padded only to the alignment.

    Parameters
    ----------
    forward : callable
        ``(1, C, h, w) float32 ndarray -> (1, K, h, w)``; see :func:`predict_tiles`.
    image : (H, W, C) array_like
        Network input (already normalised), channels last.
    halo, align : int
        As for :func:`aligned_window` (the halo only places the window on the lattice).
    pad_mode : str
        How the few pixels past the image are made up (see :func:`read_window`).

    Returns
    -------
    (K, H, W) float32 ndarray
        Equal to :func:`predict_tiled` at pixels farther than the receptive-field radius from
        the image border; nearer, the network sees its own zero padding instead of reflected
        context (module docstring).
    """
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[0] < 1 or shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"image must be (H, W, C) with H, W, C >= 1, got shape {shape}")
    tile = Tile(index=0, position=(0, 0), read=aligned_window(shape[:2], halo=halo, align=align),
                core=Window(0, 0, shape[0], shape[1]))
    ((_, out),) = _run_batch(forward, image, [tile], pad_mode)
    return out
