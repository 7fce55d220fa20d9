"""Measure whether a model keeps its validation figures under bf16 autocast, and record the verdict.

    python tools/bf16_verdict.py WEIGHTS [--tolerance 0.005] [--limit-images N] [--threads N]
        [--tile PX] [--experiment-config FILE] [--dry-run | --out FILE]

``--precision auto`` runs a network in bfloat16 autocast only when the CPU runs bf16 natively
and the weights say their figures hold under it (``bf16_ok``, :mod:`nucleikit.infer.precision`).
This tool measures that: it scores WEIGHTS (a file, or a bundled name such as ``micronet_he``)
on its **validation** images twice, once in fp32 and once with the precision forced to bf16
(so autocast really runs, on any CPU), everything else identical: the post-processing stored in
the weights, the same tiles (``--tile``, default 1024 model pixels, one tile per forward pass),
the same images. ``bf16_ok`` is true iff the task's headline figure moves by at most
``--tolerance`` (absolute, default 0.005; the difference rounded to 12 decimals) on every
validation set. The verdict and its evidence (``bf16_evidence``: the figures per set, the
tolerance, the images, the largest change of the network's output, the CPU, the date, the
nucleikit version and this command) are written into the file's metadata by
``tools/weights_meta.py`` (header only, tensor bytes unchanged); ``--out`` writes another file,
``--dry-run`` prints them and writes nothing. The test split is never read: this is a numerical
check of the weights, not a model choice.

What is scored, by the weights' task (the readers and scorers of ``tools/ship_weights.py`` and
:mod:`nucleikit.experiments`):

detection: F1 (pooled over each set's images) at the stored xi, peak distance and floor
    * trained by an experiment (``experiment_cell`` in the metadata, e.g. ``micronet_he``): the
      validation data sets the cell records, read through the experiment's configuration
      (``--experiment-config``, default the one the training command names) and refused unless
      their fingerprints equal the recorded ones; each set matched at its own radius
      (PROTOCOL.md; :func:`nucleikit.experiments.pooled.validation_maps`);
    * CRCHisto-only (``dataset`` CRCHistoPhenotypes, e.g. ``micronet``, ``udnet``): the
      fixed-split validation images at r = 6 px (3.3 um).
segmentation: the criterion the post-processing was tuned by, at the stored values
    mean AJI on the MoNuSeg per-organ validation images (``unet_he``); mean DSB score on the
    134 DSB2018 validation ids (``unet``, ``r2unet``, ``unet_dsb``). A mask head with detector
    seeds runs its seed detector in the same precision.
classification: weighted F1 of the CRCHisto fixed-split validation patches (``dcrn``, ``densenet``).

Where the weights record their validation image ids, they must all be among the images read.
``--limit-images N`` scores the first N validation images of each set, for a quick check; the
evidence says so. Bad input (no such file, not a weights file, data that differ from the
recorded ones) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from ship_weights import classified_images, classify_patches, label_data, limited  # noqa: E402
from weights_meta import set_meta  # noqa: E402

#: Largest change of the headline figure that still holds (absolute).
TOLERANCE = 0.005
#: Core side of every tile in model pixels, the same in both precisions (images up to it: one tile).
TILE = 1024
#: The precisions compared, the reference first.
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Validation:
    """The validation data of one model, read once and scored identically in both precisions.

    Attributes
    ----------
    task : {"detection", "segmentation", "classification"}
    metric : str
        Key of the headline figure (``"f1"``, ``"aji"``, ``"dsb_score"``, ``"weighted_f1"``).
    figure : str
        What the figure is, in words.
    sets : dict
        Set name -> its samples (detection: the set's :class:`~nucleikit.experiments.collection.Dataset`).
    """

    task: str
    metric: str
    figure: str
    sets: dict


@dataclass(frozen=True)
class Scores:
    """One precision's run over a :class:`Validation`.

    Attributes
    ----------
    figures : dict of str to float
        Set name -> headline figure.
    outputs : dict of str to list of ndarray
        Set name -> the network's outputs (maps or class probabilities), compared across precisions.
    details : dict of str to dict
        Set name -> what else describes it (images; detection: the radius in the detector's
        pixels; classification: the patches).
    precision : Precision
        What the network ran in (:class:`nucleikit.infer.precision.Precision`).
    halo : int or None
        Tiling halo the run used (dense tasks).
    seconds : float
        Wall time of the run, reading and post-processing included.
    """

    figures: dict
    outputs: dict
    details: dict
    precision: Any
    halo: int | None
    seconds: float = 0.0


# --------------------------------------------------------------------------- the verdict


def differences(fp32: dict, bf16: dict) -> dict:
    """Set name -> bf16 figure minus fp32 figure."""
    return {name: float(bf16[name]) - float(fp32[name]) for name in fp32}


def holds(fp32: dict, bf16: dict, tolerance: float) -> bool:
    """Whether every set's figure moves by at most ``tolerance``, the difference rounded to 12 decimals.

    The rounding keeps a change of exactly the tolerance (0.805 - 0.800 is 0.0050000000000000044
    in binary) within it; a NaN figure never holds.

    Examples
    --------
    >>> holds({"a": 0.800, "b": 0.700}, {"a": 0.805, "b": 0.696}, 0.005)
    True
    >>> holds({"a": 0.800, "b": 0.700}, {"a": 0.806, "b": 0.700}, 0.005)
    False
    """
    return all(round(abs(d), 12) <= tolerance for d in differences(fp32, bf16).values())


def largest_change(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Largest absolute difference between two runs' outputs of the same images."""
    return max((float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True) if x.size), default=0.0)


