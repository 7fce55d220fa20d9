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
1.1 KiB per window pixel, :meth:`~nucleikit.infer.predict.DensePredictor.bytes_per_pixel`).
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

This module imports neither torch nor :mod:`nucleikit.io`; ``image`` may be any array-like
with ``.shape`` and NumPy slicing (ndarray, memmap, zarr array of a slide level).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from ..windows import PAD_MODES, Window, read_window

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


Forward = Callable[[np.ndarray], Any]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def lattice_halo(halo: int, align: int) -> int:
    """The halo a :class:`TileGrid` reads with: ``halo`` rounded up so ``2 * halo`` is a multiple of ``align``.

    Parameters
    ----------
    halo : int
        Requested context per side, in pixels (>= 0).
    align : int
        Total downsampling factor of the network (>= 1).

    Returns
    -------
    int
        The smallest multiple of ``align / 2`` (of ``align`` when it is odd) that is >= ``halo``:
        a core that is a multiple of ``align`` plus twice this halo is one too.

    Examples
    --------
    >>> lattice_halo(90, 16), lattice_halo(96, 16), lattice_halo(5, 3)
    (96, 96, 6)
    """
    halo = _as_int(halo, "halo", minimum=0)
    align = _as_int(align, "align", minimum=1)
    return _round_up(halo, align // 2 if align % 2 == 0 else align)


def lattice_margin(context: int, align: int) -> int:
    """Context added around a core or on top of a halo, rounded up to a multiple of ``align``.

    A window whose origin moves by a multiple of ``align`` keeps the network's pooling
    cells where they were, so its output equals that of the window it grew from
    (module docstring, condition 3); any other step would shift them.

    Parameters
    ----------
    context : int
        Pixels wanted (>= 0).
    align : int
        Total downsampling factor of the network (>= 1).

    Examples
    --------
    >>> lattice_margin(6, 16), lattice_margin(134, 16), lattice_margin(0, 16)
    (16, 144, 0)
    """
    context = _as_int(context, "context", minimum=0)
    align = _as_int(align, "align", minimum=1)
    return _round_up(context, align)


def _as_int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`.

    Attributes
    ----------
    index : int
        Position in row-major order, ``0 .. len(grid) - 1``.
    position : (int, int)
        (row, column) of the tile in the grid.
    read : Window
        The pixels fed to the network: the core plus the halo (may extend outside the image).
    core : Window
        The pixels this tile writes; inside the image. Cores partition the image.
    """

    index: int
    position: tuple[int, int]
    read: Window
    core: Window

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """(rows, cols) slices selecting the core inside an array covering ``read``."""
        r, c = self.read, self.core
        return (slice(c.y0 - r.y0, c.y1 - r.y0), slice(c.x0 - r.x0, c.x1 - r.x0))

    def owns(self, points: np.ndarray) -> np.ndarray:
        """Which points belong to this tile (the ownership rule for objects across seams).

        Parameters
        ----------
        points : (N, 2) array_like
            (x, y) 0-based pixel-centre coordinates in the full image.

        Returns
        -------
        (N,) bool
            True where the pixel containing the point (``floor(coord + 0.5)``) is in the core.
            Each point inside the image is owned by exactly one tile of a grid.
        """
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        ix = np.floor(p[:, 0] + 0.5)
        iy = np.floor(p[:, 1] + 0.5)
        c = self.core
        return (ix >= c.x0) & (ix < c.x1) & (iy >= c.y0) & (iy < c.y1)


@dataclass(frozen=True)
class TileGrid:
    """Cores partitioning an (H, W) image, each read with the same halo.

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image in pixels; extra trailing entries (channels) are ignored.
    tile : int or (int, int)
        Requested core side (or (height, width)) in pixels. Rounded up to a multiple of
        ``align`` and, per axis, capped at the image side rounded up to ``align`` (so a small
        image is one tile, not a mostly padded 512 x 512 window).
    halo : int
        Requested context on each side, >= the receptive-field radius of the network.
        Rounded up by :func:`lattice_halo` so that windows are multiples of ``align``.
    align : int
        Total downsampling factor of the network (16 for four 2x poolings): the model's
        ``alignment`` (:meth:`~nucleikit.models.registry.ModelSpec.alignment_for`).

    Attributes
    ----------
    core_shape : (int, int)
        Effective core (tile) size; a multiple of ``align``.
    read_halo : int
        Effective halo (``lattice_halo(halo, align)``).
    read_shape : (int, int)
        Size of every read window: ``core_shape + 2 * read_halo``, a multiple of ``align``.
    grid_shape : (int, int)
        Number of tile rows and columns.

    Notes
    -----
    Core ``(i, j)`` starts at ``(i * core_h, j * core_w)`` and is clipped to the image; its
    read window is ``[start - halo, start + core + halo)`` on each axis and is never clipped,
    so all read windows have the same size and all origins are congruent to ``-halo`` modulo
    ``align`` (see the module docstring for why that makes tiled equal untiled).

    Examples
    --------
    >>> grid = TileGrid((100, 40), tile=48, halo=8, align=16)
    >>> grid.core_shape, grid.read_shape, grid.grid_shape
    ((48, 48), (64, 64), (3, 1))
    >>> [t.core for t in grid][-1]
    Window(y0=96, x0=0, y1=100, x1=40)
    """

    shape: tuple[int, int]
    _: KW_ONLY
    tile: int | tuple[int, int]
    halo: int
    align: int
    core_shape: tuple[int, int] = field(init=False)
    read_halo: int = field(init=False)
    read_shape: tuple[int, int] = field(init=False)
    grid_shape: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.shape) < 2:
            raise ValueError(f"shape must be (H, W[, ...]), got {self.shape}")
        h = _as_int(self.shape[0], "image height", minimum=1)
        w = _as_int(self.shape[1], "image width", minimum=1)
        align = _as_int(self.align, "align", minimum=1)
        halo = _as_int(self.halo, "halo", minimum=0)
        tiles = (self.tile, self.tile) if np.ndim(self.tile) == 0 else tuple(self.tile)
        if len(tiles) != 2:
            raise ValueError(f"tile must be an int or (height, width), got {self.tile!r}")
        th, tw = (_as_int(t, "tile", minimum=1) for t in tiles)
        core = (
            min(_round_up(th, align), _round_up(h, align)),
            min(_round_up(tw, align), _round_up(w, align)),
        )
        halo = lattice_halo(halo, align)
        set_ = object.__setattr__
        set_(self, "shape", (h, w))
        set_(self, "core_shape", core)
        set_(self, "read_halo", halo)
        set_(self, "read_shape", (core[0] + 2 * halo, core[1] + 2 * halo))
        set_(self, "grid_shape", (-(-h // core[0]), -(-w // core[1])))

    def __len__(self) -> int:
        return self.grid_shape[0] * self.grid_shape[1]

    def __getitem__(self, index: int) -> Tile:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"tile index {index} out of range for {n} tiles")
        index %= n
        i, j = divmod(index, self.grid_shape[1])
        (h, w), (ch, cw), halo = self.shape, self.core_shape, self.read_halo
        y0, x0 = i * ch, j * cw
        return Tile(
            index=index,
            position=(i, j),
            read=Window(y0 - halo, x0 - halo, y0 + ch + halo, x0 + cw + halo),
            core=Window(y0, x0, min(y0 + ch, h), min(x0 + cw, w)),
        )

    def __iter__(self) -> Iterator[Tile]:
        return (self[k] for k in range(len(self)))


#: Halo overhead (pixels run / pixels kept) a large image should not exceed when the memory
#: budget allows it (:func:`plan_tiles`, issue 15).
MAX_HALO_OVERHEAD = 1.3
#: Most read windows :func:`plan_tiles` puts in one forward pass, whatever the budget.
MAX_BATCH = 8


def halo_overhead(grid: TileGrid) -> float:
    """Pixels the network runs over pixels kept: ``len(grid) * read window area / image area``.

    Examples
    --------
    >>> halo_overhead(TileGrid((512, 512), tile=512, halo=64, align=16))
    1.5625
    """
    rh, rw = grid.read_shape
    return len(grid) * rh * rw / (grid.shape[0] * grid.shape[1])


def tile_for_overhead(halo: int, align: int, max_overhead: float = MAX_HALO_OVERHEAD) -> int:
    """The smallest core (a multiple of ``align``) whose square window costs at most ``max_overhead``.

    ``((core + 2 * h) / core) ** 2 <= max_overhead`` with ``h = lattice_halo(halo, align)``.

    Examples
    --------
    >>> tile_for_overhead(96, 16), tile_for_overhead(112, 16), tile_for_overhead(0, 16)
    (1376, 1600, 16)
    """
    align = _as_int(align, "align", minimum=1)
    h = lattice_halo(halo, align)
    if not max_overhead > 1:
        raise ValueError(f"max_overhead must be above 1, got {max_overhead}")
    core = max(align, _round_up(math.ceil(2 * h / (math.sqrt(max_overhead) - 1)), align))
    while core > align and (core - align + 2 * h) ** 2 <= max_overhead * (core - align) ** 2:
        core -= align
    while (core + 2 * h) ** 2 > max_overhead * core ** 2:
        core += align
    return core


def tile_for_memory(halo: int, align: int, *, bytes_per_pixel: float, budget: float) -> int:
    """The largest core (a multiple of ``align``) whose square read window fits ``budget`` bytes.

    ``(core + 2 * h) ** 2 * bytes_per_pixel <= budget``, ``h = lattice_halo(halo, align)``;
    ``align`` when not even that fits (a window cannot be smaller).

    Examples
    --------
    >>> tile_for_memory(96, 16, bytes_per_pixel=1000, budget=2 ** 30)
    832
    """
    align = _as_int(align, "align", minimum=1)
    h = lattice_halo(halo, align)
    if not (bytes_per_pixel > 0 and budget > 0):
        raise ValueError(f"bytes_per_pixel and budget must be positive, got {bytes_per_pixel} and {budget}")
    side = math.isqrt(int(budget / bytes_per_pixel))
    return max(align, (side - 2 * h) // align * align)


@dataclass(frozen=True)
class TilePlan:
    """How an image of a given size is cut and batched (:func:`plan_tiles`).

    Attributes
    ----------
    tile : (int, int)
        Core (height, width) for :class:`TileGrid`; multiples of ``align``.
    batch_size : int
        Read windows per forward pass.
    read_shape : (int, int)
        Size of every read window.
    overhead : float
        :func:`halo_overhead` of the grid: pixels run over pixels kept.
    window_bytes : float
        Estimated memory of one forward pass: ``batch_size`` windows at ``bytes_per_pixel``.
    rule : str
        What decided the tile: ``"given"`` (the caller's), ``"one window"`` (the whole image
        fits the budget), ``"budget"`` (the largest balanced cores that fit, and the overhead
        is at most the target) or ``"memory"`` (the same, but the budget is too small for
        the overhead target).
    """

    tile: tuple[int, int]
    batch_size: int
    read_shape: tuple[int, int]
    overhead: float
    window_bytes: float
    rule: str


def _balanced(side: int, largest: int, align: int) -> int:
    """Cores of about equal size covering ``side``, none above ``largest`` (a multiple of ``align``)."""
    n = -(-side // largest)
    return min(largest, _round_up(-(-side // n), align))


def plan_tiles(
    shape: tuple[int, int],
    *,
    halo: int,
    align: int,
    bytes_per_pixel: float,
    budget: float,
    tile: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    max_overhead: float = MAX_HALO_OVERHEAD,
    max_batch: int = MAX_BATCH,
) -> TilePlan:
    """Tile size and batch size for an (H, W) image under a memory budget (module docstring).

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image (or a slide's model grid); trailing entries ignored.
    halo, align : int
        As for :class:`TileGrid`.
    bytes_per_pixel : float
        Working memory of the network per pixel of a read window (> 0).
    budget : float
        Bytes one forward pass may use (> 0).
    tile : int, (int, int) or None
        A core size to use as given (``--tile``); None chooses one.
    batch_size : int or None
        Windows per forward pass as given; None: as many as fit the budget (>= 1, at most
        ``max_batch`` and the number of tiles).
    max_overhead : float
        The halo overhead the plan is checked against (``rule``).

    Returns
    -------
    TilePlan

    Examples
    --------
    >>> plan = plan_tiles((10000, 10000), halo=96, align=16, bytes_per_pixel=300, budget=2 ** 30)
    >>> plan.tile, plan.rule, round(plan.overhead, 2)
    ((1680, 1680), 'budget', 1.26)
    >>> plan_tiles((10000, 10000), halo=96, align=16, bytes_per_pixel=1200, budget=2 ** 30).rule
    'memory'
    >>> plan_tiles((500, 500), halo=96, align=16, bytes_per_pixel=1200, budget=2 ** 30).tile
    (512, 512)
    """
    h = _as_int(shape[0], "image height", minimum=1)
    w = _as_int(shape[1], "image width", minimum=1)
    align = _as_int(align, "align", minimum=1)
    halo = lattice_halo(halo, align)
    max_batch = _as_int(max_batch, "max_batch", minimum=1)
    if not (bytes_per_pixel > 0 and budget > 0):
        raise ValueError(f"bytes_per_pixel and budget must be positive, got {bytes_per_pixel} and {budget}")
    whole = (_round_up(h, align), _round_up(w, align))
    if tile is not None:
        rule, cores = "given", tile
    elif (whole[0] + 2 * halo) * (whole[1] + 2 * halo) * bytes_per_pixel <= budget:
        rule, cores = "one window", whole
    else:
        largest = tile_for_memory(halo, align, bytes_per_pixel=bytes_per_pixel, budget=budget)
        rule, cores = "budget", (_balanced(h, largest, align), _balanced(w, largest, align))
    grid = TileGrid((h, w), tile=cores, halo=halo, align=align)
    if rule == "budget" and halo_overhead(grid) > max_overhead:
        rule = "memory"
    one = grid.read_shape[0] * grid.read_shape[1] * bytes_per_pixel
    if batch_size is None:
        batch = max(1, min(max_batch, len(grid), int(budget // one)))
    else:
        batch = _as_int(batch_size, "batch_size", minimum=1)
    return TilePlan(tile=grid.core_shape, batch_size=batch, read_shape=grid.read_shape,
                    overhead=halo_overhead(grid), window_bytes=batch * one, rule=rule)


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


def measure_halo(
    forward: Forward,
    *,
    in_channels: int = 3,
    size: int = 256,
    tol: float = 1e-3,
    align: int,
    multiple: int = 16,
    batch_size: int = 4,
    seed: int = 0,
) -> int:
    """Receptive-field radius of ``forward``, measured with an impulse.

    A random input (seeded, uniform in [0, 1)) is run once as is and once with 1 added at a
    single pixel (all channels). The radius is the largest Chebyshev distance from that pixel
    to an output pixel whose change, the maximum over output channels, exceeds ``tol`` times
    the largest change. Because a network that downsamples by ``align`` reaches further from
    some positions in its pooling cells than from others, the impulse is tried at all
    ``align`` phases (``align + 1`` forward passes in all) and the largest radius is kept.

    Parameters
    ----------
    forward : callable
        ``(B, C, size, size) float32 -> (B, K, size, size)``, deterministic (eval mode).
    in_channels : int
        C of the network input.
    size : int
        Side of the probe image; a multiple of ``align``, larger than twice the radius.
    tol : float
        Relative change below which an output pixel counts as unaffected.
    align : int
        Total downsampling factor of the network.
    multiple : int
        The radius is rounded up to a multiple of this (16 by default; 1 returns it as is).
    batch_size : int
        Probe images per ``forward`` call.
    seed : int
        Seed of the random base image.

    Returns
    -------
    int
        The radius in input pixels rounded up to ``multiple``; 0 for a pixel-wise network.

    Warns
    -----
    UserWarning
        When the affected region reaches the probe's border: the network has global context
        (attention, global pooling, fully connected layers) or a receptive field wider than
        ``size / 2``. The result is then about ``size / 2`` and tiled output cannot equal the
        untiled pass exactly; use a larger ``size`` or tiles covering the whole image.
    """
    in_channels = _as_int(in_channels, "in_channels", minimum=1)
    align = _as_int(align, "align", minimum=1)
    multiple = _as_int(multiple, "multiple", minimum=1)
    size = _as_int(size, "size", minimum=2 * align)
    if size % align:
        raise ValueError(f"size ({size}) must be a multiple of align ({align})")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    centre = (size // 2) // align * align  # phase 0 of the pooling lattice
    base = np.random.default_rng(seed).random((in_channels, size, size), dtype=np.float32)

    def probe(phases: list[int]) -> np.ndarray:
        x = np.repeat(base[None], len(phases), axis=0)
        for b, p in enumerate(phases):
            if p >= 0:
                x[b, :, centre + p, centre + p] += 1.0
        return np.asarray(forward(x), dtype=np.float64)

    phases = [-1] + list(range(align))  # -1: the unperturbed reference
    outputs = [probe(phases[k : k + batch_size]) for k in range(0, len(phases), batch_size)]
    y = np.concatenate(outputs)
    if y.ndim != 4 or y.shape[0] != len(phases) or y.shape[2:] != (size, size):
        raise ValueError(f"forward must keep the spatial size {size} x {size}; got output {y.shape}")
    radius, touched_border, changed = 0, False, False
    for k, p in enumerate(phases[1:], start=1):
        diff = np.abs(y[k] - y[0]).max(axis=0)
        peak = diff.max()
        if peak == 0:
            continue
        changed = True
        ys, xs = np.nonzero(diff > tol * peak)
        q = centre + p
        radius = max(radius, int(np.abs(ys - q).max()), int(np.abs(xs - q).max()))
        touched_border |= bool(ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or xs.max() == size - 1)
    if not changed:
        raise ValueError("forward's output does not depend on its input; cannot measure a receptive field")
    if touched_border:
        warnings.warn(
            f"the receptive field reaches the border of the {size} x {size} probe: the network has "
            "global context or a radius above size / 2; tiled output will not equal untiled output",
            stacklevel=2,
        )
    return _round_up(radius, multiple)


def measure_halo_grown(
    forward: Forward,
    *,
    in_channels: int = 3,
    sizes: Iterable[int] = (256, 512, 1024),
    tol: float = 1e-4,
    align: int,
) -> int:
    """:func:`measure_halo` with probes of growing size until the field fits in one.

    A trained network's effective receptive field can be much wider than an
    untrained one's (recurrent convolutions, deep bottlenecks); a probe it
    reaches the border of would under-measure it. ``align`` as for :func:`measure_halo`.

    Raises
    ------
    ValueError
        The field reaches the border of the largest probe.
    """
    last = None
    for size in sizes:
        last = size
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            try:
                return measure_halo(forward, in_channels=in_channels, size=size, tol=tol, align=align)
            except UserWarning:
                continue
    raise ValueError(f"the receptive field is wider than a {last} px probe: tiled output cannot equal untiled output")
