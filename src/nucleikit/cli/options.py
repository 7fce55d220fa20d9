"""Options shared by several sub-commands, each defined once."""

from __future__ import annotations

import argparse
import glob
import math
import tempfile
from pathlib import Path

from ..errors import ConfigError, InputError, dangling_link_reason
from ..export import check_slide_formats, slide_formats

__all__ = [
    "DEFAULT_DETECTOR",
    "add_model_option",
    "add_output_option",
    "add_runtime_options",
    "add_precision_options",
    "add_mpp_option",
    "add_slide_options",
    "add_scale_out_options",
    "expand_inputs",
    "inference_config",
]


#: Plausible microscope pixel sizes in um/px (:data:`nucleikit.io.images.MPP_RANGE`, repeated
#: so that parsing stays light; a test checks they agree). Outside it a resampling to the
#: model's resolution is absurd: 1000 um/px would turn a 500 px tile into a 9 TiB array.
MPP_RANGE = (0.01, 50.0)
#: Smallest and largest --tile: a core below the network's context halo spends most of
#: the time on overlap (--tile 1 runs for minutes), one above this does not fit in memory.
TILE_RANGE = (64, 8192)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (``nan`` and ``inf`` refused)."""
    return _number(text)


def positive_float(text: str) -> float:
    """A finite number above 0 (``nan`` and ``inf`` refused)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {'at least 1' if low == 1 else f'{low} or more'}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def crop_side(text: str) -> int:
    """A training crop side in pixels, within ``TrainConfig``'s bounds."""
    from ..train.config import MAX_CROP, MIN_CROP

    value = _int_at_least(text, 1)
    if not MIN_CROP <= value <= MAX_CROP:
        raise argparse.ArgumentTypeError(f"must be between {MIN_CROP} and {MAX_CROP} pixels, got {text}")
    return value


def mpp_value(text: str) -> float:
    """Microns per pixel within :data:`MPP_RANGE`."""
    value = positive_float(text)
    low, high = MPP_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"must be between {low:g} and {high:g} um/px (a microscope's pixel size), got {text}"
        )
    return value


def relative_threshold(text: str) -> float:
    """``xi`` of the "peaks above xi * max" rule: at least 0 and below 1."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1 (a fraction of the map maximum), got {text}")
    return value


def probability(text: str) -> float:
    """A probability threshold in [0, 1]."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (a probability), got {text}")
    return value


def min_distance_px(text: str) -> int:
    """A whole number of pixels, at least 1 ("3" and "3.0" both give 3)."""
    value = _number(text)
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels, at least 1, got {text}")
    return int(value)


def tile_size(text: str) -> int:
    """A tile core side within :data:`TILE_RANGE`."""
    value = positive_int(text)
    low, high = TILE_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be between {low} and {high} pixels, got {text}")
    return value


def output_folder(text: str) -> Path:
    """An output folder that exists and can be written, or can be created.

    Checked when the options are parsed, so that a read-only folder or ``-o`` naming an
    existing file stops the command before any model is loaded. Nothing is created here.
    """
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    probe = path
    while not probe.exists():  # the nearest existing ancestor is where the folder would be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text}: {probe} is not a folder")
    problem = _write_problem(probe)
    if problem:
        where = text if probe == path else f"{probe} (where {text} would be created)"
        raise argparse.ArgumentTypeError(f"cannot write in {where}: {problem}")
    return path


def _write_problem(folder: Path) -> str | None:
    """None if a file can be created in ``folder``, else the system's reason."""
    # Actually trying is the only reliable test: os.access says yes to root on a
    # read-only mount and knows nothing of quotas or ACLs.
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".nucleikit-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


#: The detector `detect`, `analyze` and `demo` use by default: MicroNet trained on pooled H&E data sets
#: (CRCHisto and seven MoNuSeg organs, `nucleikit experiment pooled`); the paper's CRCHisto-only
#: MicroNet stays available as `micronet`.
DEFAULT_DETECTOR = "micronet_he"


def add_model_option(p: argparse.ArgumentParser, default: str = DEFAULT_DETECTOR) -> None:
    p.add_argument(
        "--model",
        default=default,
        metavar="NAME|PATH",
        help=f"bundled weights name (see `nucleikit models`) or a .safetensors file (default: {default})",
    )