# --------------------------------------------------------------------------- validation data


def recorded_ids_check(meta, samples: Sequence[Any], what: str) -> None:
    """Refuse data whose ids do not include every validation image id the weights record."""
    from nucleikit.errors import ConfigError

    recorded = (meta.get("validation") or {}).get("images")
    if recorded is None:
        return
    missing = sorted(set(recorded) - {str(s.id) for s in samples})
    if missing:
        raise ConfigError(f"{meta.name or 'the weights'} was validated on images that are not {what} images here "
                          f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): another split")


def recorded_config(meta) -> Path:
    """The experiment configuration a pooled detector's training command names (``--experiment-config``)."""
    from nucleikit.errors import ConfigError

    words = shlex.split(str((meta.get("training") or {}).get("command", "")))
    for flag in ("--experiment-config", "--config"):
        if flag in words[:-1]:
            path = Path(words[words.index(flag) + 1])
            return path if path.is_absolute() else REPO / path
    raise ConfigError(f"{meta.name or 'the weights'} was trained by an experiment but its training command names "
                      "no configuration: give --experiment-config")


def experiment_sets(meta, config_path: Path | None) -> tuple[Any, list[str]]:
    """(collection, validation set names) of a detector trained by ``nucleikit experiment``.

    The sets are those its ``experiment_cell`` records, read through the configuration; each
    set's fingerprint (resolution, radius, image ids and point counts) must equal the recorded one.
    """
    from nucleikit.errors import ConfigError
    from nucleikit.experiments.cells import CellRunner
    from nucleikit.experiments.collection import load_collection
    from nucleikit.experiments.config import load_config

    cell = meta["experiment_cell"]
    path = config_path if config_path is not None else recorded_config(meta)
    config = load_config(path)
    names = [cell["validation"]] if isinstance(cell["validation"], str) else list(cell["validation"])
    collection = load_collection(config.datasets, {n: ("validation",) for n in names}, config.mpp)
    recorded = cell.get("data") or {}
    fingerprint = CellRunner(collection, Path()).fingerprint  # its fingerprint only: nothing is trained
    changed = [n for n in names if n in recorded and fingerprint(n) != recorded[n]]
    if changed:
        raise ConfigError(f"{path}: the data of {', '.join(changed)} differ from those {meta.name or 'the model'} "
                          "was trained and validated with (experiment_cell fingerprints)")
    return collection, names


