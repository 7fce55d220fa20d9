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

    def fifo(self, name: str = "pipe.png") -> str:
        path = self.tmp / name
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

    def z_stack(self) -> str:
        """An ImageJ hyperstack of 4 Z planes (a 3-D TIFF: one page per plane)."""
        import tifffile

        path = self.tmp / "zstack.tif"
        tifffile.imwrite(path, np.full((4, 40, 50), 128, np.uint8), imagej=True, metadata={"axes": "ZYX"})
        return str(path)

    def torch_pickle(self, legacy: bool = False) -> str:
        """A real ``torch.save`` of a state dict (zip format, or the legacy pickle), named .pt."""
        import torch

        from nucleikit.models import build_model

        path = self.tmp / ("legacy.pt" if legacy else "state.pt")
        torch.save(build_model("micronet", width=4).state_dict(), path, _use_new_zipfile_serialization=not legacy)
        return str(path)

    def bomb(self) -> str:
        """A 1 x 1 PNG whose header claims 20000 x 20000 pixels (a decompression bomb)."""
        import struct
        import zlib

        path = self.tmp / "bomb.png"
        Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
        data = bytearray(path.read_bytes())
        patched = b"IHDR" + struct.pack(">II", 20_000, 20_000) + bytes(data[24:29])
        data[12:29] = patched
        data[29:33] = struct.pack(">I", zlib.crc32(patched))
        path.write_bytes(bytes(data))
        return str(path)

    def folder_with_fifo(self) -> str:
        folder = self.tmp / "batch"
        folder.mkdir(exist_ok=True)
        os.mkfifo(folder / "pipe.png")
        return str(folder)

    def slide(self) -> str:
        """A 2-level pyramidal TIFF of 256 x 256 px at 0.5 um/px (a small whole slide)."""
        import tifffile

        path = self.tmp / "slide.tif"
        level0 = np.full((256, 256, 3), 230, np.uint8)
        level0[100:140, 100:140] = (200, 110, 160)
        options = dict(tile=(64, 64), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER")
        with tifffile.TiffWriter(path) as tif:
            tif.write(level0, subifds=1, resolution=(2e4, 2e4), **options)
            tif.write(level0[::2, ::2].copy(), subfiletype=1, resolution=(1e4, 1e4), **options)
        return str(path)

    def train_folders(self) -> list[str]:
        """``--images``/``--val-images`` of one annotated 96 x 96 image each, at 0.5 um/px."""
        argv = []
        for part, flag in (("train", "--images"), ("val", "--val-images")):
            folder = self.tmp / part
            folder.mkdir(exist_ok=True)
            img = np.full((96, 96, 3), 230, np.uint8)
            img[40:48, 40:48] = (80, 40, 120)
            Image.fromarray(img).save(folder / "a.png")
            (folder / "a.csv").write_text("x,y\n44,44\n")
            argv += [flag, str(folder)]
        return argv + ["--mpp", "0.5"]

    def label_eval_dirs(self) -> tuple[str, str]:
        """``evaluate segmentation`` folders whose truth holds two label images of one stem."""
        pred, truth = self.tmp / "pred", self.tmp / "truth"
        pred.mkdir(exist_ok=True)
        truth.mkdir(exist_ok=True)
        labels = np.zeros((10, 12), np.uint16)
        labels[2:5, 2:5] = 1
        Image.fromarray(labels).save(pred / "a_labels.tif")
        Image.fromarray(labels.astype(np.uint8)).save(truth / "a.png")  # the user's label image ...
        Image.fromarray(labels).save(truth / "a_labels.tif")  # ... and another one, of the same image
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


def _mat_bytes(**variables) -> bytes:
    """A MATLAB .mat file's bytes (default: one point, as CRCHisto stores them)."""
    import io

    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, variables or {"detection": np.array([[10.0, 12.0]])})
    return buffer.getvalue()


def _experiment(f: Files, **changes) -> list[str]:
    return ["experiment", "lambda", "--config", f.experiment_config(**changes), "-o", f.out]


