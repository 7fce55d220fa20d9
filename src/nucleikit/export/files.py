"""Writing files safely: temporary name then rename, and full disks reported in one line.

Nothing half-written ever appears under a final name: files are written under a temporary
name in the same folder and renamed (``os.replace``) once complete (:func:`atomic_write`,
:func:`atomic_path`). A full disk, a quota, a read-only file system or SQLite's "disk I/O
error" while writing become an :class:`~nucleikit.errors.InputError` naming the file
(:func:`storage_errors`), so a batch reports it in one line and goes on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import InputError

__all__ = ["atomic_path", "atomic_write", "storage_errors"]


def _temp_name(path: Path) -> Path:
    # Hidden, unique, in the same folder (so os.replace is a rename on one file system), and
    # ending in the final suffix so that libraries choosing a format by extension still work.
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(path, f"cannot create folder {path.parent}: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise InputError(path, "is a folder, not a file")


#: errno values that mean "the output could not be stored" (not a bug of the caller): a full
#: disk or quota, an I/O error, a read-only file system, a file too large for it.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})
#: SQLite's words for the same (it reports a full disk as "database or disk is full").
_SQLITE_STORAGE = ("disk i/o error", "database or disk is full", "attempt to write a readonly database")


def _storage_failure(exc: BaseException) -> str | None:
    """The reason to report if ``exc`` means the output could not be stored, else None."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return exc.strerror or os.strerror(exc.errno)
    if isinstance(exc, sqlite3.Error) and any(words in str(exc).lower() for words in _SQLITE_STORAGE):
        return f"SQLite: {exc}"
    return None


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk (or the like) while writing ``path`` into an InputError naming it.

    A batch then reports the file in one line and goes on with the next input (which
    may fit, or go to another disk) instead of stopping on a traceback. For writers that
    are not :func:`atomic_write` / :func:`atomic_path` (a slide run's resume store).

    Raises
    ------
    InputError
        ``cannot write: <reason>`` for an ``OSError`` of :data:`_STORAGE_ERRNOS` or a SQLite
        error meaning the same; other errors propagate unchanged.
    """
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        reason = _storage_failure(exc)
        if reason is None:
            raise
        raise InputError(path, f"cannot write: {reason}") from exc


_storage_errors_name = storage_errors


def _publish(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(path, f"cannot write: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` if the block succeeds.

    For writers that want a file name rather than a file object. The temporary name keeps the
    suffix of ``path``. On an exception the temporary file (if created) is removed and
    ``path`` is left as it was. Parent folders are created.

    Raises
    ------
    InputError
        If the folder cannot be created, ``path`` is a folder, the rename fails, or the
        writer meets a full disk (an ``OSError`` ENOSPC, or SQLite's "disk I/O error").
    """
    final = Path(path)
    _make_parent(final)
    tmp = _temp_name(final)
    try:
        with _storage_errors_name(final):
            yield tmp
        _publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or PathLike
        Final file name. Parent folders are created.
    mode : {"w", "wb"}
        Text or binary. Text files default to ``encoding="utf-8"``.
    **open_kwargs
        Passed to :func:`open` (e.g. ``newline=""`` for CSV).

    Yields
    ------
    file object
        Flushed and fsync'ed before the rename, so ``path`` is complete or absent.

    Raises
    ------
    InputError
        If the folder cannot be created or written, ``path`` is a folder, or the disk is
        full (or another storage failure, see :data:`_STORAGE_ERRNOS`) while writing.

    Notes
    -----
    On any exception inside the block the temporary file is removed and the exception
    propagates; nothing half-written ever appears under ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    final = Path(path)
    _make_parent(final)
    tmp = _temp_name(final)
    try:
        # "x": never clobber; created with the usual umask permissions (unlike mkstemp's 0600).
        f = open(tmp, mode.replace("w", "x"), **open_kwargs)  # noqa: SIM115
    except OSError as exc:
        raise InputError(final, f"cannot write: {exc.strerror or exc}") from exc
    try:
        with _storage_errors_name(final), f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
