"""--quiet / --verbose on every command (cli/verbosity.py) and --plane for multi-page TIFFs."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucleikit.cli.main import COMMANDS, PLANE_COMMANDS, build_parser, main
from nucleikit.cli.verbosity import NORMAL, QUIET, VERBOSE, level_of


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_takes_quiet_and_verbose_and_the_image_commands_plane():
    subs = _subparsers(build_parser())
    assert set(subs) == set(COMMANDS)
    for name, p in subs.items():
        options = {s for a in p._actions for s in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= options, name
        assert ("--plane" in options) == (name in PLANE_COMMANDS), name


@pytest.mark.parametrize("argv, level", [
    (["models"], NORMAL), (["models", "-q"], QUIET), (["-q", "models"], QUIET), (["models", "--verbose"], VERBOSE),
    (["--verbose", "models"], VERBOSE), (["detect", "a.png", "-o", "out", "--quiet"], QUIET),
])
def test_before_or_after_the_command(argv, level):
    assert level_of(build_parser().parse_args(argv)) == level


def test_quiet_and_verbose_together_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["models", "-q", "-v"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_quiet_normal_verbose_change_what_detect_prints(tiny_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    outputs = {}
    for flag in ("-q", None, "-v"):
        argv = ["detect", str(image), "-o", str(tmp_path / "out"), "--model", str(tiny_weights), "--threads", "1",
                "--mpp", "0.5"]
        assert main(argv + ([flag] if flag else [])) == 0
        outputs[flag] = capsys.readouterr()
    summary = f"detect: 1 of 1 inputs processed into {tmp_path / 'out'}"
    quiet, normal, verbose = (outputs[f].out.splitlines() for f in ("-q", None, "-v"))
    assert quiet == [summary]  # only the final summary line
    assert len(normal) == 2 and normal[0].startswith(f"{image}: ") and normal[1] == summary
    assert verbose[0].startswith("nucleikit ") and "detect options:" in verbose[0] and "threads=1" in verbose[0]
    assert verbose[1] == f"{image}: started"
    assert verbose[2].startswith(f"{image}: ") and verbose[3] == summary
    assert verbose[4].startswith("detect: finished in ")
    assert all(o.err == "" for o in outputs.values())


def test_quiet_still_prints_errors(tiny_weights, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    assert main(["detect", str(bad), "-o", str(tmp_path / "out"), "--model", str(tiny_weights), "-q"]) == 2
    captured = capsys.readouterr()
    assert captured.out.strip() == "detect: 0 of 1 inputs processed"
    assert captured.err.startswith(f"nucleikit: error: {bad}: ")


# --------------------------------------------------------------------------- --plane


@pytest.fixture
def three_planes(tmp_path):
    """A 3-page RGB TIFF (64 x 64): pages of uniform grey 40, 128 and 250."""
    path = tmp_path / "stack.tif"
    planes = np.stack([np.full((64, 64, 3), v, np.uint8) for v in (40, 128, 250)])
    tifffile.imwrite(path, planes, photometric="rgb")
    return path


def test_plane_picks_the_plane_the_command_reads(three_planes, tmp_path, capsys):
    out = tmp_path / "out"
    # A blank plane gives no nuclei with the bundled detector (its absolute floor), so the
    # overlay is the plane itself.
    for plane, grey in ((1, 128), (2, 250)):
        assert main(["detect", str(three_planes), "-o", str(out), "--plane", str(plane), "--threads", "1", "-q"]) == 0
        overlay = np.asarray(Image.open(out / "stack_overlay.png"))
        assert overlay.shape[:2] == (64, 64)
        assert (overlay[..., :3] == grey).all(), plane
    capsys.readouterr()


def test_without_plane_a_stack_is_refused_naming_the_option(three_planes, tmp_path, capsys):
    assert main(["detect", str(three_planes), "-o", str(tmp_path / "out"), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds 3 planes" in err and "--plane K" in err
    assert main(["detect", str(three_planes), "-o", str(tmp_path / "out"), "--plane", "3", "--threads", "1"]) == 2
    assert "there is no plane 3" in capsys.readouterr().err


def test_plane_must_be_a_whole_number_from_0(capsys):
    for bad in ("-1", "x"):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["detect", "a.tif", "-o", "out", "--plane", bad])
        assert info.value.code == 2
    assert "argument --plane" in capsys.readouterr().err


def test_quiet_hides_the_slide_progress_bar(tiny_weights, tmp_path, capsys, monkeypatch):
    import nucleikit.infer.wsi as wsi

    asked = []
    real = wsi._progress_bar

    def spy(enabled, *args):
        asked.append(enabled)
        return real(enabled, *args)

    monkeypatch.setattr(wsi, "_progress_bar", spy)
    rng = np.random.default_rng(0)
    pixels = (rng.uniform(0.3, 0.9, (256, 256, 3)) * 255).astype(np.uint8)
    slide = tmp_path / "slide.tif"  # two levels: a slide to the command line
    options = dict(tile=(64, 64), photometric="rgb", resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(slide) as tif:
        tif.write(pixels, subifds=1, resolution=(2e4, 2e4), **options)
        tif.write(pixels[::2, ::2], subfiletype=1, resolution=(1e4, 1e4), **options)
    argv = ["detect", str(slide), "-o", str(tmp_path / "out"), "--model", str(tiny_weights), "--threads", "1",
            "--tissue-mask", "all"]
    assert main(argv + ["-q"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"detect: 1 of 1 inputs processed into {tmp_path / 'out'}"]
    assert main(argv) == 0
    assert asked == [False, True]  # quiet: no bar; normal: the bar
