"""Training folders of images with point files: points a fraction of a pixel outside (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nucleikit.errors import InputError
from nucleikit.io.datasets.folder import point_folder


def _folder(tmp_path, points: str):
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.csv").write_text(points)
    return tmp_path


def test_points_less_than_a_pixel_outside_are_clipped_onto_the_image(tmp_path):
    # CRCHisto's img8 and img91 have y = -0.85 and -0.74: the whole file was refused before
    samples = point_folder(_folder(tmp_path, "x,y\n10,-0.85\n50.4,20\n25,25\n"), mpp=0.5)
    assert samples[0].points.tolist() == [[10.0, 0.0], [49.0, 20.0], [25.0, 25.0]]
    assert samples[0].clipped == 2


def test_train_says_how_many_points_it_moved_onto_the_image(tmp_path):
    from nucleikit.cli.train import clipped_points_note

    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    inside = point_folder(_folder(tmp_path / "in", "x,y\n10,5\n"), mpp=0.5)
    assert clipped_points_note(inside) == ""
    edge = point_folder(_folder(tmp_path / "out", "x,y\n10,-0.85\n50.4,20\n25,25\n"), mpp=0.5)
    assert clipped_points_note(edge + inside) == (
        "note: 2 annotated points lay less than 1 px outside the image and moved onto its edge (a)")


def test_points_farther_out_are_refused_naming_the_file(tmp_path):
    with pytest.raises(InputError, match=r"a\.csv: 1 point lies outside the 50 x 40 image, e\.g\. \(10, -1\.6\)"):
        point_folder(_folder(tmp_path, "x,y\n10,-1.6\n25,25\n"), mpp=0.5)