def _evaluate_fifo_truth(f: Files) -> list[str]:
    argv = _evaluate(f, {})
    os.mkfifo(f.tmp / "truth" / "img1.csv")  # a FIFO named like a truth file: read, it would block forever
    return argv


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
    Case("detect-torch-save-state-dict", lambda f: _detect(f, "--model", f.torch_pickle()), "this is a PyTorch pickle"),
    Case("segment-legacy-torch-pickle", lambda f: _segment(f, "--model", f.torch_pickle(legacy=True)),
         "this is a PyTorch pickle"),
    Case("train-init-nan-weights", lambda f: ["train", "detection", *f.train_folders(), "-o", f.out, "--steps", "1",
                                              "--init", f.nan("detector")], "NaN or infinite values"),
    # weights of another task: refused at load time, before any image is read
    Case("detect-segmenter-weights", lambda f: _detect(f, "--model", str(f.segmenter)),
         "is a segmentation model, not a detector"),
    Case("detect-classifier-weights", lambda f: _detect(f, "--model", str(f.classifier)),
         "is a classification model, not a detector"),
    Case("demo-classifier-weights", lambda f: ["demo", "-o", f.out, "--model", str(f.classifier)],
         "is a classification model, not a detector"),
    Case("demo-bundled-dcrn", lambda f: ["demo", "-o", f.out, "--model", "dcrn"],
         "is a classification model, not a detector"),
    Case("detect-model-folder", lambda f: _detect(f, "--model", str(f.tmp)), "is a folder"),
    Case("detect-model-symlink-loop", lambda f: _detect(f, "--model", f.loop()), "symbolic link loop"),
    # inputs that are not images the reader can use
    Case("detect-input-fifo", lambda f: _detect(f)[:1] + [f.fifo()] + _detect(f)[2:], "not a regular file"),
    Case("detect-input-symlink-loop", lambda f: _detect(f)[:1] + [f.loop()] + _detect(f)[2:], "symbolic link loop"),
    Case("detect-multi-page-tiff", lambda f: _detect(f)[:1] + [f.tiff("stack.tif", (5, 40, 50))] + _detect(f)[2:],
         "holds 5 planes"),
    Case("segment-two-channel-tiff", lambda f: _segment(f)[:1] + [f.tiff("two.tif", (40, 50, 2))] + _segment(f)[2:],
         "an image with 2 channels"),
    Case("detect-z-stack-tiff", lambda f: _detect(f)[:1] + [f.z_stack()] + _detect(f)[2:],
         "holds 4 planes (axes TZCYXS"),
    Case("detect-decompression-bomb", lambda f: _detect(f)[:1] + [f.bomb()] + _detect(f)[2:],
         "bomb.png: image of 20000 x 20000 pixels exceeds the limit of 134,217,728 pixels"),
    Case("detect-folder-holding-a-fifo", lambda f: _detect(f)[:1] + [f.folder_with_fifo()] + _detect(f)[2:],
         "pipe.png: not a regular file (a pipe, socket or device)"),
    Case("classify-points-symlink-loop", lambda f: ["classify", f.image, "--points", f.loop(), "-o", f.out,
                                                    "--model", str(f.classifier)], "loop_a.safetensors: symbolic link loop"),
    Case("classify-points-fifo", lambda f: ["classify", f.image, "--points", f.fifo("pipe.csv"), "-o", f.out,
                                            "--model", str(f.classifier)], "pipe.csv: not a regular file"),
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
    Case("detect-radius-like-min-distance-inf", lambda f: _detect(f, "--min-distance", "inf"), "--min-distance"),
    Case("segment-tile-1", lambda f: _segment(f, "--tile", "1"), "--tile: must be between 64 and 8192"),
    Case("segment-mpp-1000", lambda f: _segment(f, "--mpp", "1000"), "--mpp: must be between 0.01 and 50"),
    Case("analyze-mpp-1000", lambda f: ["analyze", f.image, "-o", f.out, "--mpp", "1000"], "--mpp: must be between"),
    Case("analyze-threshold-nan", lambda f: ["analyze", f.image, "-o", f.out, "--threshold", "nan"],
         "--threshold: must be a finite number"),
    Case("classify-mpp-1000", lambda f: ["classify", f.image, "--points", f.points(), "-o", f.out, "--mpp", "1000"],
         "--mpp: must be between 0.01 and 50"),
    Case("demo-tile-1", lambda f: ["demo", "-o", f.out, "--tile", "1"], "--tile: must be between 64 and 8192"),
    Case("detect-slide-tile-1", lambda f: ["detect", f.slide(), "-o", f.out, "--tile", "1"], "--tile: must be"),
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
    Case("train-seed-negative", lambda f: ["train", "detection", "--images", str(f.tmp), "-o", f.out, "--seed", "-1"],
         "--seed: must be 0 or more"),
    Case("train-classification-seed-negative", lambda f: ["train", "classification", "-o", f.out, "--seed", "-1"],
         "--seed: must be 0 or more"),
    Case("train-crop-huge", lambda f: ["train", "detection", "--images", str(f.tmp), "-o", f.out,
                                       "--crop", "100000"], "--crop: must be between 16 and 2048 pixels"),
    Case("train-stop-patience-0", lambda f: ["train", "detection", "--images", str(f.tmp), "-o", f.out,
                                             "--stop-patience", "0"], "--stop-patience: must be at least 1"),
    # the output folder, checked before any model runs
    Case("detect-out-is-a-file", lambda f: ["detect", f.image, "-o", f.file("taken.txt", "x")],
         "taken.txt exists and is not a folder"),
    Case("detect-slide-out-is-a-file", lambda f: ["detect", f.slide(), "-o", f.file("taken.txt", "x")],
         "taken.txt exists and is not a folder"),
    Case("segment-slide-out-is-a-file", lambda f: ["segment", f.slide(), "-o", f.file("taken.txt", "x")],
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
    Case("evaluate-garbage-mat-truth", lambda f: _evaluate(f, {"img1.mat": np.random.default_rng(16).bytes(300)}),
         "not a readable MATLAB .mat file"),
    Case("evaluate-truncated-mat-truth", lambda f: _evaluate(f, {"img1.mat": _mat_bytes()[:200]}),
         "not a readable MATLAB .mat file"),
    Case("evaluate-mat-header-then-garbage", lambda f: _evaluate(f, {"img1.mat": _mat_bytes()[:128] + b"\x07" * 300}),
         "not a readable MATLAB .mat file"),
    Case("evaluate-mat-without-points", lambda f: _evaluate(f, {"img1.mat": _mat_bytes(detection=np.ones((3, 3)))}),
         "variable 'detection' has shape (3, 3), expected (N, 2) points"),
    Case("evaluate-zero-byte-prediction", lambda f: _evaluate_empty_prediction(f), "img1.csv: file is empty (0 bytes"),
    Case("evaluate-zero-byte-geojson-truth", lambda f: _evaluate(f, {"img1.geojson": b""}),
         "img1.geojson: file is empty (0 bytes): a file for an image without nuclei still holds an empty FeatureCollection"),
    Case("evaluate-fifo-truth", _evaluate_fifo_truth, "img1.csv: not a regular file"),
    Case("evaluate-missing-pred-folder", lambda f: ["evaluate", "detection", "--pred", str(f.tmp / "none"), "--truth",
                                                    str(f.tmp), "--radius", "5"], "none: no such folder"),
    Case("evaluate-pred-symlink-loop", lambda f: ["evaluate", "detection", "--pred", f.loop(), "--truth", str(f.tmp),
                                                  "--radius", "5"], "loop_a.safetensors: symbolic link loop"),
    Case("evaluate-segmentation-two-label-images", lambda f: ["evaluate", "segmentation", "--pred",
                                                              *f.label_eval_dirs()[:1], "--truth", f.label_eval_dirs()[1]],
         "2 truth label images for a: a.png and a_labels.tif"),
    # experiment configurations: checked when parsing, before any training or run folder
    Case("experiment-unknown-study", lambda f: _experiment(f, experiment="nosuch"), "unknown experiment 'nosuch'"),
    Case("experiment-unknown-study-name", lambda f: ["experiment", "nosuch", "--config", f.experiment_config(), "-o",
                                                     f.out], "unknown experiment 'nosuch'"),
    Case("experiment-lr-fast", lambda f: _experiment(f, train__lr="fast"), "train: lr must be a number, got 'fast'"),
    Case("experiment-empty-xi-grid", lambda f: _experiment(f, train__xi_grid=[]), "train: xi_grid must be a non-empty"),
    Case("experiment-string-xi-grid", lambda f: _experiment(f, train__xi_grid="0.5"),
         "train: xi_grid must be a list, got '0.5'"),
    Case("experiment-batch-size-0", lambda f: _experiment(f, train__batch_size=0), "train: batch_size must be at least 1"),
    Case("experiment-seed-null", lambda f: _experiment(f, seed=None), "exp.json: seed must be an integer, got null"),
    Case("experiment-seed-negative", lambda f: _experiment(f, seed=-1), "seed"),
    Case("experiment-crop-huge", lambda f: _experiment(f, train__crop=100000), "crop must be between 16 and 2048"),
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


UNWRITABLE = {
    "detect": lambda f, o: ["detect", f.image, "-o", o, "--model", "no-such-model"],
    "detect-slide": lambda f, o: ["detect", f.slide(), "-o", o, "--model", "no-such-model"],
    "segment": lambda f, o: ["segment", f.image, "-o", o, "--model", "no-such-model"],
    "segment-slide": lambda f, o: ["segment", f.slide(), "-o", o, "--model", "no-such-model"],
    "analyze": lambda f, o: ["analyze", f.image, "-o", o, "--detector", "no-such-model"],
    "classify": lambda f, o: ["classify", f.image, "--points", f.points(), "-o", o, "--model", "no-such-model"],
    "demo": lambda f, o: ["demo", "-o", o, "--model", "no-such-model"],
    "train": lambda f, o: ["train", "detection", *f.train_folders(), "-o", o, "--init", "no-such-model"],
    "experiment": lambda f, o: ["experiment", "lambda", "--config", f.experiment_config(), "-o", o],
}


@pytest.mark.parametrize("command", list(UNWRITABLE))
@pytest.mark.parametrize("where", ["folder", "subfolder"])
def test_unwritable_output_folder_is_refused_before_any_model(files, capsys, command, where):
    # /sys refuses new files, even to root: a read-only output folder that chmod cannot fake for root
    if os.access("/sys", os.W_OK) and _can_create_in(Path("/sys")):
        pytest.skip("/sys is writable here")
    target = "/sys" if where == "folder" else "/sys/nucleikit-out"
    assert _run(UNWRITABLE[command](files, target)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "-o/--out: cannot write in /sys" in errors[0], err
    assert "no-such-model" not in err and "Traceback" not in err  # refused before the model


def test_a_fifo_in_a_folder_is_named_and_the_batch_goes_on(files, capsys):
    folder = Path(files.folder_with_fifo())
    (folder / "good.png").write_bytes(Path(files.image).read_bytes())
    (folder / "gone.png").symlink_to(folder / "nothing.png")
    code = _run(_detect(files, "--no-overlay")[:1] + [str(folder)] + _detect(files, "--no-overlay")[2:])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"error: {folder / 'pipe.png'}: not a regular file (a pipe, socket or device)" in err
    assert f"error: {folder / 'gone.png'}: broken symbolic link" in err
    assert (files.tmp / "out" / "good.csv").exists()  # before: the FIFO and the link were skipped without a word


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
    ({"seed": -1}, "seed must be 0 or more"),
    ({"crop": 100000}, "crop must be between 16 and 2048 pixels"),
    ({"stop_patience": 0}, "stop_patience must be at least 1"),
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


def test_full_disk_fails_one_slide_and_the_batch_goes_on(files, monkeypatch, capsys):
    import errno

    import nucleikit.export.files as export

    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_first_file_full(fd):
        calls["n"] += 1
        if calls["n"] == 1:  # the first slide's first table hits a full disk; the rest fits
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    first = Path(files.slide())
    second = first.with_name("second.tif")
    second.write_bytes(first.read_bytes())
    monkeypatch.setattr(export.os, "fsync", fsync_first_file_full)
    code = _run(["detect", str(first), str(second), "-o", files.out, "--model", str(files.detector), "--threads",
                 "1", "--formats", "csv,sqlite", "--tissue-mask", "all", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "slide.csv: cannot write: No space left on device" in err
    assert (files.tmp / "out" / "second.csv").exists() and (files.tmp / "out" / "second.sqlite").exists()
    assert not (files.tmp / "out" / "slide.csv").exists()


@pytest.mark.parametrize("truth", ["x,y\n400,400\n", "mat"])
def test_evaluate_without_a_true_positive_says_the_distance_is_undefined(files, capsys, truth):
    # no pair within the radius: the mean distance of matched pairs has no value (a TypeError traceback before)
    content = _mat_bytes(detection=np.array([[400.0, 400.0]])) if truth == "mat" else truth
    argv = _evaluate(files, {"img1.mat" if truth == "mat" else "img1.csv": content})
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "TP 0  FP 1  FN 1  ED n/a" in out
    assert _run([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["tp"], result["ed"]) == (0, None)