def add_mpp_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mpp",
        type=mpp_value,
        default=None,
        metavar="X",
        help=f"microns per pixel of the input ({MPP_RANGE[0]:g} to {MPP_RANGE[1]:g}); default: from the file's "
             "metadata, else the model's own",
    )


def add_output_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", required=True, type=output_folder, metavar="OUTDIR",
                   help="output folder (created; must be writable)")


def add_peak_options(p: argparse.ArgumentParser) -> None:
    """Override the post-processing tuned with the weights (xi and peak distance)."""
    # --xi is a fraction of the map maximum, not a probability like segment's --prob-threshold
    # (issue 16): each has its own name; --threshold stays as the older name of both.
    p.add_argument("--xi", "--threshold", dest="threshold", type=relative_threshold, default=None, metavar="XI",
                   help="keep peaks above XI times the map maximum, 0 <= XI < 1 (default: the value tuned with "
                        "the weights); --threshold is the older name")
    p.add_argument("--min-distance", type=min_distance_px, default=None, metavar="PX",
                   help="minimum distance between peaks in model pixels, a whole number >= 1 (default: tuned "
                        "with the weights)")


def memory_size(text: str) -> int:
    """A memory budget: a number of MiB, or with a unit, ``1.5G``, ``1536M``, ``1GiB``; at least 64 MiB."""
    units = {"": 2 ** 20, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in ("k", "m", "g") else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a memory size (MiB, or with a unit: 1.5G, 1536M): {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite size, got {text}")
    size = int(value * units[unit])
    if size < MEMORY_MIN:
        raise argparse.ArgumentTypeError(f"must be at least {MEMORY_MIN // 2 ** 20} MiB, got {text}")
    return size


#: Smallest --memory: below it even a 64 px tile of the bundled networks does not fit.
MEMORY_MIN = 64 * 2 ** 20
#: --precision choices (:data:`nucleikit.infer.precision.PRECISIONS`, repeated so --help stays light).
PRECISION_CHOICES = ("auto", "fp32", "bf16")


def add_precision_options(g) -> None:
    """``--precision auto|fp32|bf16`` and the older ``--bf16``, an alias of ``--precision bf16``."""
    g.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="arithmetic of the network: auto (default) runs bf16 autocast where the CPU has "
                        "AMX or AVX512-BF16 and the weights record that their accuracy holds under bf16, "
                        "else fp32; fp32 and bf16 force one (the run record says which ran and why)")
    g.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                   help="deprecated: the same as --precision bf16")


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--threads", type=positive_int, default=2, help="CPU threads for torch (default: 2)")
    g.add_argument("--tile", type=tile_size, default=None,
                   help=f"tile core size in model pixels, {TILE_RANGE[0]} to {TILE_RANGE[1]} (default: chosen "
                        "per image from --memory: the whole image in one window when it fits, else the "
                        "largest tiles that fit, which keeps the halo's share of the work low)")
    g.add_argument("--batch-size", type=positive_int, default=None,
                   help="tiles per forward pass (default: as many as --memory holds, at most 8)")
    g.add_argument("--memory", type=memory_size, default=2 ** 30, metavar="SIZE",
                   help="memory one forward pass may use, in MiB or with a unit (1.5G, 768M); it sets the "
                        "tile and batch sizes not given (default: 1G; the whole process then stays under "
                        "about 1.5 GiB)")
    add_precision_options(g)


def inference_config(args: argparse.Namespace):
    from ..infer.predict import InferenceConfig

    return InferenceConfig(tile=args.tile, batch_size=args.batch_size, threads=args.threads,
                           precision=args.precision, memory=args.memory)


