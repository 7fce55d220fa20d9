"""The slide resume store: one per command, locked while a run uses it, full disks in one line."""

from __future__ import annotations

import sqlite3

import pytest

from nucleikit.errors import InputError
from nucleikit.export import output_stem
from nucleikit.infer.wsi import _TileStore, lock_path, resume_path


def test_detect_and_segment_stores_of_one_slide_differ(tmp_path):
    detect = resume_path(tmp_path, output_stem("slide", "detect"))
    segment = resume_path(tmp_path, output_stem("slide", "segment"))
    assert (detect.name, segment.name) == ("slide.resume.sqlite", "slide_outlines.resume.sqlite")


def test_a_live_store_is_not_deleted_by_a_run_with_other_settings(tmp_path):
    path = resume_path(tmp_path, "slide")
    first = _TileStore(path, "settings A", resume=True, slide=tmp_path / "slide.svs")
    first.add(3, 0.5, 2, b"peaks")
    with pytest.raises(InputError) as exc:
        _TileStore(path, "settings B", resume=True, slide=tmp_path / "slide.svs")
    assert exc.value.path == str(tmp_path / "slide.svs")
    assert "another nucleikit run is working on it" in exc.value.reason and "slide.resume.lock" in exc.value.reason
    # the first run goes on writing to its own store
    first.add(4, 0.7, 1, b"more")
    assert first.finished() == ({3, 4}, 0.7, 3)
    first.close()
    assert not lock_path(path).exists()  # no lock file left once the run stops


def test_the_same_settings_are_refused_too_while_the_first_run_lives(tmp_path):
    path = resume_path(tmp_path, "slide")
    first = _TileStore(path, "settings A", resume=True)
    with pytest.raises(InputError, match="another nucleikit run"):
        _TileStore(path, "settings A", resume=True)
    first.close()


def test_a_stopped_runs_store_resumes_or_is_replaced(tmp_path):
    path = resume_path(tmp_path, "slide")
    stopped = _TileStore(path, "settings A", resume=True)
    stopped.add(1, 0.25, 5, b"x")
    stopped.close()  # interrupted: the store stays for a resume
    same = _TileStore(path, "settings A", resume=True)
    assert same.finished() == ({1}, 0.25, 5)
    same.close()
    other = _TileStore(path, "settings B", resume=True)  # a stale store of other settings: replaced
    assert other.finished()[0] == set()
    other.discard()
    assert not path.exists() and not lock_path(path).exists()


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    path = resume_path(tmp_path, "slide")
    lock_path(path).write_text("")  # the file survives a kill; its flock does not
    store = _TileStore(path, "settings A", resume=True)
    assert store.finished()[0] == set()
    store.close()


class _FullDisk:
    """A connection whose every statement fails as SQLite does on a full disk."""

    def execute(self, *args):
        raise sqlite3.OperationalError("database or disk is full")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass


def test_store_writes_on_a_full_disk_are_one_line_naming_the_store(tmp_path):
    path = resume_path(tmp_path, "slide")
    store = _TileStore(path, "settings A", resume=True)
    real, store.con = store.con, _FullDisk()
    try:
        with pytest.raises(InputError) as exc:
            store.add(1, 0.5, 1, b"x")
        assert exc.value.path == str(path)
        assert exc.value.reason == "cannot write: SQLite: database or disk is full"
        with pytest.raises(InputError, match="cannot write: SQLite"):
            store.finished()
    finally:
        store.con = real
        store.close()


def test_other_sqlite_errors_are_not_hidden(tmp_path):
    store = _TileStore(resume_path(tmp_path, "slide"), "settings A", resume=True)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            store.add(1, None, 1, b"x")  # a bug (NOT NULL), not a storage failure: it propagates
    finally:
        store.close()
