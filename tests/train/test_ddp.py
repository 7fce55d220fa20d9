"""Two-process DDP training through torchrun (gloo on CPU), for real."""

import json
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from nucleikit.io.datasets.folder import point_folder
    from nucleikit.train.config import TrainConfig
    from nucleikit.train.loop import train_detector

    root, out, sums = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = TrainConfig(model="micronet", model_kwargs={"width": 4}, steps=3, val_every=3, batch_size=1, crop=48,
                      threads=1, xi_grid=(0.5,), min_distance_grid=(3,))
    dist.init_process_group("gloo")  # the loop joins a group its caller made
    res = train_detector(point_folder(root + "/train", mpp=0.5), point_folder(root + "/val", mpp=0.5), cfg, out,
                         progress=False)
    flat = torch.cat([p.detach().flatten() for p in res.model.parameters()])
    open(f"{sums}/rank{dist.get_rank()}.txt", "w").write(repr(float((flat * torch.arange(len(flat))).sum())))
    dist.destroy_process_group()
    """
)


def _folder(tmp_path, name, seeds):
    d = tmp_path / name
    d.mkdir()
    for s in seeds:
        rng = np.random.default_rng(s)
        pts = rng.uniform(8, 56, size=(6, 2))
        yy, xx = np.mgrid[0:64, 0:64]
        img = np.full((64, 64, 3), 220, np.uint8)
        for x, y in pts:
            img[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = (90, 40, 120)
        Image.fromarray(img).save(d / f"im{s}.png")
        (d / f"im{s}.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in pts))


def test_two_ddp_processes_end_with_identical_weights(tmp_path):
    _folder(tmp_path, "train", [0, 1, 2])
    _folder(tmp_path, "val", [3])
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (tmp_path / "sums").mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path), str(tmp_path / "run"), str(tmp_path / "sums")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**_base_env(), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (float((tmp_path / "sums" / f"rank{r}.txt").read_text()) for r in (0, 1))
    assert a == b  # gradients were averaged: both processes hold the same weights
    assert (tmp_path / "run" / "best.safetensors").exists()


def test_torchrun_cli_trains_with_two_processes(tmp_path):
    _folder(tmp_path, "train", [0, 1, 2])
    _folder(tmp_path, "val", [3])
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "nucleikit.cli.main", "train", "detection", "--images", str(tmp_path / "train"),
        "--val-images", str(tmp_path / "val"), "--mpp", "0.5", "-o", str(out), "--steps", "3",
        "--val-every", "3", "--batch-size", "1", "--crop", "48", "--threads", "1", "--no-progress",
        "--config", str(_cfg(tmp_path)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**_base_env(), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3]  # only process 0 logs
    assert (out / "best.safetensors").exists() and (out / "checkpoint.pt").exists()


def _cfg(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"model_kwargs": {"width": 4}, "xi_grid": [0.5], "min_distance_grid": [3]}))
    return p


def _base_env():
    import os

    return dict(os.environ)