def detection_validation(meta, config_path: Path | None, limit: int | None) -> Validation:
    """The detector's validation sets: an experiment's, or CRCHisto's fixed split (module docstring)."""
    from nucleikit.errors import ConfigError
    from nucleikit.experiments.collection import Collection, DatasetSpec, load_dataset

    if meta.get("experiment_cell") is not None:
        collection, names = experiment_sets(meta, config_path)
    elif meta.get("dataset") == "CRCHistoPhenotypes":
        crchisto = load_dataset(DatasetSpec("crchisto", "crchisto", {"split": "fixed"}), needs=("validation",))
        recorded_ids_check(meta, crchisto.samples("validation"), "CRCHisto fixed-split validation")
        collection, names = Collection({"crchisto": crchisto}, crchisto.mpp), ["crchisto"]
    else:
        raise ConfigError(f"{meta.name or 'the detector'}: no recipe for the validation images of a detector "
                          f"trained on {meta.get('dataset')!r} (CRCHisto-only and experiment-trained detectors)")
    sets = {n: dataclasses.replace(collection[n], subsets={"validation": limited(collection[n].samples("validation"),
                                                                                 limit)}) for n in names}
    return Validation("detection", "f1", "pooled F1 at each set's radius (PROTOCOL.md), the stored xi, peak "
                      "distance and floor", sets)


def segmentation_validation(meta, limit: int | None) -> Validation:
    """The segmenter's validation images (MoNuSeg per organ, else DSB2018) and its tuning criterion."""
    from nucleikit.errors import ConfigError

    dataset = str(meta.get("dataset", ""))
    if not dataset.startswith(("MoNuSeg", "DSB2018")):
        raise ConfigError(f"{meta.name or 'the segmenter'}: no recipe for the validation images of a segmenter "
                          f"trained on {dataset!r} (MoNuSeg and DSB2018)")
    samples, split, criterion, _ = label_data(meta, "validation", None)
    recorded_ids_check(meta, samples, split)
    return Validation("segmentation", criterion, f"mean {criterion} over the images, the stored post-processing",
                      {split: limited(samples, limit)})


def classification_validation(meta, limit: int | None) -> Validation:
    """The CRCHisto fixed-split validation images with classified nuclei."""
    samples = classified_images("validation", None)
    recorded_ids_check(meta, samples, "CRCHisto fixed-split validation")
    return Validation("classification", "weighted_f1", "weighted F1 of the classified validation patches",
                      {"crchisto fixed validation": limited(samples, limit)})


# --------------------------------------------------------------------------- one precision's run


def with_halo(meta, halo: int | None):
    """``meta`` with ``halo`` recorded, so a second run tiles as the first (weights storing none)."""
    from nucleikit.models.weights_meta import WeightsMeta

    if meta.halo is not None or halo is None:
        return meta
    return WeightsMeta.from_dict({**meta.to_dict(), "halo": halo}, meta.name or "weights")


def score_detection(model, meta, val: Validation, config) -> Scores:
    """F1 and maps of each set at the stored peak rule (:class:`~nucleikit.experiments.pooled.GridTables`)."""
    from nucleikit.experiments.collection import Collection
    from nucleikit.experiments.pooled import GridTables, validation_maps
    from nucleikit.infer.predict import Detector

    det = Detector(model, meta, config=config)
    maps = validation_maps(det, Collection(val.sets), list(val.sets))
    grid = GridTables(maps)
    post = {"min_distance": det.min_distance, "threshold_rel": det.threshold_rel, "threshold_abs": det.threshold_abs}
    return Scores({n: grid.score(n, post)["f1"] for n in val.sets}, {n: maps[n][0] for n in val.sets},
                  {n: {"images": len(maps[n][0]), "radius_px": maps[n][2]} for n in val.sets},
                  det.precision, det.predictor.halo)


