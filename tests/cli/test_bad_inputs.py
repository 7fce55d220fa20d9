"""The bad-input corpus: each way a careful user can get a command wrong (issue 16).

Every case builds its own inputs under ``tmp_path`` and runs ``nucleikit`` in-process. Each must
end with exit code 2, exactly one ``error:`` line on stderr naming the problem (argparse adds its
usage line above an option error), no traceback, and no output file under a final name.

Add a case by adding a :class:`Case` to :data:`CASES`: ``argv`` gets a :class:`Files` (the inputs
made on demand) and returns the command line; ``expect`` is a fragment of the error line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from nucleikit.cli.main import main


# --------------------------------------------------------------------------- inputs


def _poisoned(weights: Path, dest: Path, value: float = float("nan")) -> Path:
    """A copy of ``weights`` with one value of its first floating tensor set to ``value``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(weights, framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(weights)
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key].view(-1)[0] = value
    save_file(tensors, dest, metadata=metadata)
    return dest


def _with_meta(weights: Path, dest: Path, **changes) -> Path:
    """A copy of ``weights`` whose nucleikit metadata has ``changes``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(weights, framework="pt") as handle:
        metadata = handle.metadata()
    meta = json.loads(metadata["nucleikit"])
    meta.update(changes)
    save_file(load_file(weights), dest, metadata={"nucleikit": json.dumps(meta)})
    return dest


@dataclass
class Files:
    """The inputs of one case, made on first use in ``tmp``."""

    tmp: Path
    detector: Path
    classifier: Path
    segmenter: Path

    @property
    def out(self) -> str:
        return str(self.tmp / "out")

    @property
    def image(self) -> str:
        path = self.tmp / "discs.png"
        if not path.exists():
            img = np.full((64, 80, 3), 230, np.uint8)
            img[20:28, 20:28] = (80, 40, 120)
            Image.fromarray(img).save(path)
        return str(path)

    def loop(self) -> str:
        a, b = self.tmp / "loop_a.safetensors", self.tmp / "loop_b.safetensors"
        a.symlink_to(b)
        b.symlink_to(a)
        return str(a)

    def fifo(self) -> str:
        path = self.tmp / "pipe.png"
        os.mkfifo(path)
        return str(path)

    def tiff(self, name: str, shape: tuple[int, ...]) -> str:
        import tifffile

        path = self.tmp / name
        tifffile.imwrite(path, np.full(shape, 128, np.uint8))  # (5, H, W): 5 pages; (H, W, 2): H pages of W x 2
        return str(path)

    def nan(self, which: str) -> str:
        return str(_poisoned(getattr(self, which), self.tmp / f"nan_{which}.safetensors"))

    def file(self, name: str, content: bytes | str = b"") -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return str(path)

    def points(self, name: str = "pts.csv") -> str:
        return self.file(name, "x,y\n20,20\n40,30\n")

    def eval_dirs(self) -> tuple[str, str]:
        pred, truth = self.tmp / "pred", self.tmp / "truth"
        pred.mkdir(exist_ok=True)
        truth.mkdir(exist_ok=True)
        (pred / "img1.csv").write_text("x,y,score\n1,1,0.5\n")
        return str(pred), str(truth)

    def experiment_config(self, **changes) -> str:
        doc = {"experiment": "lambda", "seed": 0, "mpp": 0.5, "steps": 2,
               "train": {"model": "micronet", "batch_size": 2, "crop": 64, "xi_grid": [0.5],
                         "min_distance_grid": [3]},
               "datasets": {"a": {"kind": "folder", "train": "a/train", "validation": "a/val", "test": "a/test",
                                  "mpp": 0.5}},
               "study": {"datasets": ["a"], "lams": [1.0, 5.0]}}
        for key, value in changes.items():
            section, _, field = key.partition("__")
            (doc[section] if field else doc)[field or section] = value
        return self.file("exp.json", json.dumps(doc))


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Files], list[str]]
    expect: str


def _detect(f: Files, *extra: str) -> list[str]:
    return ["detect", f.image, "-o", f.out, "--model", str(f.detector), "--threads", "1", *extra]


def _segment(f: Files, *extra: str) -> list[str]:
    return ["segment", f.image, "-o", f.out, "--model", str(f.segmenter), "--threads", "1", *extra]


def _evaluate(f: Files, truth_files: dict[str, bytes | str], *extra: str) -> list[str]:
    pred, truth = f.eval_dirs()
    for name, content in truth_files.items():
        f.file(f"truth/{name}", content)
    return ["evaluate", "detection", "--pred", pred, "--truth", truth, "--radius", "5", *extra]


def _evaluate_empty_prediction(f: Files) -> list[str]:
    argv = _evaluate(f, {"img1.csv": "x,y\n1,1\n"})
    f.file("pred/img1.csv", b"")  # a crashed export, not "no nuclei"
    return argv


CASES = [
    # weights that load but are unusable: refused at load time, by every command
    Case("detect-nan-weights", lambda f: _detect(f, "--model", f.nan("detector")), "NaN or infinite values"),
    Case("demo-nan-weights", lambda f: ["demo", "-o", f.out, "--model", f.nan("detector")], "NaN or infinite values"),
    Case("analyze-nan-detector", lambda f: ["analyze", f.image, "-o", f.out, "--detector", f.nan("detector"),
                                            "--classifier", str(f.classifier)], "NaN or infinite values"),
    Case("analyze-nan-classifier", lambda f: ["analyze", f.image, "-o", f.out, "--detector", str(f.detector),
                                              "--classifier", f.nan("classifier")], "NaN or infinite values"),
    Case("classify-nan-weights", lambda f: ["classify", f.image, "--points", f.points(), "-o", f.out,
                                            "--model", f.nan("classifier")], "NaN or infinite values"),
    Case("segment-nan-weights", lambda f: _segment(f, "--model", f.nan("segmenter")), "NaN or infinite values"),
    Case("detect-inf-weights",
         lambda f: _detect(f, "--model", str(_poisoned(f.detector, f.tmp / "inf.safetensors", float("inf")))),
         "NaN or infinite values"),
    Case("detect-negative-mpp-meta",
         lambda f: _detect(f, "--model", str(_with_meta(f.detector, f.tmp / "m.safetensors", mpp=-1))),
         "metadata mpp must be a positive number"),
    Case("detect-torch-pickle", lambda f: _detect(f, "--model", f.file("best.pt", b"PK\x03\x04" + b"\0" * 64)),
         "this is a PyTorch pickle"),
    Case("detect-model-folder", lambda f: _detect(f, "--model", str(f.tmp)), "is a folder"),
    Case("detect-model-symlink-loop", lambda f: _detect(f, "--model", f.loop()), "symbolic link loop"),
    # inputs that are not images the reader can use
    Case("detect-input-fifo", lambda f: _detect(f)[:1] + [f.fifo()] + _detect(f)[2:], "not a regular file"),
    Case("detect-input-symlink-loop", lambda f: _detect(f)[:1] + [f.loop()] + _detect(f)[2:], "symbolic link loop"),
    Case("detect-multi-page-tiff", lambda f: _detect(f)[:1] + [f.tiff("stack.tif", (5, 40, 50))] + _detect(f)[2:],
         "holds 5 planes"),
    Case("segment-two-channel-tiff", lambda f: _segment(f)[:1] + [f.tiff("two.tif", (40, 50, 2))] + _segment(f)[2:],
         "an image with 2 channels"),
    # options checked when parsing, before any work
    Case("detect-min-distance-0", lambda f: _detect(f, "--min-distance", "0"), "--min-distance: must be a whole"),
    Case("detect-min-distance-negative", lambda f: _detect(f, "--min-distance", "-3"), "--min-distance"),
    Case("detect-min-distance-fraction", lambda f: _detect(f, "--min-distance", "2.5"), "--min-distance"),
    Case("detect-threshold-nan", lambda f: _detect(f, "--threshold", "nan"), "--threshold: must be a finite number"),
    Case("detect-threshold-above-1", lambda f: _detect(f, "--threshold", "1.5"), "--threshold: must be at least 0"),
    Case("detect-mpp-1000", lambda f: _detect(f, "--mpp", "1000"), "--mpp: must be between 0.01 and 50"),
    Case("detect-mpp-inf", lambda f: _detect(f, "--mpp", "inf"), "--mpp: must be a finite number"),
    Case("detect-tile-1", lambda f: _detect(f, "--tile", "1"), "--tile: must be between 64 and 8192"),
    Case("analyze-min-distance-0", lambda f: ["analyze", f.image, "-o", f.out, "--min-distance", "0"],
         "--min-distance"),
    Case("segment-threshold-nan", lambda f: _segment(f, "--threshold", "nan"), "--threshold: must be a finite"),
    Case("segment-threshold-above-1", lambda f: _segment(f, "--threshold", "1.5"), "--threshold: must be between 0 and 1"),
    Case("classify-mpp-0", lambda f: ["classify", f.image, "--points", f.points(), "-o", f.out, "--mpp", "0"],
         "--mpp: must be positive"),
    Case("evaluate-radius-inf", lambda f: _evaluate(f, {}, "--radius", "inf"), "--radius: must be a finite"),
    Case("evaluate-radius-nan", lambda f: _evaluate(f, {}, "--radius", "nan"), "--radius: must be a finite"),
    Case("evaluate-radius-0", lambda f: _evaluate(f, {}, "--radius", "0"), "--radius: must be positive"),
    Case("evaluate-min-score-nan", lambda f: _evaluate(f, {}, "--min-score", "nan"), "--min-score"),
    Case("train-freeze-negative", lambda f: ["train", "detection", "--images", str(f.tmp), "-o", f.out,
                                             "--freeze-blocks", "-1"], "--freeze-blocks: must be 0 or more"),
    Case("train-lam-nan", lambda f: ["train", "detection", "--images", str(f.tmp), "-o", f.out, "--lam", "nan"],
         "--lam: must be a finite number"),
    # the output folder, checked before any model runs
    Case("detect-out-is-a-file", lambda f: ["detect", f.image, "-o", f.file("taken.txt", "x")],
         "taken.txt exists and is not a folder"),
    Case("segment-out-is-a-file", lambda f: ["segment", f.image, "-o", f.file("taken.txt", "x")],
         "exists and is not a folder"),
    Case("analyze-out-under-a-file", lambda f: ["analyze", f.image, "-o", f.file("taken.txt", "x") + "/sub"],
         "is not a folder"),
    Case("classify-out-is-a-file", lambda f: ["classify", f.image, "--points", f.points(), "-o",
                                              f.file("taken.txt", "x")], "exists and is not a folder"),
    Case("train-out-is-a-file", lambda f: ["train", "detection", "--dataset", "crchisto", "-o",
                                           f.file("taken.txt", "x")], "exists and is not a folder"),
    Case("experiment-out-is-a-file", lambda f: ["experiment", "lambda", "--config", f.experiment_config(), "-o",
                                                f.file("taken.txt", "x")], "exists and is not a folder"),
    # truth files of `evaluate`
    Case("evaluate-duplicate-truth-stems", lambda f: _evaluate(f, {"img1.csv": "x,y\n1,1\n",
                                                                  "a/img1.csv": "x,y\n50,50\n"}),
         "2 truth files for img1: a/img1.csv and img1.csv"),
    Case("evaluate-zero-byte-truth", lambda f: _evaluate(f, {"img1.csv": b""}), "img1.csv: file is empty (0 bytes"),
    Case("evaluate-garbage-mat-truth", lambda f: _evaluate(f, {"img1.mat": os.urandom(300)}),
         "not a readable MATLAB .mat file"),
    Case("evaluate-zero-byte-prediction", lambda f: _evaluate_empty_prediction(f), "img1.csv: file is empty (0 bytes"),
]


@pytest.fixture
def files(tmp_path, tiny_weights, tiny_classifier_weights, make_segmenter_weights):
    return Files(tmp_path, tiny_weights, tiny_classifier_weights, make_segmenter_weights("unet"))


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses an option
        return int(exc.code)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, files, capsys):
    code = _run(case.argv(files))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) >= 1 and case.expect in errors[0], err
    # a failure before the batch names itself once; a batch adds its summary of the same reason
    assert len({line.split("error:", 1)[1].strip() for line in errors}) == 1, err
    out = files.tmp / "out"
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), sorted(out.rglob("*"))


def test_unwritable_output_folder_is_refused_before_any_model(files, capsys):
    target = Path("/sys/nucleikit-out")  # /sys refuses new files, even to root
    if os.access("/sys", os.W_OK) and _can_create_in(Path("/sys")):
        pytest.skip("/sys is writable here")
    assert _run(["detect", files.image, "-o", str(target), "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "cannot write in /sys" in err and "no-such-model" not in err  # refused before the model


def _can_create_in(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_option_limits_agree_with_the_image_reader():
    from nucleikit.cli import options
    from nucleikit.io import images

    assert options.MPP_RANGE == images.MPP_RANGE


@pytest.mark.parametrize("text, value", [("3", 3), ("3.0", 3), ("1", 1)])
def test_min_distance_accepts_whole_numbers(text, value):
    from nucleikit.cli.options import min_distance_px

    assert min_distance_px(text) == value


@pytest.mark.parametrize("fields, message", [
    ({"xi_grid": []}, "xi_grid must be a non-empty list"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"lr": "fast"}, "lr must be a number"),
])
def test_train_config_file_values_are_checked_before_the_data(files, capsys, fields, message):
    config = files.file("train.json", json.dumps(fields))
    # --images names a folder without annotations: reaching the data would fail differently
    code = _run(["train", "detection", "--images", str(files.tmp), "--val-images", str(files.tmp),
                 "-o", files.out, "--config", config])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "train.json" in err and "Traceback" not in err


def test_full_disk_fails_one_file_and_the_batch_goes_on(files, monkeypatch, capsys):
    import errno

    import nucleikit.export.files as export

    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_first_file_full(fd):
        calls["n"] += 1
        if calls["n"] == 1:  # the first output of the first image hits a full disk; later ones fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(export.os, "fsync", fsync_first_file_full)
    second = files.tmp / "second.png"
    second.write_bytes(Path(files.image).read_bytes())
    code = _run(_detect(files, "--no-overlay")[:2] + [str(second)] + _detect(files, "--no-overlay")[2:])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "discs.csv: cannot write: No space left on device" in err
    assert (files.tmp / "out" / "second.csv").exists()  # the batch went on
    assert not (files.tmp / "out" / "discs.csv").exists()


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04" + b"\0" * 200, "damaged checkpoint (truncated, or not a PyTorch checkpoint)"),
    (b"", "damaged checkpoint"),
    (None, "not a nucleikit checkpoint (no model, optimizer, config)"),
])
def test_damaged_checkpoint_is_refused_before_the_data(files, capsys, content, message):
    import torch

    run = files.tmp / "run"
    run.mkdir()
    if content is None:
        torch.save([1, 2, 3], run / "checkpoint.pt")  # a readable pickle, but no checkpoint
    else:
        (run / "checkpoint.pt").write_bytes(content)
    # --images names a folder without annotations: reaching the data would fail differently
    code = _run(["train", "detection", "--images", str(files.tmp), "--val-images", str(files.tmp), "-o", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("error:") == 1 and "checkpoint.pt" in err and message in err
