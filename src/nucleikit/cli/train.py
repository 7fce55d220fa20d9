"""``nucleikit train detection -o RUNDIR ...``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError, InputError
from .options import positive_float, positive_int

DESCRIPTION = """Train a point detector, or fine-tune one (--init, --freeze-blocks), with
validation F1 every --val-every steps; the best weights (with the threshold and peak distance tuned
on the validation images) are RUNDIR/best.safetensors. Run the same command again to resume from
RUNDIR/checkpoint.pt. Data: the CRCHisto split of PROTOCOL.md (--dataset crchisto) or your own
folders of images with point files beside them (--images/--val-images, --mpp)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=["detection"], help="what to train")
    p.add_argument("-o", "--out", required=True, metavar="RUNDIR", help="run folder (checkpoint, best weights, log)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["crchisto"], default=None, help="built-in data set (needs ../shared/data)")
    data.add_argument("--data-root", default=None, metavar="DIR", help="folder holding crchisto/ (default: find ../shared/data)")
    data.add_argument("--fold", default="fixed", help="CRCHisto split: 'fixed' or a fold 0-4 (default: fixed)")
    data.add_argument("--images", default=None, metavar="DIR", help="your training images (point files beside them)")
    data.add_argument("--points", default=None, metavar="DIR", help="folder of the training point files, if not beside the images")
    data.add_argument("--val-images", default=None, metavar="DIR", help="your validation images")
    data.add_argument("--val-points", default=None, metavar="DIR", help="folder of the validation point files")
    data.add_argument("--mpp", type=positive_float, default=None, help="microns per pixel of your images (default: metadata)")
    m = p.add_argument_group("model and schedule")
    m.add_argument("--model", default=None, help="architecture (see `nucleikit models`; default: micronet)")
    m.add_argument("--init", default=None, metavar="NAME|PATH", help="start from these weights (fine-tuning)")
    m.add_argument("--freeze-blocks", type=int, default=0, metavar="K", help="freeze blocks 1..K (numbered from the input)")
    m.add_argument("--steps", type=positive_int, default=None, help="optimisation steps")
    m.add_argument("--val-every", type=positive_int, default=None, help="steps between validations/checkpoints")
    m.add_argument("--batch-size", type=positive_int, default=None)
    m.add_argument("--crop", type=positive_int, default=None, help="training crop side in pixels")
    m.add_argument("--lr", type=positive_float, default=None)
    m.add_argument("--lam", type=float, default=None, help="background weight lambda of the weighted MSE")
    m.add_argument("--seed", type=int, default=None)
    m.add_argument("--threads", type=positive_int, default=None)
    m.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    m.add_argument("--config", default=None, metavar="FILE", help="JSON file of TrainConfig fields (options override it)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def _config(args: argparse.Namespace):
    from ..train.config import TrainConfig

    fields: dict = {}
    if args.config:
        path = Path(args.config)
        try:
            fields = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(fields, dict):
            raise InputError(path, "must hold a JSON object of training options")
    overrides = {
        "model": args.model,
        "init": args.init,
        "freeze_blocks": args.freeze_blocks or None,
        "steps": args.steps,
        "val_every": args.val_every,
        "batch_size": args.batch_size,
        "crop": args.crop,
        "lr": args.lr,
        "lam": args.lam,
        "seed": args.seed,
        "threads": args.threads,
        "bf16": True if args.bf16 else None,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(fields)


def _data(args: argparse.Namespace):
    if args.dataset == "crchisto":
        from ..io.datasets.base import find_shared_dir
        from ..io.datasets.crchisto import CRCHisto

        root = Path(args.data_root) if args.data_root else None
        if root is None:
            shared = find_shared_dir()
            if shared is None:
                raise ConfigError("CRCHisto not found: give --data-root (the folder holding crchisto/)")
            root = shared / "data"
        split = "fixed" if args.fold == "fixed" else int(args.fold)
        train = CRCHisto(root / "crchisto", split=split, subset="train")
        val = CRCHisto(root / "crchisto", split=split, subset="validation")
        return list(train), list(val), {"dataset": "CRCHistoPhenotypes", "split": f"crchisto {args.fold}"}
    if args.images:
        from ..io.datasets.folder import point_folder

        if not args.val_images:
            raise ConfigError("--val-images is required with --images (xi and the best step are chosen on it)")
        train = point_folder(args.images, points_dir=args.points, mpp=args.mpp)
        val = point_folder(args.val_images, points_dir=args.val_points, mpp=args.mpp)
        return train, val, {"dataset": str(args.images), "split": "user folders"}
    raise ConfigError("give --dataset crchisto or --images DIR --val-images DIR")


def run(args: argparse.Namespace) -> int:
    from ..train.loop import train_detector

    if args.freeze_blocks < 0:
        raise ConfigError("--freeze-blocks must be >= 0")
    cfg = _config(args)
    train, val, meta = _data(args)
    out = Path(args.out)
    result = train_detector(train, val, cfg, out, progress=not args.no_progress, extra_meta=meta)
    print(f"best validation F1 {result.best.get('f1', float('nan')):.4f} at step {result.best_step} "
          f"({result.steps_done} steps, {result.wall_time_s / 60:.1f} min); weights: {result.best_weights}")
    return 0