def score_segmentation(model, meta, val: Validation, config) -> Scores:
    """Headline figure and output maps of each set at the stored post-processing."""
    from nucleikit.infer.segment import Segmenter
    from nucleikit.infer.segment_eval import run_segmenter, score_instances, score_postprocess

    seg = Segmenter(model, meta, config=config)
    figures, outputs, details = {}, {}, {}
    for name, samples in val.sets.items():
        run = run_segmenter(seg, samples, detector_seeds=seg.head == "mask" and seg.seeds == "detector")
        if seg.head == "instance":
            scored = score_postprocess(seg, run)
        else:
            scored = score_instances(seg, run, seeds=seg.seeds, threshold=seg.threshold, min_distance=seg.min_distance)
        figures[name], outputs[name], details[name] = scored[val.metric], run.maps, {"images": len(run.ids)}
    return Scores(figures, outputs, details, seg.precision, seg.predictor.halo)


def score_classification(model, meta, val: Validation, config) -> Scores:
    """Weighted F1 and class probabilities of each set's patches."""
    from nucleikit.infer.classify import Classifier

    clf = Classifier(model, meta, config=config, source=meta.name or "<classifier>")
    figures, outputs, details = {}, {}, {}
    for name, samples in val.sets.items():
        report, probs = classify_patches(clf, samples)
        figures[name], outputs[name] = report[val.metric], [probs]
        details[name] = {"images": len(samples), "patches": report["n"]}
    return Scores(figures, outputs, details, clf.precision, None)


#: task -> scorer(model, meta, validation, config) -> :class:`Scores` (without the wall time)
SCORERS: dict[str, Callable] = {"detection": score_detection, "segmentation": score_segmentation,
                                "classification": score_classification}


def run_config(task: str, precision: str, threads: int, tile: int):
    """The inference configuration of one run: the precision forced, the tiles and batches fixed."""
    if task == "classification":
        from nucleikit.infer.classify import PatchInferenceConfig

        return PatchInferenceConfig(threads=threads, precision=precision)
    from nucleikit.infer.predict import InferenceConfig

    return InferenceConfig(threads=threads, precision=precision, tile=tile, batch_size=1)


