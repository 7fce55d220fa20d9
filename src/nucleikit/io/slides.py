"""Whole-slide images (SVS, NDPI, SCN, BIF, pyramidal TIFF), read region by region.

:func:`open_slide` returns a :class:`Slide`, the one implementation of the
:class:`SlideReader` protocol, backed by ``tiffslide`` (tifffile + zarr): only the
tiles a region touches are decoded, so a slide is never loaded whole. Another back
end (OpenSlide for MIRAX, DICOM) would be a second class with the same protocol.

Coordinates
-----------
A region is a :class:`~nucleikit.windows.Window` ``[y0, y1) x [x0, x1)`` in the
pixel grid **of the level it is read from** (row ``y``, column ``x``; pixel ``(r, c)``
is centred on ``(x, y) = (c, r)`` at that level). Level ``k`` pixel ``(x, y)`` covers
level-0 pixels ``[x * dx, (x + 1) * dx)`` with ``dx = W0 / Wk`` (and likewise in
``y``); :attr:`Slide.level_downsamples` is the mean of the two ratios, as OpenSlide
reports it.

Pixels
------
Regions come back as (h, w, 3) float32 in [0, 1], the layout of
:func:`nucleikit.io.images.read_image`: 8-bit samples / 255, 16-bit / 65535; grey is
replicated to RGB; an alpha channel is **dropped** (not composited): scanners write
opaque tissue, and OpenSlide's own transparent pixels, outside the scanned area, do not
occur in TIFF-based files.

Outside the slide
-----------------
A window may reach beyond the level (the halo of a border tile). Those pixels are made
up exactly as :func:`nucleikit.windows.read_window` makes them up for an array,
by reflection about the border (``pad_mode="reflect"`` by default): a region is
``read_window(slide.level_view(level), window)``. So a slide read tile by tile gives the
network the same input as the same pixels held in an array, and "tiled equals untiled"
carries over to slides. (White padding would look more natural on glass, but would
make the slide path disagree with the array path at every border.)

Pixel size
----------
``mpp`` (µm/px along x at level 0) is, in order: the ``mpp=`` argument (a user's
``--mpp``); the vendor metadata as parsed by tiffslide (Aperio ``MPP``, Leica,
Philips) or, failing that, the TIFF resolution tags (inch, cm, mm, µm units); OME-XML
``PhysicalSizeX`` or ImageJ ``unit=micron`` (as for plain images). A value outside
:data:`~nucleikit.io.images.MPP_RANGE` is ignored (e.g. an editor's 72 dpi). It is
``None`` when unknown; :meth:`Slide.require_mpp` then raises an
:class:`~nucleikit.errors.InputError` asking for ``--mpp``.

Errors
------
A missing, empty, truncated or damaged file, a file that is not TIFF-based (a PNG
renamed ``.svs``), an unsupported sample type, a level that does not exist, and damaged
tile data met while reading are :class:`~nucleikit.errors.InputError` naming the file.
Truncation is detected on opening: every tile of every level must lie inside the file.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nucleikit.errors import ConfigError, InputError, missing_reason
from nucleikit.windows import Window, read_window
from nucleikit.io.images import MAX_PIXELS, MPP_RANGE

__all__ = [
    "LARGE_TIFF_SIDE",
    "SLIDE_SUFFIXES",
    "SlideReader",
    "Slide",
    "SlideLevel",
    "open_slide",
    "is_slide_path",
]

#: Suffixes (lower case) always treated as whole slides. ``.tif``/``.tiff`` are slides
#: only when pyramidal or large (see :func:`is_slide_path`). MIRAX (``.mrxs``) is not
#: TIFF-based and is not read.
SLIDE_SUFFIXES = (".svs", ".ndpi", ".scn", ".bif")

#: A tiled TIFF whose longer side exceeds this is a slide, not an image tile.
LARGE_TIFF_SIDE = 8192

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_OTHER_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"BM": "a BMP image"}
# Pixels per strip when a whole level is streamed (thumbnails): 4 Mpx, 48 MB as float32 RGB.
_STRIP_PIXELS = 2**22


@runtime_checkable
class SlideReader(Protocol):
    """What the whole-slide pipeline needs from a slide, whatever library reads it."""

    path: Path
    dimensions: tuple[int, int]
    level_count: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None

    def require_mpp(self) -> float: ...

    def level_view(self, level: int = 0) -> Any: ...

    def read_region(self, window: Window, level: int = 0, *, pad_mode: str = "reflect") -> np.ndarray: ...

    def best_level_for_mpp(self, target_mpp: float, *, tol: float = 0.05) -> tuple[int, float]: ...

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]: ...

    def close(self) -> None: ...


class SlideLevel:
    """One pyramid level as a lazy (H, W, 3) float32 array in [0, 1].

    Supports ``.shape``, ``.dtype``, ``.ndim`` and basic slicing ``level[y0:y1, x0:x1]``
    (unit step, bounds clipped as NumPy does), decoding only the tiles touched. It can be
    passed wherever :mod:`nucleikit.infer.tiling` takes an image (``read_window``,
    ``predict_tiles``).
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, slide: Slide, level: int, array: Any, axes: str, channels: int) -> None:
        self._slide = slide  # to refuse reads once it is closed
        self._path = slide.path
        self._level = level
        self._array = array  # zarr array in the file's axis order
        self._axes = axes
        self._channels = channels
        h, w = (array.shape[1], array.shape[2]) if axes == "CYX" else (array.shape[0], array.shape[1])
        self.shape = (int(h), int(w), 3)
        chunks = array.chunks[1:3] if axes == "CYX" else array.chunks[:2]
        #: (height, width) of the file's tiles (or strips) at this level; reads aligned to
        #: them decode each tile once.
        self.chunk_shape = (int(chunks[0]), int(chunks[1]))
        # Divide (not multiply by 1/max) so pixels equal read_image's bit for bit.
        self._max = np.float32(np.iinfo(array.dtype).max)

    def __repr__(self) -> str:
        return f"SlideLevel({str(self._path)!r}, level={self._level}, shape={self.shape})"

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = _two_slices(key)
        if self._slide.closed:
            raise ValueError(f"{self._path}: slide is closed")
        try:
            if self._axes == "CYX":
                raw = np.moveaxis(np.asarray(self._array[:, rows, cols]), 0, -1)
            else:
                raw = np.asarray(self._array[rows, cols])
        except (OSError, ValueError, RuntimeError, KeyError, IndexError) as exc:
            # imagecodecs reports a corrupt tile as RuntimeError, a short read as ValueError.
            _settle_zarr_reads()
            raise InputError(self._path, f"damaged tile data at level {self._level} ({exc})") from exc
        if raw.ndim == 2:
            raw = raw[:, :, np.newaxis]
        if self._channels in (1, 2):  # grey (+ alpha): alpha dropped, grey replicated
            raw = np.repeat(raw[:, :, :1], 3, axis=2)
        elif self._channels == 4:  # RGBA: alpha dropped
            raw = raw[:, :, :3]
        return raw.astype(np.float32) / self._max


