"""Tiles, the tile grid and the lattice rule: the geometry of the tiling engine.

:class:`TileGrid` cuts an (H, W) image into cores that partition it, each read with the same
halo (its :class:`Tile`: read window, core, and the ownership rule :meth:`Tile.owns` for
objects across seams). :func:`lattice_halo` and :func:`lattice_margin` are the one place
where halos and margins are rounded onto the network's pooling lattice. Why the windows must
lie on that lattice, and what "tiled equals untiled" asks of them, is told once, in
:mod:`nucleikit.infer.tiling`'s docstring (conditions 1-3, "The lattice rule, in one place").

Coordinates are 0-based pixels of the full image, (row, column) for windows and (x, y)
pixel centres for points. Everything public here is re-exported by
:mod:`nucleikit.infer.tiling`, the import path to use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from ..windows import Window

__all__ = ["Tile", "TileGrid", "lattice_halo", "lattice_margin"]

#: A network as the engine sees it: ``(B, C, h, w) float32 ndarray -> (B, K, h, w)``.
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
    (:mod:`nucleikit.infer.tiling` docstring, condition 3); any other step would shift them.

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
    ``align`` (see :mod:`nucleikit.infer.tiling`'s docstring for why that makes tiled equal untiled).

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