def score(model, meta, val: Validation, precision: str, *, threads: int, tile: int) -> Scores:
    """Score ``val`` with the network in ``precision`` ("fp32" or "bf16", forced whatever the CPU)."""
    t0 = time.perf_counter()
    run = SCORERS[val.task](model, meta, val, run_config(val.task, precision, threads, tile))
    if run.precision.used != precision:  # a forced precision is always used; checked, as the verdict rests on it
        raise RuntimeError(f"asked for {precision}, ran in {run.precision.used}")
    return dataclasses.replace(run, figures={k: float(v) for k, v in run.figures.items()},
                               seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- the record


def evidence(val: Validation, runs: dict, *, tolerance: float, limit: int | None, threads: int, tile: int,
             command: str) -> dict:
    """The ``bf16_evidence`` metadata of two runs (:func:`score` in fp32 and in bf16)."""
    import nucleikit
    from nucleikit.infer.precision import cpu_flags, cpu_model, native_bf16

    fp32, bf16 = runs["fp32"], runs["bf16"]
    diff = differences(fp32.figures, bf16.figures)
    sets = {name: {"fp32": fp32.figures[name], "bf16": bf16.figures[name], "difference": diff[name],
                   **fp32.details[name], "output_max_change": largest_change(fp32.outputs[name], bf16.outputs[name])}
            for name in val.sets}
    config = run_config(val.task, "fp32", threads, tile)
    tiling = {"batch_size": config.batch_size}
    if val.task != "classification":
        tiling.update(tile=config.tile, halo=fp32.halo)
    return {
        "task": val.task,
        "metric": val.metric,
        "figure": val.figure,
        "split": "validation" if limit is None else f"validation, first {limit} images of each set (--limit-images)",
        "sets": sets,
        "tolerance": tolerance,
        "precision": {p: runs[p].precision.reason for p in PRECISIONS},
        "seconds": {p: round(runs[p].seconds, 1) for p in PRECISIONS},
        "threads": threads,
        "tiling": tiling,
        "cpu": {"model": cpu_model(), "native_bf16": native_bf16(),
                "flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nucleikit": nucleikit.__version__,
        "command": command,
    }


def report_lines(name: str, val: Validation, ev: dict, ok: bool) -> list[str]:
    """What the tool prints: one line per set, the times and the verdict ``ok``."""
    lines = [f"{name}: {val.task}, {val.figure}; tolerance {ev['tolerance']:g}"]
    for set_name, s in ev["sets"].items():
        lines.append(f"  {set_name:<28} {s['images']:>4} images  fp32 {s['fp32']:.4f}  bf16 {s['bf16']:.4f}  "
                     f"difference {s['difference']:+.4f}  output change {s['output_max_change']:.2e}")
    lines.append(f"  fp32 {ev['seconds']['fp32']:.1f} s, bf16 {ev['seconds']['bf16']:.1f} s "
                 f"(bf16 {'native' if ev['cpu']['native_bf16'] else 'emulated'} on this CPU)")
    lines.append(f"bf16_ok = {str(ok).lower()}")
    return lines


# --------------------------------------------------------------------------- command line


def measure(args: argparse.Namespace, command: str) -> tuple[Path, dict, list[str]]:
    """(weights path, metadata updates, printed lines) of the verdict on ``args.weights``."""
    import torch

    from nucleikit.models.weights import load_weights, resolve_weights

    torch.set_num_threads(args.threads)
    path = resolve_weights(args.weights)
    model, meta = load_weights(path)
    if meta.task == "detection":
        val = detection_validation(meta, args.experiment_config, args.limit_images)
    elif meta.task == "segmentation":
        val = segmentation_validation(meta, args.limit_images)
    elif meta.task == "classification":
        val = classification_validation(meta, args.limit_images)
    else:
        from nucleikit.errors import WeightsError

        raise WeightsError(path, f"no bf16 verdict recipe for task {meta.task!r}")
    runs = {"fp32": score(model, meta, val, "fp32", threads=args.threads, tile=args.tile)}
    runs["bf16"] = score(model, with_halo(meta, runs["fp32"].halo), val, "bf16", threads=args.threads,
                         tile=args.tile)
    ok = holds(runs["fp32"].figures, runs["bf16"].figures, args.tolerance)
    ev = evidence(val, runs, tolerance=args.tolerance, limit=args.limit_images, threads=args.threads,
                  tile=args.tile, command=command)
    return path, {"bf16_ok": ok, "bf16_evidence": ev}, report_lines(meta.name or path.stem, val, ev, ok)


def _at_least(kind: type, low: float) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number >= ``low``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    import json

    from nucleikit.errors import NucleikitError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="a weights file or a bundled name (e.g. micronet_he)")
    ap.add_argument("--tolerance", type=_at_least(float, 0.0), default=TOLERANCE,
                    help=f"largest change of the headline figure that holds (absolute; default {TOLERANCE})")
    ap.add_argument("--limit-images", type=_at_least(int, 1), default=None, metavar="N",
                    help="score the first N validation images of each set (a quick check)")
    ap.add_argument("--threads", type=_at_least(int, 1), default=2)
    ap.add_argument("--tile", type=_at_least(int, 1), default=TILE, metavar="PX",
                    help=f"tile core side in model pixels, the same in both runs (default {TILE})")
    ap.add_argument("--experiment-config", type=Path, default=None, metavar="FILE",
                    help="a detector trained by `nucleikit experiment`: its configuration (default: the one its "
                         "training command names)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--dry-run", action="store_true", help="print the verdict and the evidence; write nothing")
    out.add_argument("--out", type=Path, default=None, help="write the weights with the verdict here")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "tools/bf16_verdict.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        path, updates, lines = measure(args, command)
        print("\n".join(lines))
        if args.dry_run:
            print(json.dumps(updates, indent=1))
            return 0
        written = set_meta(path, updates, out=args.out)
    except (NucleikitError, OSError) as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 2
    print(f"{written}: set bf16_ok = {str(updates['bf16_ok']).lower()} and bf16_evidence; tensor bytes unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
