"""Turn a training run's best weights into bundled, self-describing weights.

    python tools/ship_weights.py runs/micronet_crchisto --name micronet        # a detector
    python tools/ship_weights.py runs/r2unet_dsb2018 --name r2unet              # a segmenter
    python tools/ship_weights.py runs/dcrn_crchisto --name dcrn                 # a nucleus classifier
    python tools/ship_weights.py RUNS/distill-he-w8-KEY --name micronet_he_fast \
        --experiment-config configs/experiments/distill_he.json                # a distilled detector

What is done depends on the model's task in the registry (``SHIPPERS``). Always first: the
weights are rounded through float16 storage, and everything below is measured on the weights
as shipped.

detection, pooled (``--experiment-config configs/experiments/pooled_he.json``)
    a detector trained by ``nucleikit experiment pooled``: the halo as below; xi, the peak
    distance and the floor tuned on the pooled validation images of the study's validation
    data sets (each matched at its own radius) over the finer grid below, by the study's
    ``--rule`` (default ``both``, the training loop's); the test images of every test data set
    scored once at its own radius, CRCHisto also at r = 6 and 8 px in its own pixels.
detection, distilled (``--experiment-config configs/experiments/distill_he.json``)
    a student trained by ``nucleikit experiment distill``: shipped as a pooled detector (its
    architecture arguments, e.g. MicroNet ``width`` 8, travel in ``model_kwargs``, so
    ``Detector.from_weights`` rebuilds it), plus ``distillation``: the teacher (name, SHA-256),
    GFLOP per megapixel of both networks, and per test set the student's F1 beside the F1 the
    teacher's weights record, their difference and whether it is within 0.01.
detection (CRCHisto)
    the receptive field of the trained network measured with an impulse (512 px probe, 1024 px
    if needed; relative tolerance 1e-4) and stored as the tiling halo; xi and the peak distance
    tuned again on the validation images over a finer, wider grid than the training loop's,
    then the absolute floor ``threshold_abs`` (nucleikit.train.tuning: the largest that costs
    at most 0.002 of validation F1 at that xi and of recall at the grid's lowest xi);
    the fixed-split test images scored once at r = 6 and 8 px.
segmentation (DSB2018)
    the halo as above; the foreground threshold and the watershed min_distance tuned on the
    validation images (highest mean DSB score) for distance-transform seeds, the threshold for
    seeds from the bundled ``micronet`` detector; the seed kind better on validation is shipped
    as the default; stage1_test (stage1_solution.csv) scored once with both kinds: mean and
    pooled Dice, IoU, DSB score, AP50, AJI, PQ.
segmentation, instance heads (``unet_instance`` / ``r2unet_instance``; MoNuSeg or DSB2018)
    the halo as above; the foreground threshold, the marker kind and the marker threshold of
    the marker watershed tuned at the label images' resolution on the validation images (MoNuSeg:
    the four per-organ validation images, highest mean AJI; DSB2018: the 134 validation ids,
    highest mean DSB score); the test images scored once (MoNuSeg: the eight per-organ test
    images, per image, per organ and mean; DSB2018: stage1_test).
classification (CRCHisto patches)
    the fixed-split test patches scored once (nucleikit.metrics.classification_report).

The weights are written to src/nucleikit/weights/<name>.safetensors (float16 storage) with
the training summary and test figures in their metadata, and the run's log is copied to
docs/training/<name>.log.jsonl. ``--limit-images N`` runs on the first N validation and test
images for a quick check: its figures are labelled as not protocol figures, and the weights go
to <run>/<name>.limited.safetensors (or --out) instead of the package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# A coarse grid: every setting re-runs the watershed on all 134 validation images
# (~0.04 s an image), and the DSB score varies little within 0.1 of threshold.
SEG_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
SEG_MIN_DISTANCES = (3, 4, 5, 7)
SEED_DETECTOR = "micronet"


# --------------------------------------------------------------------------- helpers


def limited(samples: Sequence[Any], limit: int | None) -> list:
    """The first ``limit`` samples (all when None)."""
    items = list(samples)
    return items if limit is None else items[:limit]


def figures_label(split: str, n: int, limit: int | None) -> dict[str, Any]:
    """What the figures were measured on; a limited run is marked as not a protocol figure."""
    if limit is None:
        return {"split": f"{split} ({n} images)", "protocol": True}
    return {"split": f"{split}, first {n} images only (--limit-images {limit})", "protocol": False,
            "note": "quick check: not a PROTOCOL.md figure"}


def output_path(run: Path, name: str, limit: int | None, out: Path | None) -> Path:
    """Where the shipped weights go: --out, else the package (full runs) or the run folder (limited)."""
    if out is not None:
        return out
    if limit is not None:
        return run / f"{name}.limited.safetensors"
    from nucleikit.models.weights import bundled_weights_dir

    return bundled_weights_dir() / f"{name}.safetensors"


def training_summary(log: list[dict], *, score_key: str, count_key: str, name: str, command: str) -> dict:
    """Budget and best validation record of a run's ``log.jsonl`` records.

    ``score_key`` is the validation figure the run kept the best weights by (e.g. ``"score"``,
    ``"val_weighted_f1"``); ``count_key`` the progress counter (``"step"`` or ``"epoch"``).
    """
    if not log:
        raise ValueError("the run's log.jsonl is empty")
    best = max(log, key=lambda rec: rec[score_key])
    return {
        f"{count_key}s": log[-1][count_key],
        f"best_{count_key}": best[count_key],
        "wall_time_min": round(log[-1]["elapsed_s"] / 60, 1),
        "command": command,
        "log": f"docs/training/{name}.log.jsonl",
    }


def float16_round_trip(model, meta: dict, folder: Path):
    """The model as float16 storage gives it back, and the largest output change on a random input."""
    import torch

    from nucleikit.models.weights import load_weights, save_weights

    tmp = folder / ".ship.f16.safetensors"
    save_weights(tmp, model, meta, storage="float16")
    shipped, _ = load_weights(tmp)
    tmp.unlink()
    torch.manual_seed(0)
    if meta.get("task") == "classification":
        x = torch.randn(8, len(meta["mean"]), int(meta["patch"]), int(meta["patch"]))
    else:
        x = torch.randn(1, len(meta["mean"]), 256, 256)
    with torch.inference_mode():
        diff = float((model.eval()(x) - shipped.eval()(x)).abs().max())
    return shipped, diff


def trained_halo(model, in_channels: int) -> int:
    """Receptive field of the trained network (impulse probe, grown until it fits).

    The impulse is tried at every phase of the network's own pooling lattice
    (``model.alignment``, declared on its registry spec).
    """
    import torch

    from nucleikit.infer.predict import model_alignment
    from nucleikit.infer.tiling import measure_halo_grown

    def forward(batch):
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    return int(measure_halo_grown(forward, in_channels=in_channels, sizes=(512, 1024), tol=1e-4,
                                  align=model_alignment(model)))


def _shared_data() -> Path:
    from nucleikit.io.datasets.base import find_shared_dir

    shared = find_shared_dir(REPO)
    if shared is None:
        sys.exit("needs ../shared/data for the validation and test figures")
    return shared / "data"


# --------------------------------------------------------------------------- per task


def ship_detector(args, model, meta: dict, log: list[dict]) -> dict:
    from nucleikit.infer.evaluate import run_detector, score_run
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.train.tuning import FLOOR_GRID, FLOOR_TOLERANCE, tune_peaks

    halo = trained_halo(model, len(meta["mean"]))
    meta = dict(meta, name=args.name, halo=halo)
    print(f"halo (trained receptive field, tol 1e-4): {halo} px")
    root = _shared_data() / "crchisto"
    val = limited(CRCHisto(root, split="fixed", subset="validation"), args.limit_images)
    det = Detector(model, meta, config=InferenceConfig(threads=args.threads))
    maps = [det.probability_map(s.load_image()) for s in val]
    tuned = tune_peaks(maps, [s.points for s in val], radius=6.0,
                       xi_grid=np.round(np.arange(0.05, 0.91, 0.025), 3), min_distance_grid=range(2, 11),
                       threshold_abs_grid=FLOOR_GRID, tolerance=FLOOR_TOLERANCE)
    meta["postprocess"] = {"threshold_rel": tuned.threshold_rel, "min_distance": tuned.min_distance,
                           "threshold_abs": tuned.threshold_abs}
    meta["validation"] = dict(meta.get("validation", {}), f1=tuned.f1, precision=tuned.precision,
                              recall=tuned.recall, radius_px=6.0, tuned_by="tools/ship_weights.py")
    print(f"validation: xi {tuned.threshold_rel}, min distance {tuned.min_distance}, "
          f"floor {tuned.threshold_abs}, F1 {tuned.f1:.4f}")
    meta["calibration"] = score_calibration(maps, [s.points for s in val], [6.0] * len(val),
                                            min_distance=tuned.min_distance, lowest_xi=0.05,
                                            fitted_on="CRCHisto fixed-split validation images, r = 6 px")
    score_key = "score" if "score" in log[0] else "val_f1"
    meta["training"] = training_summary(log, score_key=score_key, count_key="step", name=args.name,
                                        command=args.command)
    test = limited(CRCHisto(root, split="fixed", subset="test"), args.limit_images)
    det = Detector(model, meta, config=InferenceConfig(threads=args.threads))
    scored = score_run(run_detector(det, test), xi=det.threshold_rel, radii=(6.0, 8.0))
    figures = figures_label("crchisto fixed test", len(test), args.limit_images)
    for r in ("6", "8"):
        d = scored["radius"][r]
        for k in ("precision", "recall", "f1", "ed", "mean_image_f1", "tp", "fp", "fn"):
            figures[f"{k}_r{r}"] = d[k]
    meta["test"] = figures
    return meta


def score_calibration(maps, truths, radii, *, min_distance: float, lowest_xi: float, fitted_on: str) -> dict:
    """The ``calibration`` metadata (nucleikit.infer.calibration.fit_map_calibration), printed."""
    from nucleikit.infer.calibration import fit_map_calibration

    cal = fit_map_calibration(maps, truths, radii, min_distance=min_distance, lowest_xi=lowest_xi,
                              fitted_on=fitted_on)
    print(f"calibration: {cal.n_peaks} validation peaks, {len(cal.map_values)} knots, "
          f"P(true) {cal.probabilities[0]:.2f} at {cal.map_values[0]:.3g} to {cal.probabilities[-1]:.2f} at "
          f"{cal.map_values[-1]:.3g}")
    return cal.to_meta()


def ship_pooled_detector(args, model, meta: dict, log: list[dict]) -> dict:
    from nucleikit.experiments.cells import CellRunner
    from nucleikit.experiments.config import load_config, prepare
    from nucleikit.experiments.pooled import GridTables, validation_maps
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.models.weights import save_weights

    if args.limit_images is not None:
        sys.exit("--limit-images is not supported with --experiment-config")
    config = load_config(args.experiment_config)
    if config.experiment not in ("pooled", "distill"):
        sys.exit(f"{args.experiment_config} is a {config.experiment!r} study, not 'pooled' or 'distill'")
    collection = prepare(config)
    p = config.params
    halo = trained_halo(model, len(meta["mean"]))
    meta = dict(meta, name=args.name, halo=halo)
    print(f"halo (trained receptive field, tol 1e-4): {halo} px")
    det = Detector(model, meta, config=InferenceConfig(threads=args.threads))
    xi_grid = np.round(np.arange(0.05, 0.91, 0.025), 3)
    maps = validation_maps(det, collection, p.validation)
    grid = GridTables(maps)
    chosen = grid.choose(list(p.validation), args.rule, xi_grid=xi_grid, md_grid=range(2, 11))
    meta["postprocess"] = {"threshold_rel": chosen["threshold_rel"], "min_distance": chosen["min_distance"],
                           "threshold_abs": chosen["threshold_abs"]}
    per_set = {n: grid.score(n, chosen)["f1"] for n in p.validation}
    meta["validation"] = {"f1": chosen["f1"], "precision": chosen["precision"], "recall": chosen["recall"],
                          "sets": list(p.validation), "f1_per_set": per_set, "rule": args.rule,
                          "radius": "each data set's own (PROTOCOL.md)", "tuned_by": "tools/ship_weights.py"}
    print(f"validation ({args.rule}): xi {chosen['threshold_rel']}, min distance {chosen['min_distance']}, "
          f"floor {chosen['threshold_abs']}, pooled F1 {chosen['f1']:.4f}, per set {per_set}")
    meta["calibration"] = score_calibration(
        [m for v in maps.values() for m in v[0]], [t for v in maps.values() for t in v[1]],
        [v[2] for v in maps.values() for _ in v[0]], min_distance=chosen["min_distance"], lowest_xi=float(xi_grid[0]),
        fitted_on=f"validation images of {', '.join(p.validation)}, each at its own radius")
    score_key = "score" if "score" in log[0] else "val_f1"
    meta["training"] = training_summary(log, score_key=score_key, count_key="step", name=args.name,
                                        command=args.command)
    tmp = args.run / ".ship.scoring.safetensors"
    save_weights(tmp, model, meta, storage="float16")
    try:
        runner = CellRunner(collection, args.run, log=lambda _: None)
        scored = runner.score(tmp, p.tests, args.threads, False)
    finally:
        tmp.unlink()
    figures: dict[str, Any] = {"split": "per data set test images (PROTOCOL.md)", "protocol": True}
    for name, fig in scored.items():
        figures[name] = {k: fig[k] for k in ("precision", "recall", "f1", "ed", "mean_image_f1", "tp", "fp", "fn",
                                             "radius_um", "images")}
    if "crchisto" in p.tests:
        from nucleikit.infer.evaluate import run_detector, score_run

        test = collection["crchisto"].samples("test")
        det = Detector(model, meta, config=InferenceConfig(threads=args.threads))
        native = score_run(run_detector(det, test), xi=det.threshold_rel, radii=(6.0, 8.0))
        for r in ("6", "8"):
            d = native["radius"][r]
            for k in ("precision", "recall", "f1", "ed", "mean_image_f1", "tp", "fp", "fn"):
                figures[f"{k}_r{r}"] = d[k]  # the CRCHisto detectors' keys: one schema for every detector
        figures["note_r6_r8"] = ("precision/recall/f1/... _r6 and _r8: the CRCHisto fixed-split test images in "
                                 "their own pixels")
    meta["test"] = figures
    if config.experiment == "distill":
        from nucleikit.models.weights import load_weights, resolve_weights

        teacher, teacher_meta = load_weights(resolve_weights(p.teacher))
        # what the training recorded (teacher hash, pool, point weight), then the shipped comparison
        meta["distillation"] = {**meta.get("distillation", {}),
                                **distillation_record(meta, teacher_meta, model, teacher, p.tests)}
        print("distillation: " + json.dumps(meta["distillation"]["f1"]))
    return meta


def distillation_record(meta: dict, teacher_meta: dict, model, teacher, tests: Sequence[str],
                        bound: float = 0.01) -> dict:
    """What a distilled detector's metadata says about its teacher, its cost and its F1 against the teacher's.

    ``meta["test"]`` holds the student's test figures (per test set, and CRCHisto's ``f1_r6``/``f1_r8``);
    the teacher's are those its weights record (scored the same way when it was shipped).
    """
    from nucleikit.train.distill import flops_per_megapixel

    gflop, teacher_gflop = flops_per_megapixel(model), flops_per_megapixel(teacher)
    t_test = teacher_meta.get("test", {})
    f1 = {}
    for name in list(tests) + [k for k in ("f1_r6", "f1_r8") if k in meta["test"]]:
        student = meta["test"][name]["f1"] if name in tests else meta["test"][name]
        ref = t_test.get(name)
        ref = ref.get("f1") if isinstance(ref, dict) else ref
        diff = None if ref is None else student - ref
        f1[name] = {"student": student, "teacher": ref, "difference": diff,
                    "within_bound": None if diff is None else bool(diff >= -bound)}
    return {
        "teacher": teacher_meta.get("name"),
        "gflop_per_mp": round(gflop, 3),
        "teacher_gflop_per_mp": round(teacher_gflop, 3),
        "flops_ratio": round(teacher_gflop / gflop, 3),
        "bound": bound,
        "f1": f1,
        "holds": all(v["within_bound"] for v in f1.values() if v["within_bound"] is not None),
        "note": "GFLOP per megapixel: torch.utils.flop_counter, 2 FLOPs per multiply-add; teacher F1 as its "
                "weights record them",
    }


def instance_grid() -> list[dict]:
    """Post-processing values of an instance head tried on validation (a finer grid than training's)."""
    thresholds = np.round(np.arange(0.35, 0.66, 0.05), 2)
    grid = [{"threshold": float(t), "markers": "distance", "marker_threshold": float(m)}
            for t in thresholds for m in np.round(np.arange(0.3, 0.81, 0.05), 2)]
    grid += [{"threshold": float(t), "markers": "boundary", "marker_threshold": float(m)}
             for t in thresholds for m in np.round(np.arange(0.1, 0.61, 0.1), 2)]
    return grid


def label_data(meta: dict, subset: str, limit: int | None):
    """(samples, split name, criterion, organ of each id) of a segmenter's data set.

    ``subset`` is "validation" or "test". MoNuSeg weights (``dataset`` starting with "MoNuSeg"):
    the per-organ split at the weights' ``mpp_overrides``, tuned by mean AJI; otherwise DSB2018
    (validation: the 134 ids with the weights' ``labels``; test: stage1_test), tuned by mean DSB
    score, no organs.
    """
    root = _shared_data()
    if str(meta.get("dataset", "")).startswith("MoNuSeg"):
        from nucleikit.io.datasets.monuseg import per_organ_labels

        samples, organ_of = per_organ_labels(root / "monuseg", subset, mpp_overrides=meta.get("mpp_overrides", {}))
        return limited(samples, limit), f"monuseg per_organ {subset}", "aji", organ_of
    from nucleikit.io.datasets.dsb2018 import DSB2018

    if subset == "validation":
        samples = DSB2018(root / "dsb2018", subset="validation", labels=meta.get("labels", "fixed"))
        return limited(samples, limit), "dsb2018 validation", "dsb_score", {}
    samples = DSB2018(root / "dsb2018", subset="test")
    return limited(samples, limit), "dsb2018 stage1_test, stage1_solution.csv", "dsb_score", {}


def instance_data(meta: dict, limit: int | None):
    """(validation, test, split names, criterion, organ of each test id) of an instance head's data set."""
    val, val_name, criterion, _ = label_data(meta, "validation", limit)
    test, test_name, _, organ_of = label_data(meta, "test", limit)
    return val, test, (val_name, test_name), criterion, organ_of


def ship_instance_segmenter(args, model, meta: dict, log: list[dict]) -> dict:
    from nucleikit.infer.predict import InferenceConfig
    from nucleikit.infer.segment import Segmenter
    from nucleikit.infer.segment_eval import (head_labels, per_image_scores, run_segmenter, summarise_by_organ,
                                              tune_postprocess)

    halo = trained_halo(model, len(meta["mean"]))
    meta = dict(meta, name=args.name, halo=halo)
    print(f"halo (trained receptive field, tol 1e-4): {halo} px")
    seg = Segmenter(model, meta, config=InferenceConfig(threads=args.threads))
    val, test, (val_name, test_name), criterion, organ_of = instance_data(meta, args.limit_images)
    run = run_segmenter(seg, val)
    tuned = tune_postprocess(seg, run, instance_grid(), criterion=criterion)
    print(f"validation ({len(val)} images): {tuned.post}, " + ", ".join(
        f"{k} {tuned.figures[k]:.4f}" for k in ("aji", "pq", "dice", "dsb_score")))
    meta["postprocess"] = {**tuned.post, "min_size": seg.min_size}
    meta["validation"] = dict(tuned.figures, criterion=f"mean {criterion}", split=val_name,
                              images=[s.id for s in val], tuned_by="tools/ship_weights.py")
    meta["training"] = training_summary(log, score_key="score", count_key="step", name=args.name,
                                        command=args.command)
    seg = Segmenter(model, meta, config=InferenceConfig(threads=args.threads))
    run = run_segmenter(seg, test)
    per_image = per_image_scores(run.truths, head_labels(seg, run), run.ids)
    figures = {**figures_label(test_name, len(test), args.limit_images), **summarise_by_organ(per_image, organ_of)}
    print("test mean: " + ", ".join(f"{k} {v:.4f}" for k, v in figures["mean"].items()))
    meta["test"] = figures
    return meta


def ship_segmenter(args, model, meta: dict, log: list[dict]) -> dict:
    if meta.get("target") == "instance":
        return ship_instance_segmenter(args, model, meta, log)
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.infer.segment import Segmenter
    from nucleikit.infer.segment_eval import run_segmenter, score_instances, tune_instances

    halo = trained_halo(model, len(meta["mean"]))
    meta = dict(meta, name=args.name, halo=halo)
    print(f"halo (trained receptive field, tol 1e-4): {halo} px")
    config = InferenceConfig(threads=args.threads)
    detector = Detector.from_weights(SEED_DETECTOR, config=config)
    seg = Segmenter(model, meta, config=config, seeds="distance", detector=detector)
    val, _, _, _ = label_data(meta, "validation", args.limit_images)
    run = run_segmenter(seg, val, detector_seeds=True)
    print(f"validation: {len(val)} images through the network and {SEED_DETECTOR} in {run.seconds:.0f} s")
    tuned = {
        kind: tune_instances(seg, run, seeds=kind, thresholds=SEG_THRESHOLDS, min_distances=SEG_MIN_DISTANCES)
        for kind in ("distance", "detector")
    }
    for kind, t in tuned.items():
        print(f"  {kind} seeds: threshold {t.threshold}, min distance {t.min_distance}, "
              f"DSB {t.figures['dsb_score']:.4f}, Dice {t.figures['dice']:.4f}")
    chosen = max(tuned.values(), key=lambda t: (t.figures["dsb_score"], t.figures["dice"]))
    print(f"shipping {chosen.seeds} seeds (higher validation DSB score)")
    meta["postprocess"] = {
        "threshold": chosen.threshold,
        "min_distance": tuned["distance"].min_distance if chosen.seeds == "detector" else chosen.min_distance,
        "min_size": seg.min_size,
        "seeds": chosen.seeds,
        "seed_detector": SEED_DETECTOR,
        "tuned": {k: {"threshold": t.threshold, "min_distance": t.min_distance} for k, t in tuned.items()},
    }
    meta["validation"] = dict(
        meta.get("validation", {}),
        **{f"{k}_seeds": dict(t.figures) for k, t in tuned.items()},
        chosen_seeds=chosen.seeds,
        criterion="mean DSB score",
        images=[s.id for s in val],
        tuned_by="tools/ship_weights.py",
    )
    meta["training"] = training_summary(log, score_key="score", count_key="step", name=args.name,
                                        command=args.command)
    test, test_name, _, _ = label_data(meta, "test", args.limit_images)
    run = run_segmenter(seg, test, detector_seeds=True)
    figures = figures_label(test_name, len(test), args.limit_images)
    for kind, t in tuned.items():
        figures[kind] = score_instances(seg, run, seeds=kind, threshold=t.threshold, min_distance=t.min_distance)
    figures["shipped_seeds"] = chosen.seeds
    meta["test"] = figures
    return meta


def classified_images(subset: str, limit: int | None) -> list:
    """The CRCHisto fixed-split images of ``subset`` with their classified nuclei (the first ``limit``)."""
    from nucleikit.io.datasets.crchisto import CRCHisto

    return limited(CRCHisto(_shared_data() / "crchisto", split="fixed", subset=subset, task="classification"), limit)


def classify_patches(clf, samples: Sequence[Any]) -> tuple[dict, np.ndarray]:
    """(nucleikit.metrics.classification_report, (N, K) probabilities) of a classifier on the patches of ``samples``."""
    from nucleikit.metrics import classification_report
    from nucleikit.train.classify import PatchSet

    patches = PatchSet.from_samples(samples, classes=clf.classes, patch=clf.patch, mpp=clf.mpp)
    probs = clf.predict_patches(patches.patches)
    names = np.asarray(clf.classes)
    return classification_report(names[patches.labels], names[probs.argmax(axis=1)], probs, clf.classes), probs


def ship_classifier(args, model, meta: dict, log: list[dict]) -> dict:
    from nucleikit.infer.classify import Classifier, PatchInferenceConfig

    meta = dict(meta, name=args.name)
    meta["training"] = training_summary(log, score_key="val_weighted_f1", count_key="epoch", name=args.name,
                                        command=args.command)
    clf = Classifier(model, meta, config=PatchInferenceConfig(threads=args.threads))
    test = classified_images("test", args.limit_images)
    leak = sorted(set(meta.get("train_images", [])) & {s.id for s in test})
    if leak:
        # e.g. a run of another fold: its training images include fixed-split test images
        sys.exit(f"the run was trained on {len(leak)} fixed-split test image(s) ({', '.join(leak[:3])}...): "
                 "ship the fixed-split run (fold 4)")
    report, _ = classify_patches(clf, test)
    meta["test"] = {**figures_label("crchisto fixed test", len(test), args.limit_images), **report}
    print(f"test: accuracy {report['accuracy']:.4f}, weighted F1 {report['weighted_f1']:.4f}, "
          f"macro F1 {report['macro_f1']:.4f} ({report['n']} patches)")
    return meta


SHIPPERS = {"detection": ship_detector, "segmentation": ship_segmenter, "classification": ship_classifier}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run folder with best.safetensors and log.jsonl")
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", default="", help="the training command, recorded in the metadata")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit-images", type=int, default=None, metavar="N",
                    help="quick check on the first N validation and test images (not protocol figures)")
    ap.add_argument("--out", type=Path, default=None, help="weights file to write (default: see above)")
    ap.add_argument("--experiment-config", type=Path, default=None,
                    help="a detector trained by `nucleikit experiment pooled` or `distill`: its configuration")
    ap.add_argument("--rule", choices=("relative", "absolute", "both"), default="both",
                    help="pooled detectors: the threshold rule tuned on the pooled validation images")
    args = ap.parse_args()

    import torch

    from nucleikit.models import get_spec
    from nucleikit.models.weights import load_weights, save_weights

    torch.set_num_threads(args.threads)
    model, checked = load_weights(args.run / "best.safetensors")
    meta = checked.to_dict()  # the JSON object, every key kept; the shippers add to it
    task = get_spec(checked.model).task
    if task not in SHIPPERS:
        sys.exit(f"no shipping recipe for {task!r} models")
    out = output_path(args.run, args.name, args.limit_images, args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model, diff = float16_round_trip(model, meta, out.parent)
    print(f"{task}: float16 storage changes the output by at most {diff:.2e} on a random input")
    log = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines() if line.strip()]
    shipper = ship_pooled_detector if args.experiment_config is not None else SHIPPERS[task]
    meta = shipper(args, model, meta, log)
    save_weights(out, model, meta, storage="float16")
    if args.limit_images is None and args.out is None:
        shutil.copy(args.run / "log.jsonl", REPO / "docs" / "training" / f"{args.name}.log.jsonl")
    print(json.dumps(meta["test"], indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
