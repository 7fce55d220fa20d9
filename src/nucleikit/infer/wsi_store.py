"""The resume store of a slide run: finished tiles in SQLite, its lock and its fingerprint.

Step 6 of the slide engine (:mod:`nucleikit.infer.wsi`): each finished tile is one committed
row of ``<stem>.resume.sqlite`` in the output folder (:func:`resume_path`); a run holds an
exclusive lock beside it (:func:`lock_path`) while it uses the store; a fingerprint of
everything that decides the tiles (``_fingerprint``) tells a rerun whether the stored tiles
are its own. ``_TileStore`` keeps bytes and knows no task: detection packs peaks
(:mod:`nucleikit.infer.wsi`), segmentation nuclei (:mod:`nucleikit.infer.wsi_segment`).
Re-exported by :mod:`nucleikit.infer.wsi`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..export import storage_errors
from .tiling import TileGrid
from .wsi_geometry import SlideGeometry

__all__ = ["lock_path", "resume_path"]

_STORE_VERSION = 2  # 2: generic (tile, value, n, data) rows, task in the fingerprint


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
    """Finished tiles in a SQLite file: one committed row per tile (:mod:`nucleikit.infer.wsi`, step 6).

    A row is ``(tile, value, n, data)``: the tile's index, one number the task needs back at
    the end (detection: the tile's core maximum), how many objects it holds and their bytes
    (detection: :func:`nucleikit.infer.wsi._pack_peaks`; segmentation: :func:`nucleikit.infer.wsi_segment`'s
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


def _fingerprint(slide_path: Path, meta: dict, model: Any, geometry: SlideGeometry, grid: TileGrid,
                 selected: np.ndarray, settings: dict[str, Any]) -> str:
    """Everything that decides a slide's tiles, as one string (:mod:`nucleikit.infer.wsi`, step 6).

    ``meta`` (the weights' metadata as its JSON object, ``WeightsMeta.to_dict()``) and ``model``
    (its ``state_dict``, when it has one) identify the weights;
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
