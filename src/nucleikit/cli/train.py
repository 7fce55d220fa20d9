"""``nucleikit train detection|segmentation|classification -o RUNDIR ...``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError, InputError
from .options import crop_side, mpp_value, non_negative_float, non_negative_int, output_folder, positive_float, positive_int

DESCRIPTION = """Train a point detector, or fine-tune one (--init, --freeze-blocks), with
validation F1 every --val-every steps; the best weights (with the threshold and peak distance tuned
on the validation images) are RUNDIR/best.safetensors. Run the same command again to resume from
RUNDIR/checkpoint.pt. Data: the CRCHisto split of PROTOCOL.md (--dataset crchisto) or your own
folders of images with point files beside them (--images/--val-images, --mpp).

`train segmentation` trains a nucleus segmenter with the same loop on DSB2018 stage1_train
(--dataset dsb2018; PROTOCOL.md's 536/134 split; --labels fixed (default) or original), on the
MoNuSeg H&E images (--dataset monuseg: the per-organ train images plus the auxiliary organs,
validated on the per-organ validation images; the three 20x-looking TCGA-HE kidney images at
0.5 um/px), or on your own outlined images (--images DIR --val-images DIR). Beside each image
<stem>.png|tif|tiff|jpg|bmp put EITHER an instance label image <stem>_labels.png|tif|tiff (one
channel of 8/16/32-bit integers, 0 = background, one integer per nucleus; the name `nucleikit
segment` writes) OR QuPath polygons <stem>.geojson (Polygon/MultiPolygon features as QuPath exports
them; one feature = one nucleus; a pixel is inside when its centre is; where polygons overlap the
later feature in the file wins; parts outside the image are clipped, a feature entirely outside is
an error). --label-dir/--val-label-dir: annotations in another folder, where a label image may also
be named <stem>.png|tif|tiff. Refused, with one line naming the file: an image without an annotation
or with two, two images of one stem, an annotation without an image beside them, a label image of
another size, RGB, float or binary-mask (one value, several blobs) label images, and an annotation
without nuclei unless --allow-empty. --mpp gives your images' um/px (default: their metadata, else
none); the model's own training resolution is the --config "mpp" (none: input resolution).
--model unet or r2unet (Alom et al.'s binary masks: Dice + BCE, validation Dice; default r2unet),
or unet_instance / r2unet_instance (foreground + boundary + distance head, validation AJI); the
thresholds and watershed values tuned on the validation images are saved with the best weights,
ready for `nucleikit segment --model RUNDIR/best.safetensors`.

`train classification` trains a nucleus classifier (--model densenet or dcrn) on 32x32 patches of
the classified CRCHisto nuclei of --fold (Alom et al.'s SGD recipe unless overridden), validating
every epoch; the weights of the best validation weighted F1 are RUNDIR/best.safetensors, and the
same command resumes from RUNDIR/checkpoint.pt. --protocol image (default) splits by image as
PROTOCOL.md says (--fold); --protocol patch is Alom et al.'s protocol: all classified patches of
the 100 images drawn at random 70/10/20 per class with seed 0, so patches of one image sit on
both sides (reported beside the headline, never as it). Beyond the paper, each off by default and
recorded in the weights: --label-smoothing, --tta (validation over flips and rotations; the
weights then classify with it), a larger context (--patch 64, or --patch-mpp 1.1 at patch 32);
--sampling balanced draws the classes equally."""

#: Options of `train detection` only, with the value that means "not given".
_DETECTION_ONLY = {
    "images": None, "points": None, "val_images": None, "val_points": None, "mpp": None, "init": None,
    "freeze_blocks": 0, "steps": None, "val_every": None, "crop": None, "lam": None,
    "label_dir": None, "val_label_dir": None, "allow_empty": False,
}
#: Options of `train segmentation` only (refused by `train detection`).
_SEGMENTATION_ONLY = {"label_dir": None, "val_label_dir": None, "allow_empty": False}
#: Options of `train classification` only.
_CLASSIFICATION_ONLY = {"epochs": None, "sampling": None, "limit_images": None, "protocol": None,
                        "label_smoothing": None, "tta": None, "patch": None, "patch_mpp": None}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=["detection", "segmentation", "classification"], help="what to train")
    p.add_argument("-o", "--out", required=True, type=output_folder, metavar="RUNDIR",
                   help="run folder (checkpoint, best weights, log)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["crchisto", "dsb2018", "monuseg"], default=None,
                      help="built-in data set (needs ../shared/data)")
    data.add_argument("--labels", choices=["fixed", "original"], default="fixed",
                      help="DSB2018 training labels (default: the community-corrected 'fixed' set)")
    data.add_argument("--data-root", default=None, metavar="DIR", help="folder holding crchisto/ (default: find ../shared/data)")
    data.add_argument("--fold", default="fixed", help="CRCHisto split: 'fixed' or a fold 0-4 (default: fixed)")
    data.add_argument("--images", default=None, metavar="DIR",
                      help="your training images (point files, or label images/GeoJSON for segmentation, beside them)")
    data.add_argument("--points", default=None, metavar="DIR", help="folder of the training point files, if not beside the images")
    data.add_argument("--val-images", default=None, metavar="DIR", help="your validation images")
    data.add_argument("--val-points", default=None, metavar="DIR", help="folder of the validation point files")
    data.add_argument("--label-dir", default=None, metavar="DIR",
                      help="segmentation: folder of the training label images/GeoJSON, if not beside the images")
    data.add_argument("--val-label-dir", default=None, metavar="DIR",
                      help="segmentation: folder of the validation label images/GeoJSON")
    data.add_argument("--allow-empty", action="store_true",
                      help="segmentation: accept annotations without any nucleus (all-zero labels, no features)")
    data.add_argument("--mpp", type=mpp_value, default=None, help="microns per pixel of your images (default: metadata)")
    m = p.add_argument_group("model and schedule")
    m.add_argument("--model", default=None,
                   help="architecture (see `nucleikit models`; default: micronet, r2unet for segmentation, "
                        "dcrn for classification)")
    m.add_argument("--init", default=None, metavar="NAME|PATH", help="start from these weights (fine-tuning)")
    m.add_argument("--freeze-blocks", type=non_negative_int, default=0, metavar="K", help="freeze blocks 1..K (numbered from the input)")
    m.add_argument("--steps", type=positive_int, default=None, help="optimisation steps")
    m.add_argument("--val-every", type=positive_int, default=None, help="steps between validations/checkpoints")
    m.add_argument("--batch-size", type=positive_int, default=None)
    m.add_argument("--crop", type=crop_side, default=None, help="training crop side in pixels (16-2048)")
    m.add_argument("--lr", type=positive_float, default=None)
    m.add_argument("--lam", type=non_negative_float, default=None, help="background weight lambda of the weighted MSE")
    m.add_argument("--seed", type=non_negative_int, default=None)
    m.add_argument("--stop-patience", type=positive_int, default=None, metavar="N",
                   help="stop once N validations (epochs for classification) in a row have not improved the "
                        "best score by --stop-min-delta (default: train every step)")
    m.add_argument("--stop-min-delta", type=non_negative_float, default=None, metavar="D",
                   help="smallest validation gain that counts for --stop-patience (default 0.005)")
    m.add_argument("--threads", type=positive_int, default=None)
    m.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    m.add_argument("--config", default=None, metavar="FILE",
                   help="JSON file of TrainConfig (detection) or ClassifyConfig (classification) fields; "
                        "options override it")
    m.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    c = p.add_argument_group("classification only")
    c.add_argument("--epochs", type=positive_int, default=None, help="epochs in total (default: 30)")
    c.add_argument("--sampling", choices=["shuffle", "balanced"], default=None,
                   help="class imbalance: class-weighted loss (shuffle, default) or balanced sampling")
    c.add_argument("--limit-images", type=positive_int, default=None, metavar="N",
                   help="use only the first N training and N validation images "
                        "(quick checks, not protocol figures)")
    c.add_argument("--protocol", choices=["image", "patch"], default=None,
                   help="image: PROTOCOL.md's split by image (--fold; default, the headline); patch: Alom et al.'s "
                        "random patch-level split, 70/10/20 per class, seed 0 (the paper's protocol)")
    c.add_argument("--label-smoothing", type=_smoothing, default=None, metavar="E",
                   help="label smoothing of the cross-entropy, 0 <= E < 1 (default 0: off)")
    c.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=None, metavar="N",
                   help="validate over N flips/rotations of each patch (1, 2, 4, 8; default 1: off); recorded in "
                        "the weights, which classify with it")
    c.add_argument("--patch", type=positive_int, default=None, metavar="PX",
                   help="patch side in pixels (default 32; e.g. 64 for more context)")
    c.add_argument("--patch-mpp", type=mpp_value, default=None, metavar="UM",
                   help="resolution of the patches in um/px (default 0.55; 1.1 with --patch 32 sees a 64-px field)")


def _smoothing(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be below 1, got {text}")
    return value


def _config_fields(args: argparse.Namespace) -> dict:
    """The JSON object of --config, or an empty dict."""
    if not args.config:
        return {}
    path = Path(args.config)
    try:
        fields = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(fields, dict):
        raise InputError(path, "must hold a JSON object of training options")
    return fields


def _config(args: argparse.Namespace):
    from ..experiments.config import check_train_options
    from ..train.config import TrainConfig

    fields = _config_fields(args)
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
        "stop_patience": args.stop_patience,
        "stop_min_delta": args.stop_min_delta,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    # checked as the experiments check theirs: a bad value names its field before any data is read
    return TrainConfig.from_dict(check_train_options(fields, str(args.config or "options")))


def _data_root(args: argparse.Namespace) -> Path:
    """The folder holding ``crchisto/``: --data-root, else ``shared/data`` found from here."""
    from ..io.datasets.base import find_shared_dir

    if args.data_root:
        return Path(args.data_root)
    shared = find_shared_dir()
    if shared is None:
        raise ConfigError("CRCHisto not found: give --data-root (the folder holding crchisto/)")
    return shared / "data"


def _fold(args: argparse.Namespace):
    if args.fold == "fixed":
        return "fixed"
    try:
        return int(args.fold)
    except ValueError:
        raise ConfigError(f"--fold must be 'fixed' or a fold number 0-4, got {args.fold!r}") from None


def _data(args: argparse.Namespace):
    if args.dataset == "crchisto":
        from ..io.datasets.crchisto import CRCHisto

        root = _data_root(args)
        split = _fold(args)
        train = CRCHisto(root / "crchisto", split=split, subset="train")
        val = CRCHisto(root / "crchisto", split=split, subset="validation")
        return list(train), list(val), {"dataset": "CRCHistoPhenotypes", "split": f"crchisto {args.fold}"}
    if args.images:
        from ..io.datasets.folder import point_folder

        if not args.val_images:
            raise ConfigError("--val-images is required with --images (xi and the best step are chosen on it)")
        train = point_folder(args.images, points_dir=args.points, mpp=args.mpp)
        val = point_folder(args.val_images, points_dir=args.val_points, mpp=args.mpp)
        note = clipped_points_note(train + val)
        if note:
            print(note)
        return train, val, {"dataset": str(args.images), "split": "user folders"}
    raise ConfigError("give --dataset crchisto or --images DIR --val-images DIR")


def clipped_points_note(samples) -> str:
    """One line on the points less than 1 px outside their image that the readers moved onto its edge ("" if none)."""
    hit = [s for s in samples if getattr(s, "clipped", 0)]
    if not hit:
        return ""
    n = sum(s.clipped for s in hit)
    names = ", ".join(s.id for s in hit[:5]) + (f" and {len(hit) - 5} more" if len(hit) > 5 else "")
    which = "1 annotated point lay" if n == 1 else f"{n} annotated points lay"
    return f"note: {which} less than 1 px outside the image and moved onto its edge ({names})"


#: Keys every resumable checkpoint holds (detection/segmentation: "step"; classification: "epoch").
_CHECKPOINT_KEYS = ("model", "optimizer", "config")


def check_checkpoint(run_dir: Path) -> None:
    """Refuse a damaged ``RUNDIR/checkpoint.pt`` before any data is read or model built.

    The training loop resumes from it without a question; a truncated or foreign file
    would otherwise end in torch's traceback after the data were loaded.

    Raises
    ------
    InputError
        The checkpoint exists but cannot be read, or lacks what a resume needs.
    """
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        return
    if not path.is_file():
        raise InputError(path, "not a regular file")
    import pickle
    import zipfile

    import torch

    fix = "move it away to start this run afresh (or use another -o)"
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile):
        # torch's own messages run to several sentences about its internals: say what it means
        raise InputError(path, f"damaged checkpoint (truncated, or not a PyTorch checkpoint): cannot resume; {fix}") from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise InputError(path, f"not a nucleikit checkpoint (no {', '.join(missing)}); {fix}")


def _reject(args: argparse.Namespace, options: dict, task: str) -> None:
    given = [name for name, unset in options.items() if getattr(args, name) != unset]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(f"not an option of `train {task}`: {flags}")


def _classify_config(args: argparse.Namespace):
    from ..train.classify import ClassifyConfig

    fields = _config_fields(args)
    overrides = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "sampling": args.sampling,
        "label_smoothing": args.label_smoothing,
        "tta": args.tta,
        "patch": args.patch,
        "mpp": args.patch_mpp,
        "seed": args.seed,
        "threads": args.threads,
        "bf16": True if args.bf16 else None,
        "stop_patience": args.stop_patience,
        "stop_min_delta": args.stop_min_delta,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ClassifyConfig.from_dict(fields)
    except TypeError as exc:  # a field of the wrong kind in the JSON file
        raise ConfigError(f"bad classification option: {exc}") from None


def _run_classification(args: argparse.Namespace) -> int:
    from ..io.datasets.crchisto import CRCHisto
    from ..train.classify import train_classifier

    _reject(args, _DETECTION_ONLY, "classification")
    if args.dataset != "crchisto":
        raise ConfigError("`train classification` needs --dataset crchisto (classified points of CRCHistoPhenotypes)")
    cfg = _classify_config(args)
    check_checkpoint(Path(args.out))
    root = _data_root(args) / "crchisto"
    n = args.limit_images
    if (args.protocol or "image") == "patch":
        from ..train.patches import crchisto_patch_split

        if args.fold != "fixed":
            raise ConfigError("--fold chooses an image-level split; --protocol patch draws its own patch-level split")
        full = cfg.resolved()
        parts, meta = crchisto_patch_split(root, classes=full.classes, patch=full.patch, mpp=full.mpp, limit_images=n)
        train_data, val_data = parts["train"], parts["validation"]
        what = (f"{len(train_data)} training / {len(val_data)} validation patches of {meta['split_images']} images, "
                "patch-level split")
    else:
        split = _fold(args)
        train = CRCHisto(root, split=split, subset="train", task="classification")
        val = CRCHisto(root, split=split, subset="validation", task="classification")
        train_data = train[:n] if n else list(train)
        val_data = val[:n] if n else list(val)
        meta = {"protocol": "image", "split": f"crchisto {args.fold}"}
        what = f"{len(train_data)} training / {len(val_data)} validation images"
    if n:
        meta["limit_images"] = n
    result = train_classifier(train_data, val_data, cfg, Path(args.out), progress=not args.no_progress,
                              extra_meta=meta)
    best = result.best
    print(f"best validation weighted F1 {best.get('weighted_f1', float('nan')):.4f} "
          f"(accuracy {best.get('accuracy', float('nan')):.4f}) at epoch {result.best_epoch} "
          f"({result.epochs_done} epochs, {result.wall_time_s / 60:.1f} min, {what}); "
          f"weights: {result.best_weights}")
    return 0


def _segmentation_data(args: argparse.Namespace):
    """(train, validation, metadata) label samples of --dataset or of --images/--val-images."""
    if args.images or args.val_images:
        return _user_segmentation_data(args)
    own = {"--label-dir": args.label_dir, "--val-label-dir": args.val_label_dir, "--allow-empty": args.allow_empty,
           "--mpp": args.mpp}
    given = [flag for flag, value in own.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)}: only with your own images (--images DIR --val-images DIR)")
    root = _data_root(args)
    if args.dataset == "dsb2018":
        from ..io.datasets.dsb2018 import DSB2018

        train = DSB2018(root / "dsb2018", subset="train", labels=args.labels)
        val = DSB2018(root / "dsb2018", subset="validation", labels=args.labels)
        return list(train), list(val), {"dataset": "DSB2018 stage1_train", "split": "dsb2018 536/134",
                                        "labels": args.labels}
    if args.dataset == "monuseg":
        from ..io.datasets.monuseg import AUXILIARY, LOOKS_20X_MPP, MoNuSegLabels, per_organ_labels

        folder = root / "monuseg"
        train, _ = per_organ_labels(folder, "train", mpp_overrides=LOOKS_20X_MPP)
        val, _ = per_organ_labels(folder, "validation", mpp_overrides=LOOKS_20X_MPP)
        for organ in AUXILIARY:
            train += list(MoNuSegLabels(folder, organ=organ, subset="train", mpp_overrides=LOOKS_20X_MPP))
        meta = {"dataset": "MoNuSeg 2018 training images",
                "split": "monuseg per_organ train + auxiliary_only / per_organ validation",
                "mpp_overrides": dict(LOOKS_20X_MPP)}
        return train, val, meta
    raise ConfigError("`train segmentation` needs --dataset dsb2018 or monuseg, or --images DIR --val-images DIR")


def _user_segmentation_data(args: argparse.Namespace):
    """Label samples of --images/--val-images; every file is checked before the run folder is made."""
    from ..io.datasets.folder import label_folder

    if args.dataset:
        raise ConfigError("give --dataset or --images, not both")
    if not args.images or not args.val_images:
        raise ConfigError("--images and --val-images go together (the best step and the post-processing "
                          "are chosen on the validation images)")
    if args.points or args.val_points:
        raise ConfigError("--points/--val-points are point files for `train detection`; segmentation reads label "
                          "images or GeoJSON outlines beside the images or in --label-dir/--val-label-dir")
    if args.labels != "fixed":
        raise ConfigError("--labels chooses DSB2018's label set; it does not apply to --images")
    train = label_folder(args.images, label_dir=args.label_dir, mpp=args.mpp, allow_empty=args.allow_empty)
    val = label_folder(args.val_images, label_dir=args.val_label_dir, mpp=args.mpp, allow_empty=args.allow_empty)
    # The model trains at the --config "mpp"; an image of unknown resolution
    # would be used unscaled among rescaled ones, so it is refused.
    model_mpp = _config_fields(args).get("mpp")
    unknown = next((s for s in train + val if s.mpp is None), None)
    if model_mpp is not None and unknown is not None:
        raise InputError(unknown.image_path, f"resolution unknown, but the model trains at {model_mpp} um/px "
                                             "(--config mpp): give the images' microns per pixel (--mpp)")
    meta = {"dataset": str(args.images), "split": "user folders", "validation": str(args.val_images),
            "image_mpp": sorted({s.mpp for s in train + val if s.mpp is not None})}
    return train, val, meta


def _run_segmentation(args: argparse.Namespace) -> int:
    from ..train.loop import train_segmenter

    _reject(args, _CLASSIFICATION_ONLY, "segmentation")
    if args.model is None and args.init:
        from ..models.weights import read_weights_meta, resolve_weights

        # fine-tuning: the architecture is the --init weights' own
        args.model = read_weights_meta(resolve_weights(args.init)).get("model")
    if args.model is None and not args.config:
        args.model = "r2unet"
    cfg = _config(args)
    check_checkpoint(Path(args.out))
    train, val, meta = _segmentation_data(args)
    result = train_segmenter(train, val, cfg, Path(args.out), progress=not args.no_progress, extra_meta=meta)
    print(f"best validation score {result.best.get('score', float('nan')):.4f} at step {result.best_step} "
          f"({result.steps_done} steps, {result.wall_time_s / 60:.1f} min); weights: {result.best_weights}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..train.loop import train_detector

    if args.task == "classification":
        return _run_classification(args)
    if args.task == "segmentation":
        return _run_segmentation(args)
    _reject(args, _CLASSIFICATION_ONLY, "detection")
    _reject(args, _SEGMENTATION_ONLY, "detection")
    cfg = _config(args)
    check_checkpoint(Path(args.out))
    train, val, meta = _data(args)
    out = Path(args.out)
    result = train_detector(train, val, cfg, out, progress=not args.no_progress, extra_meta=meta)
    print(f"best validation score {result.best.get('score', float('nan')):.4f} at step {result.best_step} "
          f"({result.steps_done} steps, {result.wall_time_s / 60:.1f} min); weights: {result.best_weights}")
    return 0


