"""Whole-slide detection: tiled, seam-exact, memory-bounded and resumable.

:func:`detect_slide` runs a :class:`~nucleikit.infer.predict.Detector` over a slide that
never fits in memory and gives the nuclei that :meth:`Detector.detect
<nucleikit.infer.predict.Detector.detect>` would give on the same pixels held as one
array (within floating-point noise of the network, and ties apart). It is built from
the package's own parts: :mod:`nucleikit.io.slides` reads regions,
:mod:`nucleikit.infer.tissue` skips glass, :func:`~nucleikit.infer.tiling.predict_tiles`
(the one tiling engine) runs the network, :func:`~nucleikit.postprocess.find_peaks`
finds centres, the writer registry (:mod:`nucleikit.export`) writes the tables.

Whole-slide segmentation (:func:`nucleikit.infer.wsi_segment.segment_slide`) runs on the
same engine: steps 1, 3 and 6 below, the tile grid of step 4 and the progress bar are
functions both use (``_plan_slide``, ``_TileStore``, ``_run_tiles``, ``_finish_slide``);
only the work on a tile and the tables written differ.

Steps
-----
1. **Level and resolution** (:func:`slide_geometry`). The pyramid level is the coarsest
   one not coarser than the model (:meth:`Slide.best_level_for_mpp
   <nucleikit.io.slides.Slide.best_level_for_mpp>`), or the one asked for. The slide is
   then seen through a virtual image **at the model's resolution**, the *model grid*: a
   level of ``Hk x Wk`` pixels at ``mk`` µm/px and a model at ``mm`` µm/px give a grid of
   ``Hm = round(Hk * f) x Wm = round(Wk * f)`` pixels with ``f = mk / mm``, exactly the
   size :func:`nucleikit.transforms.resample` would give the level held as an array
   (``f`` is 1 when the two agree within 2 %, and then nothing is resampled).
2. **Exact window arithmetic.** All tiling happens on the model grid. Per axis, with
   ``s = Hm / Hk`` (the scale ``skimage.transform.resize`` actually applies), model pixel
   ``o`` is centred on level coordinate ``u = (o + 0.5) / s - 0.5`` (pixel-centre
   convention, PROTOCOL.md). A block of model pixels ``[o0, o1)`` is computed from the
   level pixels ``[floor(u(o0)) - r, floor(u(o1 - 1)) + 2 + r)``, read with reflection
   about the level border, where ``r`` is the radius of the anti-aliasing Gaussian
   (``sigma = (1/s - 1) / 2``, truncated at 4 sigma, only when shrinking): that margin
   holds every pixel the interpolation and the filter touch, so the block equals the same
   pixels of ``resample(level, f)`` (bilinear, ``mode="reflect"``), whatever the block.
   Pixels *outside* the model grid (the halo of a border tile) are made up by reflection
   about the **model grid's** border, as for an array: the virtual image is handed to
   ``predict_tiles``, whose :func:`~nucleikit.windows.read_window` does that, and only ever
   slices it inside. Standardisation (per-channel affine) is applied to the block.
   Back to the slide: model point ``p`` is level-0 point ``(p + 0.5) * a - 0.5`` per axis,
   with ``a = (H0 / Hk) / s`` level-0 pixels per model pixel.
3. **Tissue** (:mod:`nucleikit.infer.tissue`): computed on a ~8 µm/px thumbnail, or the
   user's mask, or none (``tissue_mask="all"``). A tile runs when any part of its core is
   tissue; a slide without any tissue is an :class:`~nucleikit.errors.InputError`.
4. **Tiles and seams.** A :class:`~nucleikit.infer.tiling.TileGrid` over the model grid
   with the predictor's halo plus ``d`` (the peak distance) rounded up to a multiple of the
   network's alignment (:func:`~nucleikit.infer.tiling.lattice_margin`, so the read windows
   lie on the same pooling lattice as the one-pass map's; a halo that differs by 8 shifts
   MicroNet's 16-pixel pooling cells and changes the map): each tile's output
   is kept over its core **grown by d** on every side (clipped to the grid), which is
   still at least the receptive-field radius from the read window's edge, so equals the
   one-pass map there. Peaks are found on that grown core and kept if the tile owns them
   (:meth:`Tile.owns <nucleikit.infer.tiling.Tile.owns>`): a peak's candidacy depends only
   on the map within ``d`` of it (:func:`~nucleikit.postprocess.find_peaks`), which the
   grown core contains for every core pixel, so each tile finds exactly the one-pass
   peaks of its core (ties apart: plateaus are broken in raster order, which a tile sees
   differently). Every nucleus is found once, by one tile.
5. **The global xi * max rule and the floor, in one pass.** Xing et al. keep peaks above
   ``xi * M``, ``M`` the maximum of the map over the *whole* image; nucleikit also asks
   every peak to exceed the absolute floor ``threshold_abs`` of the weights, so a peak is
   kept above ``T(M) = max(xi * M, threshold_abs)``
   (:func:`~nucleikit.postprocess.peak_threshold`, the rule :class:`Detector` applies to an
   array). Tiles come one at a time, so the running maximum ``M_t`` (over the cores
   processed so far, the current one included) only grows to the final ``M``. Each tile
   stores its peaks above ``T(M_t)``, with their scores and the tile's core maximum; at
   the end ``M`` is the maximum over the stored tile maxima and the nuclei are the stored
   peaks with ``score > T(M)``. This is exact: (a) ``find_peaks`` at a higher threshold
   returns exactly the lower threshold's peaks whose score exceeds it (candidacy does not
   depend on the threshold), and (b) since ``M_t <= M``, ``T(M_t) <= T(M)``: no peak above
   ``T(M)`` was left out when its tile was stored. The floor is one number for every tile,
   so it needs no global pass. The threshold is compared in float32, as ``find_peaks``
   compares a float32 map. ``M`` is the maximum over the tiles that ran (tissue), not
   over skipped glass.
6. **Streaming and resume.** Each finished tile is one row of ``<stem>.resume.sqlite`` in
   the output folder (tile index, core maximum, peak count, and the peaks as a blob of
   level-0 (x, y, score)),
   committed in its own transaction, so memory holds one batch of tiles, and a killed
   run loses at most the tiles in flight. The file also records a fingerprint of
   everything that decides the tiles (slide file, size and time, level, model grid, tile
   and halo, the task, peak distance, xi, the floor, bf16, the weights, the tiles selected); a rerun with
   ``resume=True`` and the same fingerprint skips the finished tiles, any other rerun
   starts afresh. Each command has its own store (segmentation's is
   ``<stem>_outlines.resume.sqlite``), and a run holds an exclusive lock,
   ``<stem>.resume.lock``, while it uses it: a second run on the same slide, command and
   folder is refused in one line while the first is alive (it would otherwise delete the
   live store), and a store left by a finished or killed run is replaced as above. The outputs
   are then written by streaming the rows in tile order (bounded memory), each atomically
   (temporary name, then rename), and the resume file is deleted. A completed slide is
   computed again when run again.

Outputs (``<stem>`` is the slide's file stem), in **level-0 pixel centres** (x, y), 0-based:

- ``<stem>.csv``: ``x,y,score``;
- ``<stem>.parquet``: the same columns at full precision;
- ``<stem>.geojson``: QuPath detections (:func:`nucleikit.export.qupath_features`);
- ``<stem>.sqlite``: table ``nuclei(id, x, y, score)`` with an R*Tree ``nuclei_rtree``;
  the nuclei of level-0 region ``[1000, 2000) x [500, 1500)`` (x, then y)::

      SELECT n.x, n.y, n.score FROM nuclei AS n JOIN nuclei_rtree AS r ON r.id = n.id
      WHERE r.max_x >= 1000 AND r.min_x <= 2000 AND r.max_y >= 500 AND r.min_y <= 1500
        AND n.x >= 1000 AND n.x < 2000 AND n.y >= 500 AND n.y < 1500;

  or :func:`nucleikit.export.query_region` (see :mod:`nucleikit.export.sqlite`);
- ``<stem>_tissue.png``: the tissue mask used (not written with ``tissue_mask="all"``);
  pixel ``(r, c)`` covers level-0 ``[r / scale, (r + 1) / scale)`` rows and likewise for
  columns, ``scale`` as in :class:`SlideResult`.

Memory: one batch of read windows and outputs, one chunk of nuclei while writing, the
tissue mask (at most 2048 pixels a side) and the tile list; none of it grows with the
number of nuclei, and only the tile list (a few bytes per tile) with the slide's area.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..export import Nuclei, SlideTable, check_slide_formats, output_stem, slide_formats, storage_errors, write_slide_outputs
from ..postprocess import find_peaks, peak_threshold, points_in_window
from ..transforms import scale_factor
from ..windows import Window, read_window
from .tiling import Tile, TileGrid, lattice_halo, lattice_margin, predict_tiles

__all__ = [
    "FORMATS",
    "SlideGeometry",
    "SlideProgress",
    "SlideResult",
    "slide_geometry",
    "detect_slide",
    "lock_path",
    "resume_path",
]

#: Output tables :func:`detect_slide` can write: every slide format of the writer registry.
FORMATS = slide_formats()

#: Largest side of a tissue mask read from a user's file.
MASK_SIDE = 2048

# Nuclei per chunk when streaming the outputs.
_CHUNK = 65536
_STORE_VERSION = 2  # 2: generic (tile, value, n, data) rows, task in the fingerprint
_COLUMNS = {"score": "float32"}


# --------------------------------------------------------------------------- geometry


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
    :func:`~nucleikit.windows.read_window` asks for); see the module docstring, step 2.
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


# --------------------------------------------------------------------------- tissue


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


# --------------------------------------------------------------------------- resume store


def resume_path(out_dir: str | Path, stem: str) -> Path:
    """Where a slide run keeps the finished tiles while it runs.

    ``stem`` is the command's output stem (:func:`nucleikit.export.output_stem`: the slide's
    stem for ``detect``, ``<stem>_outlines`` for ``segment``), so the two commands on one
    slide in one folder never share, nor delete, each other's store.
    """
    return Path(out_dir) / f"{stem}.resume.sqlite"


def lock_path(store: Path) -> Path:
    """The lock file beside a resume store: ``<stem>.resume.lock`` for ``<stem>.resume.sqlite``."""
    return store.with_suffix(".lock")


def _lock(path: Path, slide: Path | None) -> int | None:
    """Take an exclusive ``flock`` on ``path`` (created); the open descriptor, or None without fcntl.

    The lock dies with the process (a killed run leaves no stale lock). A run that ends
    deletes the lock file, so a file opened just before may be gone or replaced by the time
    it is locked: the descriptor is kept only when ``path`` is still that file.

    Raises
    ------
    InputError
        Another process holds the lock (a live run on the same slide, command and folder),
        naming ``slide``; or the lock file cannot be created.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return None
    for _ in range(100):  # each retry means a run ended just now; a loop, not a wait
        with storage_errors(path):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise InputError(path, f"cannot write: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(slide or path, f"another nucleikit run is working on it in {path.parent} (lock "
                                            f"{path.name}); wait for it to end, or choose another -o") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise InputError(path, "cannot take the lock: the file keeps being replaced")


class _TileStore:
    """Finished tiles in a SQLite file: one committed row per tile (module docstring, step 6).

    A row is ``(tile, value, n, data)``: the tile's index, one number the task needs back at
    the end (detection: the tile's core maximum), how many objects it holds and their bytes
    (detection: :func:`_pack_peaks`; segmentation: :func:`nucleikit.infer.wsi_segment`'s
    packing). The store does not read ``data``; the fingerprint, which names the task,
    keeps one task's rows from being read as another's.

    While open the store holds an exclusive lock (:func:`lock_path`), taken *before* the
    fingerprint is compared: a second run on the same slide, command and folder is refused
    while the first is alive, instead of deleting the store under it; a store left by a
    finished or killed run (no lock) with other settings is replaced. Every SQLite write
    goes through :func:`nucleikit.export.storage_errors`: a full disk is one line naming
    the store.
    """

    def __init__(self, path: Path, fingerprint: str, *, resume: bool, slide: Path | None = None) -> None:
        self.path = path
        self.con: sqlite3.Connection | None = None
        with storage_errors(path):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(path.parent, f"cannot create folder: {exc.strerror or exc}") from exc
        self._lock = _lock(lock_path(path), slide)
        try:
            with storage_errors(path):
                if path.exists() and not (resume and self._matches(path, fingerprint)):
                    _unlink_store(path)
                self.con = sqlite3.connect(path)
                self.con.execute("PRAGMA synchronous = NORMAL")
                self.con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self.con.execute(
                    "CREATE TABLE IF NOT EXISTS tiles (tile INTEGER PRIMARY KEY, value REAL NOT NULL, "
                    "n INTEGER NOT NULL, data BLOB NOT NULL)"
                )
                self.con.execute("INSERT OR IGNORE INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
                self.con.commit()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _matches(path: Path, fingerprint: str) -> bool:
        try:
            with contextlib.closing(sqlite3.connect(path)) as con:
                row = con.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        except sqlite3.DatabaseError:  # damaged or not ours: start afresh
            return False
        return row is not None and row[0] == fingerprint

    def close(self) -> None:
        """Close the database and give up the lock (the store stays for a resume). Idempotent."""
        if self.con is not None:
            self.con.close()
            self.con = None
        if self._lock is not None:
            # unlink before unlocking: a run waiting on this file then sees it replaced and retries
            lock_path(self.path).unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None

    def discard(self) -> None:
        """The slide is done: delete the store, then give up the lock."""
        if self.con is not None:
            self.con.close()
            self.con = None
        _unlink_store(self.path)
        self.close()

    def finished(self) -> tuple[set[int], float, int]:
        """(tile indices done, maximum of their values (-inf if none), objects stored)."""
        with storage_errors(self.path):
            done = {int(r[0]) for r in self.con.execute("SELECT tile FROM tiles")}
            top, count = self.con.execute("SELECT MAX(value), COALESCE(SUM(n), 0) FROM tiles").fetchone()
        return done, (float(top) if top is not None else -math.inf), int(count)

    def add(self, tile: int, value: float, n: int, data: bytes) -> None:
        with storage_errors(self.path), self.con:  # one transaction per tile: there entirely or not at all
            self.con.execute("INSERT OR REPLACE INTO tiles VALUES (?, ?, ?, ?)", (tile, value, n, data))

    def rows(self, tiles: set[int]) -> Iterator[bytes]:
        """The ``data`` of the stored tiles in ``tiles``, in tile order, one row at a time."""
        with storage_errors(self.path):
            for tile, data in self.con.execute("SELECT tile, data FROM tiles ORDER BY tile"):
                if tile in tiles:
                    yield data


def _unlink_store(path: Path) -> None:
    """Delete a store and its rollback journal (a journal left beside a new store would be replayed into it)."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + "-journal").unlink(missing_ok=True)


def _pack_peaks(xy0: np.ndarray, scores: np.ndarray) -> bytes:
    """(n, 2) level-0 (x, y) and (n,) scores as little-endian float64 rows (x, y, score)."""
    data = np.column_stack([xy0, scores.astype(np.float64)]) if len(scores) else np.zeros((0, 3))
    return np.ascontiguousarray(data, dtype="<f8").tobytes()


def _peak_chunks(store: _TileStore, threshold: float,
                 tiles: set[int]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Stored peaks with ``score > threshold`` (float32 comparison), in tile order, in chunks of ``_CHUNK``."""
    buffer: list[np.ndarray] = []
    size = 0
    thr32 = np.float32(threshold)
    for blob in store.rows(tiles):
        data = np.frombuffer(blob, dtype="<f8").reshape(-1, 3)
        data = data[data[:, 2].astype(np.float32) > thr32]
        if len(data):
            buffer.append(data)
            size += len(data)
        if size >= _CHUNK:
            yield _as_chunk(buffer)
            buffer, size = [], 0
    yield _as_chunk(buffer)  # possibly empty: the writers still get the schema


def _as_chunk(parts: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    data = np.concatenate(parts) if parts else np.zeros((0, 3))
    return data[:, :2], {"score": data[:, 2].astype(np.float32)}


def _fingerprint(slide_path: Path, meta: dict, model: Any, geometry: SlideGeometry, grid: TileGrid,
                 selected: np.ndarray, settings: dict[str, Any]) -> str:
    """Everything that decides a slide's tiles, as one string (module docstring, step 6).

    ``meta`` and ``model`` (its ``state_dict``, when it has one) identify the weights;
    ``settings`` holds the task and its post-processing (JSON-serialisable).
    """
    stat = slide_path.stat()
    digest = hashlib.sha256()
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(np.packbits(selected).tobytes())
    record = {
        "version": _STORE_VERSION,
        "slide": str(slide_path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "geometry": [geometry.level, list(geometry.model_shape), list(geometry.scale)],
        "grid": [list(grid.core_shape), grid.read_halo, grid.align],
        "settings": settings,
        "weights_and_tiles": digest.hexdigest(),
    }
    return json.dumps(record, sort_keys=True, default=str)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SlideProgress:
    """Passed to ``on_tile`` after each tile is stored.

    Attributes
    ----------
    tile : int
        Index of the tile just stored (in its :class:`~nucleikit.infer.tiling.TileGrid`).
    done, total : int
        Tissue tiles finished (including resumed ones) and to do.
    candidates : int
        Objects stored so far. Detection: peaks, an upper bound on the nuclei, exact once
        the running maximum has stopped growing; segmentation: the nuclei kept so far.
    """

    tile: int
    done: int
    total: int
    candidates: int


@dataclass(frozen=True)
class SlideResult:
    """What :func:`detect_slide` produced for one slide.

    Attributes
    ----------
    path : Path
        The slide.
    count : int
        Nuclei found.
    level : int
        Pyramid level read.
    mpp : float or None
        Level-0 µm/px used (None if unknown and a level was given).
    mpp_source : str
        ``"option"`` (given) or ``"metadata"`` (the file's); ``"unknown"`` when None.
    factor : float
        Resize factor from the level to the model grid (1.0: none).
    model_shape : (int, int)
        (H, W) of the model grid.
    tiles_total : int
        Tiles in the grid.
    tiles_tissue : int
        Tiles with tissue (run or resumed).
    tiles_resumed : int
        Tissue tiles found finished in the resume file.
    map_max : float
        Maximum of the probability map over the tissue tiles.
    threshold : float
        Score threshold applied, ``max(xi * map_max, threshold_abs)`` (``inf`` when
        ``map_max <= 0``).
    mask_scale : float
        Tissue-mask pixels per level-0 pixel (1.0 without a mask).
    seconds : float
        Wall time.
    outputs : dict of str to Path
        Format (``"csv"``, ``"parquet"``, ``"geojson"``, ``"sqlite"``, ``"tissue"``) → file.
    """

    path: Path
    count: int
    level: int
    mpp: float | None
    mpp_source: str
    factor: float
    model_shape: tuple[int, int]
    tiles_total: int
    tiles_tissue: int
    tiles_resumed: int
    map_max: float
    threshold: float
    mask_scale: float
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    return check_slide_formats(formats)


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


def _grown(tile: Tile, margin: int, shape: tuple[int, int]) -> Tile:
    """``tile`` with its core grown by ``margin`` on each side, clipped to the grid."""
    c = tile.core
    core = Window(max(c.y0 - margin, 0), max(c.x0 - margin, 0), min(c.y1 + margin, shape[0]),
                  min(c.x1 + margin, shape[1]))
    return Tile(index=tile.index, position=tile.position, read=tile.read, core=core)


@contextlib.contextmanager
def _progress_bar(enabled: bool, name: str, total: int, done: int) -> Iterator[Callable[[int, int], None]]:
    """A Rich bar (tiles done/total, nuclei so far, elapsed, ETA); yields ``update(done, nuclei)``."""
    if not enabled:
        yield lambda done, nuclei: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
               TextColumn("{task.fields[nuclei]:,} nuclei"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(name, total=total, completed=done, nuclei=0)
        yield lambda done, nuclei: bar.update(task, completed=done, nuclei=nuclei)


# --------------------------------------------------------------------------- one slide run
# Detection and segmentation (:mod:`nucleikit.infer.wsi_segment`) share everything below but
# the work done on a tile and the tables written: the plan (level, model grid, tissue, tiles),
# the resume store, the progress bar and the finishing touches.


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
    """Level, model grid, tissue mask and the tiles with tissue (module docstring, steps 1-4).

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


def _run_tiles(store: _TileStore, results: Iterable[tuple[int, float, int, bytes]], *, name: str, total: int,
               done: int, stored: int, progress: bool,
               on_tile: Callable[[SlideProgress], None] | None) -> None:
    """Store each finished tile as it comes, then update the bar and call ``on_tile``.

    ``results`` yields ``(tile index, value, objects, data)`` rows for :meth:`_TileStore.add`;
    it is a generator, so the next tile is computed only once this one is committed (a
    stop raised by ``on_tile`` loses nothing stored).
    """
    with _progress_bar(progress, name, total, done) as update:
        update(done, stored)
        for index, value, n, data in results:
            store.add(index, value, n, data)
            done += 1
            stored += n
            update(done, stored)
            if on_tile is not None:
                on_tile(SlideProgress(tile=index, done=done, total=total, candidates=stored))


def _finish_slide(out: Path, stem: str, mask: np.ndarray | None, outputs: dict[str, Path], store: _TileStore) -> None:
    """Save the tissue mask used beside the tables and drop the resume file (the slide is done).

    ``stem`` is the command's output stem (:func:`nucleikit.export.output_stem`), so that
    ``detect`` and ``segment`` on one slide keep their own masks and resume files.
    """
    if mask is not None:
        from .tissue import save_mask_png

        outputs["tissue"] = save_mask_png(out / f"{stem}_tissue.png", mask)
    store.discard()  # under the lock: no other run can have taken the store over in between


def _mpp_source(option: float | None, slide: Any) -> str:
    return "option" if option is not None else ("metadata" if slide.mpp is not None else "unknown")


# --------------------------------------------------------------------------- detection


def detect_slide(
    slide_path: str | Path,
    detector: Any,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    level: int | None = None,
    tile: int | None = None,
    tissue_mask: Any = None,
    resume: bool = True,
    formats: Sequence[str] = FORMATS,
    threshold_rel: float | None = None,
    min_distance: float | None = None,
    progress: bool = True,
    on_tile: Callable[[SlideProgress], None] | None = None,
    threshold_abs: float | None = None,
) -> SlideResult:
    """Detect the nuclei of a whole slide, tile by tile, and write them (module docstring).

    Parameters
    ----------
    slide_path : str or Path
        A slide :func:`~nucleikit.io.slides.open_slide` reads (SVS, NDPI, pyramidal TIFF...).
    detector : Detector
        Its network, µm/px, xi (``threshold_rel``), floor (``threshold_abs``) and peak
        distance, and its
        ``predictor.config`` (tile size, batch size, memory budget, threads) and precision are used.
    out_dir : str or Path
        Output folder (created); see the module docstring for the files.
    mpp : float or None
        Level-0 µm/px, overriding the file's metadata.
    level : int or None
        Pyramid level to read; None: the coarsest level not coarser than the model.
    tile : int or None
        Tile core side in model pixels; None: ``detector.predictor.config.tile``, else the
        largest balanced cores whose read window fits the predictor's memory budget
        (``config.memory``, :func:`slide_tile`).
    tissue_mask : None, "all", str, Path or (h, w) bool ndarray
        None: detected on a thumbnail; ``"all"``: every tile runs; a path: a mask image
        (:func:`~nucleikit.infer.tissue.load_mask`); an array: a mask covering the whole
        slide with its aspect ratio.
    resume : bool
        Continue from the finished tiles of an interrupted run with the same settings.
    formats : sequence of str, or str
        Any of :data:`FORMATS` (or a comma-separated string).
    threshold_rel, min_distance : float or None
        Override the detector's xi and peak distance (model pixels).
    progress : bool
        Show a Rich progress bar on stderr.
    on_tile : callable or None
        Called with a :class:`SlideProgress` after each tile is stored (an exception it
        raises stops the run; the stored tiles stay for a resume).
    threshold_abs : float or None
        Override the detector's absolute floor (map units, >= 0).

    Returns
    -------
    SlideResult

    Raises
    ------
    InputError
        Unreadable slide, missing level, unknown pixel size (with ``level=None``), no tissue,
        a bad mask file.
    ConfigError
        Unknown format, bad ``tissue_mask``.
    """
    from ..io.slides import open_slide

    t_start = time.perf_counter()
    slide_path = Path(slide_path)
    out = Path(out_dir)
    formats = _check_formats(formats)
    xi = detector.threshold_rel if threshold_rel is None else float(threshold_rel)
    if not 0.0 <= xi <= 1.0:
        raise ConfigError(f"threshold (xi) must be in [0, 1], got {xi}")
    floor = detector.threshold_abs if threshold_abs is None else float(threshold_abs)
    if not (math.isfinite(floor) and floor >= 0.0):
        raise ConfigError(f"threshold_abs must be a finite number >= 0, got {floor}")
    distance = detector.min_distance if min_distance is None else min_distance
    md = int(distance)
    if md != distance or md < 1:
        raise ConfigError(f"min_distance must be a whole number of pixels >= 1, got {distance}")
    predictor = detector.predictor
    stem = slide_path.stem
    named = output_stem(stem, "detect")  # the stem of this command's files (unchanged for detect)

    halo = _slide_halo(predictor.halo, md, predictor.align)
    with open_slide(slide_path, mpp=mpp) as slide:
        plan = _plan_slide(slide, slide_path, detector.mpp, level=level, tissue_mask=tissue_mask,
                           tile=slide_tile(predictor, tile, halo), halo=halo, align=predictor.align)
        geometry, grid = plan.geometry, plan.grid
        batch = predictor.plan(geometry.model_shape, halo=halo, tile=grid.core_shape).batch_size
        settings = {"task": "detection", "min_distance": md, "xi": xi, "threshold_abs": floor,
                    "bf16": predictor.precision.bf16}
        fingerprint = _fingerprint(slide_path, detector.meta, predictor.model, geometry, grid, plan.selected,
                                   settings)
        store = _TileStore(resume_path(out, named), fingerprint, resume=resume, slide=slide_path)
        try:
            done_before, pending = _pending(store, plan)
            _, running_max, candidates = store.finished()
            total = len(plan.tissue_tiles)
            model_grid = _ModelGrid(slide.level_view(geometry.level), geometry, predictor.mean, predictor.std)
            results = _detect_tiles(predictor, model_grid, geometry, grid, pending, md, xi, floor, running_max,
                                    batch)
            _run_tiles(store, results, name=stem, total=total, done=len(done_before), stored=candidates,
                       progress=progress, on_tile=on_tile)
            _, map_max, _ = store.finished()
            threshold = peak_threshold(map_max, xi=xi, threshold_abs=floor)  # the rule of Detector.peaks
            outputs, count = _write_outputs(out, stem, formats, store, threshold, plan.tissue_tiles, detector.name,
                                            detector.calibrated, mpp=slide.mpp)
            _finish_slide(out, named, plan.mask, outputs, store)
        finally:
            store.close()
        source = _mpp_source(mpp, slide)
        mpp_used = slide.mpp
    return SlideResult(
        path=slide_path,
        count=count,
        level=geometry.level,
        mpp=mpp_used,
        mpp_source=source,
        factor=geometry.factor,
        model_shape=geometry.model_shape,
        tiles_total=len(grid),
        tiles_tissue=total,
        tiles_resumed=len(done_before),
        map_max=float(map_max),
        threshold=float(threshold) if math.isfinite(threshold) else math.inf,
        mask_scale=float(plan.mask_scale),
        seconds=time.perf_counter() - t_start,
        outputs=outputs,
    )


def _detect_tiles(predictor: Any, model_grid: _ModelGrid, geometry: SlideGeometry, grid: TileGrid,
                  pending: list[Tile], md: int, xi: float, floor: float, running_max: float, batch_size: int
                  ) -> Iterator[tuple[int, float, int, bytes]]:
    """Peaks of each pending tile as store rows ``(tile, core maximum, peaks, packed peaks)`` (steps 4-5).

    ``running_max`` starts at the maximum over the tiles already stored (a resume).
    """
    grown = (_grown(t, md, geometry.model_shape) for t in pending)
    for big, output in predict_tiles(predictor.forward, model_grid, grown, batch_size=batch_size):
        prob = output[0]
        own = grid[big.index]
        core = prob[own.core.y0 - big.core.y0 : own.core.y1 - big.core.y0,
                    own.core.x0 - big.core.x0 : own.core.x1 - big.core.x0]
        core_max = float(core.max())
        running_max = max(running_max, core_max)
        # T(M_t) <= T(M): nothing kept at the end is dropped here (step 5). While M_t <= 0 the
        # threshold is inf: the owned peaks (in the core, <= M_t) could not pass T(M) >= 0 anyway.
        threshold = peak_threshold(running_max, xi=xi, threshold_abs=floor)
        xy, scores = find_peaks(prob, min_distance=md, threshold=threshold)
        xy = xy + (big.core.x0, big.core.y0)
        c = own.core
        keep = points_in_window(xy, (c.y0, c.x0, c.y1, c.x1))  # the ownership rule of tiled inference
        yield own.index, core_max, int(keep.sum()), _pack_peaks(geometry.to_level0(xy[keep]), scores[keep])


def _write_outputs(out: Path, stem: str, formats: tuple[str, ...], store: _TileStore, threshold: float,
                   tiles: set[int], model_name: str,
                   calibrate: Callable[[np.ndarray], np.ndarray] | None = None,
                   mpp: float | None = None) -> tuple[dict[str, Path], int]:
    """Stream the kept nuclei into each requested file; returns the files and the count.

    ``stem`` is the slide's own stem: the registry adds ``detect``'s tag (none). The store
    holds raw map values (the threshold compares them); ``calibrate`` turns them into the
    output scores (:meth:`Detector.calibrated`), as the image path writes them. ``mpp`` is
    the slide's level-0 resolution, recorded in the GeoJSON.
    """
    count = 0

    def chunks() -> Iterator[Nuclei]:
        nonlocal count
        count = 0  # every format is one pass over the store; the last pass's count is the count
        for xy, columns in _peak_chunks(store, threshold, tiles):
            count += len(xy)
            if calibrate is not None:
                columns = {**columns, "score": np.asarray(calibrate(columns["score"]), np.float32)}
            yield Nuclei(xy, columns=columns, measurements={f"{model_name} score": columns["score"]})

    table = SlideTable(chunks, schema=_COLUMNS, mpp=mpp)
    return write_slide_outputs(out, stem, "detect", formats, table), count
