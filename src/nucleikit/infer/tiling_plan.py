"""How large a tile: tile and batch sizes under a memory budget, and the halo overhead.

:func:`plan_tiles` chooses the cores and the windows per forward pass for an image (or a
slide's model grid) from the memory one forward pass may use: the whole image in one window
when it fits, else the largest balanced cores whose window fits, checked against
:data:`MAX_HALO_OVERHEAD` (pixels run over pixels kept, :func:`halo_overhead`). The reasoning,
with figures, is the section "How large a tile" of :mod:`nucleikit.infer.tiling`'s docstring;
sizes are in pixels, memory in bytes. The plan changes which pixels share a window, never
the output. Everything public here is re-exported by :mod:`nucleikit.infer.tiling`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .tiling_grid import TileGrid, _as_int, _round_up, lattice_halo

__all__ = [
    "MAX_HALO_OVERHEAD",
    "MAX_BATCH",
    "TilePlan",
    "halo_overhead",
    "tile_for_overhead",
    "tile_for_memory",
    "plan_tiles",
]


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
    """Tile size and batch size for an (H, W) image under a memory budget (the
    "How large a tile" section of :mod:`nucleikit.infer.tiling`'s docstring).

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
