"""Scoring a segmenter on a label-annotated data set, as PROTOCOL.md section 2 says.

Shared by the ship tool (tuning on validation, one score on test), the segmentation
benchmark and users scoring their own weights. Each image goes through the network once
(:func:`run_segmenter`); the post-processing is then tried on the stored maps and scored:
for mask heads thresholds, watershed distances and seed kinds (:func:`tune_instances`,
:func:`score_instances`); for instance heads any grid of
:func:`~nucleikit.postprocess.instances_from_maps` values (:func:`tune_postprocess`,
:func:`score_postprocess`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from ..metrics import evaluate_segmentation
from .segment import Segmenter

__all__ = ["SegmentationRun", "InstanceTuning", "PostprocessTuning", "run_segmenter", "instance_labels",
           "score_instances", "tune_instances", "segmentation_summary", "head_labels", "score_postprocess",
           "tune_postprocess", "per_image_scores", "SCORE_KEYS", "summarise_by_organ"]


@dataclass(frozen=True)
class SegmentationRun:
    """Probability maps of a segmenter on a list of images.

    Attributes
    ----------
    ids : list of str
    probs : list of (H'_i, W'_i) float32
        Foreground probability at the model's resolution.
    shapes : list of (H_i, W_i)
        Input image shapes (labels are scored there).
    truths : list of (H_i, W_i) int32
        Truth label images.
    seeds : list of (N_i, 2) float64, or None
        Detector peaks (x, y) in model pixels, when the run was asked for them.
    seconds : float
        Wall time of the network (and detector) over all images.
    maps : list of (K, H'_i, W'_i) float32
        Every output map (``probs`` is channel 0 of each).
    factors : list of float
        Input → model resize of each image.
    """

    ids: list[str]
    probs: list[np.ndarray]
    shapes: list[tuple[int, int]]
    truths: list[np.ndarray]
    seeds: list[np.ndarray] | None
    seconds: float
    maps: list[np.ndarray] | None = None
    factors: list[float] | None = None


def run_segmenter(segmenter: Segmenter, samples: Sequence[Any], *, detector_seeds: bool = False) -> SegmentationRun:
    """Probability maps (and optionally detector seeds) of every sample.

    ``samples`` have ``id``, ``mpp``, ``load_image(mode)`` and ``load_labels()``
    (:class:`nucleikit.io.datasets.base.LabelSample`).
    """
    t0 = time.perf_counter()
    ids, probs, shapes, truths, seeds, maps, factors = [], [], [], [], [], [], []
    for s in samples:
        pixels = s.load_image(mode="rgb")
        mpp = getattr(s, "mpp", None)
        work, factor = segmenter.prepare(pixels, mpp)
        out = segmenter.output_maps(work)
        if detector_seeds:
            seeds.append(segmenter.seed_points(pixels, mpp, factor, out.shape[1:]))
        ids.append(str(s.id))
        probs.append(out[0])
        maps.append(out)
        factors.append(factor)
        shapes.append(pixels.shape[:2])
        truths.append(s.load_labels())
    return SegmentationRun(ids, probs, shapes, truths, seeds if detector_seeds else None, time.perf_counter() - t0,
                           maps, factors)


def instance_labels(
    segmenter: Segmenter, run: SegmentationRun, *, seeds: str, threshold: float, min_distance: int
) -> list[np.ndarray]:
    """Label images of every image of ``run`` at the input's resolution."""
    if seeds == "detector" and run.seeds is None:
        raise ValueError("the run holds no detector seeds: run_segmenter(..., detector_seeds=True)")
    out = []
    for k, (prob, shape) in enumerate(zip(run.probs, run.shapes)):
        markers = run.seeds[k] if seeds == "detector" else None
        out.append(segmenter.labels_at_input(prob, shape, seeds=markers, threshold=threshold,
                                             min_distance=min_distance))
    return out


def segmentation_summary(report) -> dict[str, float]:
    """Flat figures of a :class:`~nucleikit.metrics.SegmentationReport`.

    Keys: ``images``, ``dice`` and ``iou`` (means over images), ``pooled_dice``,
    ``pooled_iou``, ``dsb_score``, ``ap50``, ``aji``, ``pq``, ``sq``, ``rq`` (means).
    """
    return {
        "images": len(report.per_image),
        "dice": report.dice,
        "pooled_dice": report.pooled_dice,
        "iou": report.iou,
        "pooled_iou": report.pooled_iou,
        "dsb_score": report.dsb,
        "ap50": report.ap50,
        "aji": report.aji,
        "pq": report.pq,
        "sq": report.sq,
        "rq": report.rq,
    }


def score_instances(
    segmenter: Segmenter, run: SegmentationRun, *, seeds: str, threshold: float, min_distance: int
) -> dict[str, float]:
    """PROTOCOL.md figures of ``run`` with the given post-processing (:func:`segmentation_summary`)."""
    preds = instance_labels(segmenter, run, seeds=seeds, threshold=threshold, min_distance=min_distance)
    return segmentation_summary(evaluate_segmentation(run.truths, preds))


@dataclass(frozen=True)
class InstanceTuning:
    """Best post-processing found on validation images.

    Attributes
    ----------
    seeds : str
    threshold : float
    min_distance : int
        Unused by detector seeds (recorded as the segmenter's value).
    figures : dict
        :func:`score_instances` at the chosen values.
    grid : list of dict
        Every tried combination with its DSB score and mean Dice.
    """

    seeds: str
    threshold: float
    min_distance: int
    figures: dict[str, float]
    grid: list[dict[str, float]]


