"""``nucleikit models``: architectures and bundled weights."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = "List registered model architectures and the weights bundled with nucleikit (with their figures)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def headline(test: dict | None) -> str:
    """The test figure a weights file is known by.

    F1 at r = 6 px (detectors), Dice and DSB score of the shipped seeds (binary segmenters),
    mean AJI and PQ (instance segmenters), weighted F1 (classifiers).
    """
    test = test or {}
    if isinstance(test.get("f1_r6"), float):
        return f"F1 {test['f1_r6']:.3f} (r=6 px)"
    if isinstance(test.get("mean"), dict) and "aji" in test["mean"]:
        m = test["mean"]
        return f"AJI {m['aji']:.3f}, PQ {m['pq']:.3f}, Dice {m['dice']:.3f}"
    seeds = test.get("shipped_seeds")
    if seeds and isinstance(test.get(seeds), dict):
        t = test[seeds]
        return f"Dice {t['dice']:.3f}, DSB {t['dsb_score']:.3f}"
    if isinstance(test.get("weighted_f1"), float):
        return f"weighted F1 {test['weighted_f1']:.3f}"
    return "-"


def run(args: argparse.Namespace) -> int:
    from ..models import get_spec, list_models
    from ..models.weights import bundled_weights_dir, read_weights_meta

    archs = [get_spec(n) for n in list_models()]
    bundled = []
    for path in sorted(bundled_weights_dir().glob("*.safetensors")):
        meta = read_weights_meta(path)
        record = meta.to_dict()  # the JSON object: post-processing and figures as the file stores them
        bundled.append({
            "name": path.stem,
            "model": meta.model,
            "task": meta.task,
            "mpp": meta.mpp,
            "num_params": meta.num_params,
            "postprocess": record.get("postprocess"),
            "test": record.get("test"),
        })
    if args.json:
        print(json.dumps({
            "architectures": [{"name": s.name, "task": s.task, "target": s.target, "loss": s.loss, "mpp": s.mpp}
                              for s in archs],
            "weights": bundled,
        }))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title="architectures")
    for col in ("name", "task", "target", "loss", "default um/px"):
        t.add_column(col)
    for s in archs:
        t.add_row(s.name, s.task, s.target, s.loss, "-" if s.mpp is None else f"{s.mpp:g}")
    console.print(t)
    w = Table(title=f"bundled weights ({bundled_weights_dir()})")
    for col in ("name", "model", "task", "um/px", "params", "test"):
        w.add_column(col)
    for b in bundled:
        w.add_row(b["name"], str(b["model"]), str(b["task"]), f"{b['mpp']}", f"{b['num_params']:,}" if b["num_params"] else "?",
                  headline(b.get("test")))
    console.print(w)
    return 0
