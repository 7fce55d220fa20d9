"""Is the evaluated network the trained one? Eval-mode BatchNorm against batch statistics.

    python benchmarks/recurrent_bn_check.py RUNS/r2unet_seed0/best.safetensors RUNS/unet_seed0/best.safetensors

Takes 64 random 96x96 crops of DSB2018 validation images (seed 0; images smaller than a crop
are skipped), standardised as the weights say, and scores pooled Dice at threshold 0.5 twice:
with the network in eval mode (BatchNorm's running statistics, as inference runs) and with
BatchNorm normalising by the statistics of this batch of 64 crops (as training does). A
network whose BatchNorm is shared by steps with different statistics (Alom et al.'s recurrent
layer) shows a gap; a plain U-Net shows none. Segmentation weights with a mask head only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _common import machine, save, shared_data


def crops(count: int = 64, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size, 3) percentile-normalised crops and their (N, size, size) foreground."""
    from nucleikit.io.datasets.dsb2018 import DSB2018
    from nucleikit.transforms import percentile_normalise

    rng = np.random.default_rng(seed)
    val = list(DSB2018(shared_data() / "dsb2018", subset="validation"))
    xs, ys = [], []
    for k in rng.choice(len(val), count, replace=False):
        labels = val[k].load_labels() > 0
        h, w = labels.shape
        if h < size or w < size:
            continue
        i, j = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        xs.append(percentile_normalise(val[k].load_image(mode="rgb"))[i:i + size, j:j + size])
        ys.append(labels[i:i + size, j:j + size])
    return np.stack(xs), np.stack(ys)


def pooled_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(2 * np.count_nonzero(pred & truth) / max(np.count_nonzero(pred) + np.count_nonzero(truth), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from nucleikit.models.weights import load_weights

    torch.set_num_threads(args.threads)
    x, y = crops()
    out = {"machine": machine(), "crops": len(x), "weights": {}}
    for path in args.weights:
        row = {}
        for mode in ("eval", "batch_statistics"):
            model, meta = load_weights(path)  # afresh: batch statistics mode updates the running ones
            if meta.get("target") != "mask":
                sys.exit(f"{path}: a {meta.get('target')!r} head; this check scores mask heads")
            mean, std = np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)
            xt = torch.from_numpy(np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2)))
            model.eval()
            if mode == "batch_statistics":
                for m in model.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.train()
            with torch.no_grad():
                row[mode] = pooled_dice(model(xt)[:, 0].numpy() > 0.5, y)
        out["weights"][str(path)] = {"model": meta["model"], "step_norm": meta["model_kwargs"].get("step_norm", False),
                                     **row}
        print(f"{path}: pooled Dice eval {row['eval']:.4f}, batch statistics {row['batch_statistics']:.4f}", flush=True)
    print(f"wrote {save('recurrent_bn_check', out)}")


if __name__ == "__main__":
    main()