def tune_instances(
    segmenter: Segmenter,
    run: SegmentationRun,
    *,
    seeds: str,
    thresholds: Iterable[float],
    min_distances: Iterable[int],
) -> InstanceTuning:
    """Threshold (and, for distance seeds, watershed ``min_distance``) of the highest mean DSB score.

    The DSB score (instance matching over IoU 0.50-0.95) is the selection criterion because
    it judges the instances, which both parameters shape; mean Dice breaks ties. Use
    validation images only.
    """
    mds = [int(m) for m in min_distances] if seeds == "distance" else [segmenter.min_distance]
    grid = []
    best: tuple[float, float] | None = None
    choice = None
    for th in thresholds:
        for md in mds:
            fig = score_instances(segmenter, run, seeds=seeds, threshold=float(th), min_distance=md)
            grid.append({"threshold": float(th), "min_distance": md, "dsb_score": fig["dsb_score"],
                         "dice": fig["dice"]})
            key = (fig["dsb_score"], fig["dice"])
            if best is None or key > best:
                best, choice = key, (float(th), md, fig)
    assert choice is not None, "empty tuning grid"
    return InstanceTuning(seeds=seeds, threshold=choice[0], min_distance=choice[1], figures=choice[2], grid=grid)


# --------------------------------------------------------------------------- instance heads


def head_labels(segmenter: Segmenter, run: SegmentationRun, **post: Any) -> list[np.ndarray]:
    """Label images of every image of ``run`` at the input's resolution, from an instance head's maps.

    ``post`` overrides the segmenter's tuned ``threshold``, ``markers`` and ``marker_threshold``
    (:meth:`Segmenter.instances_from_output`).
    """
    if segmenter.head != "instance" or run.maps is None:
        raise ValueError("head_labels needs an instance-head segmenter and a run holding its maps")
    return [segmenter.instances_from_output(m, shape, f, **post)
            for m, shape, f in zip(run.maps, run.shapes, run.factors)]


def score_postprocess(segmenter: Segmenter, run: SegmentationRun, **post: Any) -> dict[str, float]:
    """PROTOCOL.md figures of an instance head's ``run`` with the given post-processing."""
    return segmentation_summary(evaluate_segmentation(run.truths, head_labels(segmenter, run, **post)))


def per_image_scores(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray], ids: Sequence[str]) -> list[dict]:
    """One PROTOCOL.md record (Dice, IoU, DSB score, AP50, AJI, PQ, SQ, RQ, counts) per image."""
    report = evaluate_segmentation(list(truths), list(preds))
    return [{"id": i, **sc.to_dict()} for i, sc in zip(ids, report.per_image)]


#: The per-image scores :func:`summarise_by_organ` averages.
SCORE_KEYS = ("dice", "iou", "dsb", "ap50", "aji", "pq", "sq", "rq")


def summarise_by_organ(per_image: Sequence[dict], organ_of: dict[str, str] | None = None) -> dict:
    """``{"mean": {...}}`` of :data:`SCORE_KEYS` over ``per_image`` records (:func:`per_image_scores`).

    With ``organ_of`` (id -> organ) also ``"per_organ"`` (means over each organ's images) and
    ``"per_image"`` (the records with their organ).
    """
    out: dict[str, Any] = {"mean": {k: float(np.mean([r[k] for r in per_image])) for k in SCORE_KEYS}}
    if organ_of:
        organs = sorted({organ_of[r["id"]] for r in per_image})
        out["per_organ"] = {
            organ: {k: float(np.mean([r[k] for r in per_image if organ_of[r["id"]] == organ])) for k in SCORE_KEYS}
            for organ in organs
        }
        out["per_image"] = [{**r, "organ": organ_of[r["id"]]} for r in per_image]
    return out


@dataclass(frozen=True)
class PostprocessTuning:
    """Best instance-head post-processing found on validation images.

    Attributes
    ----------
    post : dict
        ``threshold``, ``markers``, ``marker_threshold`` of the best mean ``criterion``.
    figures : dict
        :func:`score_postprocess` at ``post``.
    grid : list of dict
        Every tried combination with its figures.
    criterion : str
    """

    post: dict[str, Any]
    figures: dict[str, float]
    grid: list[dict[str, Any]]
    criterion: str


def tune_postprocess(
    segmenter: Segmenter, run: SegmentationRun, grid: Iterable[dict[str, Any]], *, criterion: str = "aji"
) -> PostprocessTuning:
    """The combination of ``grid`` with the highest mean ``criterion`` (``"aji"``, ``"pq"``, ``"dsb_score"``, ...).

    Mean Dice breaks ties. Use validation images only.
    """
    tried = []
    best_key, best = None, None
    for post in grid:
        fig = score_postprocess(segmenter, run, **post)
        tried.append({**post, **fig})
        key = (fig[criterion], fig["dice"])
        if best_key is None or key > best_key:
            best_key, best = key, (dict(post), fig)
    if best is None:
        raise ValueError("empty tuning grid")
    return PostprocessTuning(post=best[0], figures=best[1], grid=tried, criterion=criterion)