def _settle_zarr_reads(timeout: float = 10.0) -> None:
    """Let the tile reads a failed read left running finish, and take their errors.

    zarr decodes the tiles of one read concurrently on its own event loop (a background
    thread) and hands back the first error; the other tiles' reads go on, and when they
    fail too, or the process exits while they are still pending, asyncio prints "Task
    exception was never retrieved" / "Task was destroyed but it is pending!" tracebacks
    after nucleikit's one-line message. Waiting here for every task of that loop (at most
    ``timeout`` seconds) and retrieving their exceptions keeps the report to that line.
    Only zarr's loop is touched; nothing is done when it is not running or this zarr
    keeps its loop elsewhere.
    """
    import asyncio

    try:
        from zarr.core import sync as zarr_sync

        zarr_loop = zarr_sync.loop[0]
    except (ImportError, AttributeError, IndexError, TypeError):
        return
    if not isinstance(zarr_loop, asyncio.AbstractEventLoop) or zarr_loop.is_closed() or not zarr_loop.is_running():
        return

    async def settle() -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" report

    try:
        asyncio.run_coroutine_threadsafe(settle(), zarr_loop).result(timeout + 1.0)
    except Exception:  # noqa: BLE001 - best effort: the read's own error is what matters
        pass


def _two_slices(key: Any) -> tuple[slice, slice]:
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) > 3 or (len(key) == 3 and key[2] != slice(None)):
        raise IndexError("a slide level supports [rows, cols] or [rows, cols, :] slicing only")
    out = []
    for k in (*key[:2], slice(None))[:2]:
        if not isinstance(k, slice) or k.step not in (None, 1):
            raise IndexError(f"a slide level supports unit-step slices only, got {k!r}")
        out.append(k)
    return out[0], out[1]


