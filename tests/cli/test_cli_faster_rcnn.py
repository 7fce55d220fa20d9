"""`nucleikit train detection --model faster_rcnn` and `nucleikit detect` with its weights."""

from __future__ import annotations

import csv
import json
from shutil import copy

from nucleikit.cli.main import main


def test_train_faster_rcnn_on_folders_then_detect(disc_png, tmp_path, capsys):
    image, centres = disc_png
    for split in ("train", "val"):
        d = tmp_path / split
        d.mkdir()
        copy(image, d / "img.png")
        (d / "img.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in centres.tolist()))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model_kwargs": {"width": 4, "hidden": 32, "box_um": 4.0}, "xi_grid": [0.5],
                               "min_distance_grid": [3]}))
    run = tmp_path / "run"
    code = main(["train", "detection", "--model", "faster_rcnn", "--images", str(tmp_path / "train"),
                 "--val-images", str(tmp_path / "val"), "--mpp", "0.5", "-o", str(run), "--steps", "2",
                 "--val-every", "1", "--batch-size", "1", "--crop", "48", "--threads", "1", "--no-progress",
                 "--config", str(cfg)])
    assert code == 0, capsys.readouterr().err
    assert (run / "best.safetensors").exists() and (run / "checkpoint.pt").exists()
    out = tmp_path / "det"
    assert main(["detect", str(image), "-o", str(out), "--model", str(run / "best.safetensors"),
                 "--threads", "1"]) == 0
    with open(out / "discs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(0 < float(r["score"]) <= 1 and 0 <= float(r["x"]) < 96 and 0 <= float(r["y"]) < 80 for r in rows)