def expand_inputs(items: list[str], suffixes: tuple[str, ...]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named directly, the matching files of named folders, and glob matches.

    Returns
    -------
    files : list of Path
        In the order given, duplicates removed.
    problems : list of (item, reason)
        Items that name nothing usable (reported, not fatal, so a batch goes on).
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    def add_found(found: list[Path], item: str, none: str) -> None:
        """The files a folder or pattern holds; a FIFO, device or dangling link of an image name is reported."""
        found = [q for q in found if q.suffix.lower() in suffixes and not q.is_dir()]
        for q in found:
            problem = _not_a_file(q)
            if problem is None:
                add(q)
            else:
                problems.append((str(q), problem))
        if not found:
            problems.append((item, none))

    for item in items:
        path = Path(item)
        if any(ch in item for ch in "*?[") and not path.exists():
            add_found(sorted(Path(m) for m in glob.glob(item, recursive=True)), item, "the pattern matches no image")
        elif path.is_dir():
            add_found(sorted(path.iterdir()), item, "folder holds no image")
        else:
            problem = _not_a_file(path)
            if problem is None:
                add(path)
            else:
                problems.append((item, problem))
    return files, problems


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file a batch can read, or None when it is one."""
    if path.is_file():
        return None
    if path.exists():  # a FIFO named .png would block the batch forever
        return "not a regular file (a pipe, socket or device)"
    if path.is_symlink():
        return dangling_link_reason(path)
    return "no such file"


def batch_inputs(items: list[str], suffixes: tuple[str, ...], report) -> list[Path]:
    """The files a batch command processes, in order, with every problem reported.

    Expands ``items`` (:func:`expand_inputs`); inputs that match nothing go to
    ``report.fail``, and so does a file whose stem another input already has (its
    outputs would overwrite the first one's), so the batch goes on without it.
    ``report`` is a :class:`nucleikit.cli.report.BatchReport`.
    """
    files, problems = expand_inputs(items, suffixes)
    for item, reason in problems:
        report.fail(item, reason)
    first: dict[str, Path] = {}
    kept: list[Path] = []
    for path in files:
        if path.stem in first:
            report.fail(path, f"same name as {first[path.stem]}: outputs would overwrite each other")
            continue
        first[path.stem] = path
        kept.append(path)
    return kept


def require_file(path: str | Path) -> Path:
    """``path`` if something is there; else an :class:`InputError` saying what is wrong (a link loop...)."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, dangling_link_reason(p) if p.is_symlink() else "no such file or folder")
    return p


def require_folder(path: str | Path) -> Path:
    """``path`` if it is a folder; else an :class:`InputError` naming the problem."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.exists():
        raise InputError(p, "not a folder")
    raise InputError(p, dangling_link_reason(p) if p.is_symlink() else "no such folder")


# --------------------------------------------------------------------------- whole slides

#: Output tables a whole slide can be written as: the slide formats of the writer registry
#: (:func:`nucleikit.export.slide_formats`; the export package needs NumPy only, not the
#: inference stack, so ``--help`` stays light).
SLIDE_FORMATS = slide_formats()


def formats_list(text: str) -> tuple[str, ...]:
    """``"csv,sqlite"`` → ``("csv", "sqlite")``; each must be one of :data:`SLIDE_FORMATS`."""
    try:
        return check_slide_formats(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"choose from {','.join(SLIDE_FORMATS)} (comma-separated), got {text!r}"
        ) from None


def level_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_slide_options(p: argparse.ArgumentParser) -> None:
    """Options of whole-slide inputs (SVS, NDPI, pyramidal TIFF...)."""
    g = p.add_argument_group("whole slides")
    g.add_argument("--level", type=level_index, default=None, metavar="K",
                   help="pyramid level to read (default: the coarsest not coarser than the model)")
    g.add_argument("--tissue-mask", default=None, metavar="PATH|all",
                   help="tissue mask image covering the slide (non-zero = tissue), or 'all' to process "
                        "every tile (default: detected on a thumbnail, saved as <stem>_tissue.png)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an interrupted slide from its finished tiles (default: on)")
    g.add_argument("--formats", type=formats_list, default=SLIDE_FORMATS, metavar="LIST",
                   help=f"output tables for slides, comma-separated (default: {','.join(SLIDE_FORMATS)})")


def add_scale_out_options(p: argparse.ArgumentParser) -> None:
    """Options that spread slides over Dask workers."""
    g = p.add_argument_group("scale-out (needs nucleikit[distributed])")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS|local",
                   help="process slides on Dask: 'local' starts a cluster on this machine, an address "
                        "(tcp://host:8786) uses a running one (default: slides one after another here)")
    g.add_argument("--workers", type=positive_int, default=2, metavar="N",
                   help="worker processes of --scheduler local, one thread each (default: 2)")