class Slide:
    """A TIFF-based whole-slide image opened with tiffslide; use :func:`open_slide`.

    Attributes
    ----------
    path : Path
        The file.
    dimensions : (int, int)
        (width, height) of level 0 in pixels (OpenSlide's order).
    level_count : int
        Number of pyramid levels (1 for a single-resolution file).
    level_dimensions : tuple of (int, int)
        (width, height) of each level, finest first.
    level_downsamples : tuple of float
        Level-0 pixels per level pixel, the mean over x and y; ``level_downsamples[0] == 1``.
    mpp : float or None
        µm per level-0 pixel along x (see the module docstring); None if unknown.
    closed : bool
        True after :meth:`close`; reads then raise ``ValueError``.
    vendor : str
        tiffslide's format name: ``"aperio"``, ``"hamamatsu"``, ``"leica"``,
        ``"generic-tiff"``, ...

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path, handle: Any, *, mpp: float | None, vendor: str) -> None:
        self.path = path
        self._handle = handle  # tiffslide.TiffSlide
        self.closed = False
        self.dimensions = tuple(int(v) for v in handle.dimensions)
        self.level_dimensions = tuple((int(w), int(h)) for w, h in handle.level_dimensions)
        self.level_count = len(self.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in handle.level_downsamples)
        self.mpp = mpp
        self.vendor = vendor
        self._axes = handle.properties["tiffslide.series-axes"]
        self._views: dict[int, SlideLevel] = {}

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"Slide({str(self.path)!r}, {w}x{h}, levels={self.level_count}, mpp={self.mpp})"

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file; further reads raise ``ValueError``. Closing twice is harmless."""
        if not self.closed:
            self.closed = True
            self._views.clear()
            self._handle.close()

    def require_mpp(self) -> float:
        """The level-0 pixel size in µm/px, or an error telling the user to give it.

        Raises
        ------
        InputError
            When the file records no plausible pixel size and none was passed.
        """
        if self.mpp is None:
            raise InputError(
                self.path, "the slide records no pixel size (µm/px); pass it with --mpp (e.g. --mpp 0.25 for 40x)"
            )
        return self.mpp

    def _check_level(self, level: int) -> int:
        is_int = isinstance(level, (int, np.integer)) and not isinstance(level, bool)
        if not is_int or not 0 <= level < self.level_count:
            raise InputError(
                self.path, f"level {level!r} does not exist (the slide has levels 0 to {self.level_count - 1})"
            )
        return int(level)

    def level_view(self, level: int = 0) -> SlideLevel:
        """Level ``level`` as a lazy (H, W, 3) float32 array (see :class:`SlideLevel`).

        Raises
        ------
        InputError
            If the level does not exist.
        """
        level = self._check_level(level)
        if self.closed:
            raise ValueError(f"{self.path}: slide is closed")
        if level not in self._views:
            array = self._handle.zarr_group[str(level)]
            self._views[level] = SlideLevel(self, level, array, self._axes, _channels(array, self._axes))
        return self._views[level]

    def read_region(self, window: Window, level: int = 0, *, pad_mode: str = "reflect") -> np.ndarray:
        """Pixels of ``window`` at ``level``, decoded on demand.

        Parameters
        ----------
        window : Window
            ``[y0, y1) x [x0, x1)`` in that level's pixel coordinates; may extend beyond the
            level by any amount.
        level : int
            Pyramid level, ``0 .. level_count - 1``.
        pad_mode : {"reflect", "symmetric", "edge", "constant"}
            How pixels outside the level are made up, as in
            :func:`~nucleikit.windows.read_window` (``"constant"`` gives black, 0).

        Returns
        -------
        (h, w, 3) float32 ndarray
            Values in [0, 1]; ``(h, w) = window.shape``. Equal to
            ``read_window(level_pixels, window, pad_mode=pad_mode)`` on the level held
            as an array.

        Raises
        ------
        InputError
            If the level does not exist or a tile is damaged.
        """
        return read_window(self.level_view(level), window, pad_mode=pad_mode)

    def best_level_for_mpp(self, target_mpp: float, *, tol: float = 0.05) -> tuple[int, float]:
        """The coarsest level still at least as fine as ``target_mpp`` (within ``tol``).

        The caller resamples the level by ``mpp_at_level / target_mpp`` (<= 1 + tol, so
        usually a downsampling). Reading a coarser level and upsampling would lose detail.

        Parameters
        ----------
        target_mpp : float
            Wanted pixel size in µm/px (e.g. the model's).
        tol : float
            Relative slack: a level of ``target_mpp * (1 + tol)`` µm/px still counts, so a
            0.5 µm/px model uses a 0.502 µm/px level rather than the 0.251 level.

        Returns
        -------
        level : int
            The chosen level; 0 if even level 0 is coarser than the target.
        mpp_at_level : float
            ``mpp * level_downsamples[level]``.

        Raises
        ------
        InputError
            If the pixel size is unknown (:meth:`require_mpp`).
        ConfigError
            If ``target_mpp`` is not a positive number or ``tol`` is negative.
        """
        if not _positive(target_mpp):
            raise ConfigError(f"target pixel size must be a positive number of µm/px, got {target_mpp!r}")
        if not tol >= 0:
            raise ConfigError(f"tol must be >= 0, got {tol!r}")
        mpp = self.require_mpp()
        level_mpps = [mpp * d for d in self.level_downsamples]
        fine_enough = [k for k, m in enumerate(level_mpps) if m <= target_mpp * (1 + tol)]
        level = max(fine_enough, default=0)
        return level, level_mpps[level]

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole slide reduced so that its longer side is ``max_side`` pixels.

        Each thumbnail pixel is the area average of the level-0 square it covers (exact box
        filter), computed from the coarsest level that is still fine enough, streamed in
        strips of rows so no level is held whole.

        Parameters
        ----------
        max_side : int
            Longer side of the result. A slide smaller than that is returned at level 0
            (never enlarged).

        Returns
        -------
        thumb : (h, w, 3) float32 ndarray
            Values in [0, 1].
        scale : float
            Thumbnail pixels per level-0 pixel (<= 1): thumbnail pixel ``(r, c)`` covers
            level-0 ``[r / scale, (r + 1) / scale) x [c / scale, (c + 1) / scale)``. The last
            row and column may reach past the slide; they average its part inside.
        """
        if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
            raise ConfigError(f"max_side must be a positive integer, got {max_side!r}")
        w0, h0 = self.dimensions
        if max_side >= max(w0, h0):
            return self.read_region(Window(0, 0, h0, w0), 0), 1.0
        scale = max_side / max(w0, h0)
        # The coarsest level not coarser than the thumbnail (0.1 % slack: pyramid sizes are rounded).
        level = max(k for k, d in enumerate(self.level_downsamples) if k == 0 or d <= 1.001 / scale)
        view = self.level_view(level)
        hl, wl = view.shape[:2]
        # Thumbnail pixel edges in level-l pixel units, per axis.
        th, tw = (math.ceil(side * scale - 1e-9) for side in (h0, w0))
        ry = _box_weights(th, (h0 / hl) * scale, hl)
        rx = _box_weights(tw, (w0 / wl) * scale, wl)
        out = np.zeros((th, tw * 3), dtype=np.float64)
        # Strips of whole tile rows, so that no tile is decoded twice.
        tile_h = view.chunk_shape[0]
        step = max(1, _STRIP_PIXELS // (wl * tile_h)) * tile_h
        for r0 in range(0, hl, step):
            r1 = min(r0 + step, hl)
            strip = view[r0:r1, 0:wl]  # (rows, wl, 3)
            cols = rx @ strip.transpose(1, 0, 2).reshape(wl, -1)  # (tw, rows * 3)
            cols = cols.reshape(tw, r1 - r0, 3).transpose(1, 0, 2).reshape(r1 - r0, tw * 3)
            out += ry[:, r0:r1] @ cols
        return np.clip(out.reshape(th, tw, 3), 0.0, 1.0).astype(np.float32), scale


def _box_weights(n_out: int, out_per_in: float, n_in: int) -> Any:
    """(n_out, n_in) sparse area-average matrix; output pixel i covers input [i / s, (i + 1) / s).

    Rows are normalised over the part of each output pixel inside the input, so the last,
    partial pixel averages what it covers.
    """
    from scipy import sparse

    in_edges = np.arange(n_in + 1, dtype=np.float64)
    out_edges = np.minimum(np.arange(n_out + 1, dtype=np.float64) / out_per_in, n_in)
    edges = np.unique(np.concatenate([in_edges, out_edges]))
    lengths = np.diff(edges)
    mids = (edges[:-1] + edges[1:]) / 2
    src = np.clip(np.floor(mids), 0, n_in - 1).astype(np.int64)
    dst = np.clip(np.floor(mids * out_per_in), 0, n_out - 1).astype(np.int64)
    matrix = sparse.csr_matrix((lengths, (dst, src)), shape=(n_out, n_in))  # duplicates summed
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    return sparse.diags(1.0 / totals) @ matrix


def _channels(array: Any, axes: str) -> int:
    if axes == "YX":
        return 1
    return int(array.shape[0] if axes == "CYX" else array.shape[2])


def _positive(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def open_slide(path: str | Path, *, mpp: float | None = None) -> Slide:
    """Open a TIFF-based whole-slide image for reading regions.

    Parameters
    ----------
    path : str or Path
        An SVS, NDPI, SCN, BIF or (pyramidal or tiled) TIFF file.
    mpp : float or None
        Level-0 pixel size in µm/px; overrides the file's metadata (a user's ``--mpp``).

    Returns
    -------
    Slide
        Open; close it (or use ``with``).

    Raises
    ------
    InputError
        Missing, empty, not TIFF-based, truncated or damaged file; unsupported layout or
        sample type.
    ConfigError
        If ``mpp`` is given but not a positive number.
    """
    import tiffslide

    path = Path(path)
    if mpp is not None and not _positive(mpp):
        raise ConfigError(f"--mpp must be a positive number of µm/px, got {mpp!r}")
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # tiffslide warns that its NDPI/Ventana metadata parsing is partial; we only need
            # levels and mpp, which it reads.
            warnings.simplefilter("ignore", UserWarning)
            handle = tiffslide.TiffSlide(path)
            properties = handle.properties
    except (tiffslide.TiffFileError, ValueError, IndexError, KeyError, OSError, NotImplementedError) as exc:
        raise InputError(path, f"truncated or damaged slide file, or unsupported layout ({exc})") from exc
    try:
        _check_layout(path, handle)
        file_mpp = _file_mpp(handle, properties)
        vendor = str(properties.get("tiffslide.vendor") or "generic-tiff")
    except BaseException:
        handle.close()
        raise
    return Slide(path, handle, mpp=float(mpp) if mpp is not None else file_mpp, vendor=vendor)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, missing_reason(path))
    if path.is_dir():
        raise InputError(path, "is a folder, not a slide file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    with path.open("rb") as f:
        head = f.read(16)
    if head[:4] not in _TIFF_MAGIC:
        kind = next((name for magic, name in _OTHER_MAGIC.items() if head.startswith(magic)), None)
        what = f"is {kind}, not a whole-slide file" if kind else "is not a TIFF-based whole-slide file"
        raise InputError(path, f"{what} (readable: SVS, NDPI, SCN, BIF, pyramidal TIFF)")
    # Slide writers put the first image directory at the end of the file, so a cut-off
    # copy usually loses it; say so plainly (tifffile would log an error and find no pages).
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if len(head) < (16 if big else 8):
        raise InputError(path, "truncated file (shorter than a TIFF header)")
    first_ifd = int.from_bytes(head[8:16] if big else head[4:8], "little" if order == "<" else "big")
    size = path.stat().st_size
    if first_ifd >= size:
        raise InputError(path, f"truncated file: its first image directory lies past its end ({size:,} bytes)")


def _check_layout(path: Path, handle: Any) -> None:
    """Refuse what we cannot read correctly, and truncation, before any pixel is decoded."""
    axes = handle.properties["tiffslide.series-axes"]
    try:
        array = handle.zarr_group["0"]
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError) as exc:
        raise InputError(path, f"damaged or unsupported slide file ({exc})") from exc
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported sample type {array.dtype.name} (whole slides must be 8 or 16-bit)")
    channels = _channels(array, axes)
    if channels not in (1, 2, 3, 4):
        raise InputError(path, f"slide has {channels} channels (expected grey, RGB or RGBA)")
    size = path.stat().st_size
    tif = handle.ts_tifffile
    series = tif.series[handle.properties["tiffslide.series-index"]]
    for level, pages in enumerate(series.levels):
        for page in pages.pages:
            offsets = np.asarray(getattr(page, "dataoffsets", ()), dtype=np.int64)
            counts = np.asarray(getattr(page, "databytecounts", ()), dtype=np.int64)
            present = counts > 0
            if present.any() and int((offsets[present] + counts[present]).max()) > size:
                reason = f"truncated file: image data of level {level} lies past its end ({size:,} bytes)"
                raise InputError(path, reason)


def _file_mpp(handle: Any, properties: dict[str, Any]) -> float | None:
    value = properties.get("tiffslide.mpp-x")
    try:
        mpp = float(value) if value is not None else None
    except (TypeError, ValueError):
        mpp = None
    if mpp is not None and math.isfinite(mpp) and MPP_RANGE[0] <= mpp <= MPP_RANGE[1]:
        return mpp
    # OME-XML and ImageJ metadata, which tiffslide does not parse; same rules as plain images.
    from nucleikit.io.images import _tiff_mpp

    tif = handle.ts_tifffile
    return _tiff_mpp(tif, tif.series[properties["tiffslide.series-index"]].keyframe)


def is_slide_path(path: str | Path) -> bool:
    """Whether the command line should read ``path`` as a whole slide rather than an image.

    True for the suffixes in :data:`SLIDE_SUFFIXES` (whatever the content: opening it
    then reports a bad file). A ``.tif``/``.tiff`` is a slide when its first image
    series has more than one resolution level, or is tiled with a side over
    :data:`LARGE_TIFF_SIDE` pixels, or has more pixels than
    :func:`~nucleikit.io.images.read_image` accepts (:data:`~nucleikit.io.images.MAX_PIXELS`).
    A small plain TIFF, any other suffix, and an unreadable TIFF (left to the image reader
    to report) are not.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in (".tif", ".tiff") or not p.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            if not tif.series:
                return False
            series = tif.series[0]
            page = series.keyframe
            height, width = int(page.imagelength), int(page.imagewidth)
            return (
                len(series.levels) > 1
                or (page.is_tiled and max(height, width) > LARGE_TIFF_SIDE)
                or height * width > MAX_PIXELS
            )
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError):
        return False

