"""Every reader names what is wrong with a path that holds no file: a symbolic link loop, a
broken link, or nothing (issue 16: a symlink loop said "no such file")."""

from __future__ import annotations

import pytest

from nucleikit.errors import InputError
from nucleikit.io.images import read_image
from nucleikit.io.labels import read_geojson_outlines, read_label_image
from nucleikit.io.mat import read_mat_points
from nucleikit.io.points import read_points
from nucleikit.io.rle import read_rle_csv
from nucleikit.io.slides import open_slide

READERS = [
    ("image", read_image, ".png"),
    ("slide", open_slide, ".svs"),
    ("points", read_points, ".csv"),
    ("mat", read_mat_points, ".mat"),
    ("labels", read_label_image, ".tif"),
    ("outlines", read_geojson_outlines, ".geojson"),
    ("rle", read_rle_csv, ".csv"),
]
IDS = [r[0] for r in READERS]


@pytest.mark.parametrize("name, read, suffix", READERS, ids=IDS)
def test_a_symbolic_link_loop_is_named_as_such(tmp_path, name, read, suffix):
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(InputError) as info:
        read(a)
    assert info.value.path == str(a) and info.value.reason == "symbolic link loop"


@pytest.mark.parametrize("name, read, suffix", READERS, ids=IDS)
def test_a_broken_link_is_named_as_such(tmp_path, name, read, suffix):
    link = tmp_path / f"a{suffix}"
    link.symlink_to(tmp_path / f"gone{suffix}")
    with pytest.raises(InputError, match=r"broken symbolic link \(its target does not exist\)"):
        read(link)


@pytest.mark.parametrize("name, read, suffix", READERS, ids=IDS)
def test_nothing_there_is_still_not_found(tmp_path, name, read, suffix):
    with pytest.raises(InputError, match="not found"):
        read(tmp_path / f"none{suffix}")
