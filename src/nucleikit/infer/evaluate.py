"""Scoring a detector on a point-annotated data set, as PROTOCOL.md says.

Shared by the README figures (``benchmarks/detection_accuracy.py``), the
transfer experiments and users evaluating their own weights. Each image is run
once; the reported figures use the xi tuned on validation (stored with the
weights) and the precision-recall curve sweeps xi over the same predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..metrics import evaluate_points, precision_recall_curve
from .predict import Detector

__all__ = ["DetectionRun", "run_detector", "score_run"]


@dataclass(frozen=True)
class DetectionRun:
    """Candidate peaks of a detector on a list of images.

    Attributes
    ----------
    ids : list of str
    xy : list of (N_i, 2) arrays
        Candidate peaks in each image's own pixel coordinates.
    rel_scores : list of (N_i,) arrays
        Each peak's map value divided by the image's map maximum: comparing it
        with xi is the "peak above xi * max" rule.
    truths : list of (M_i, 2) arrays
    seconds : float
        Wall time of all detections.
    """

    ids: list[str]
    xy: list[np.ndarray]
    rel_scores: list[np.ndarray]
    truths: list[np.ndarray]
    seconds: float

    def at(self, xi: float) -> list[np.ndarray]:
        """Predictions kept at relative threshold ``xi`` (strictly above it)."""
        return [p[s > xi] for p, s in zip(self.xy, self.rel_scores)]


def run_detector(detector: Detector, samples: Sequence[Any], *, floor: float = 0.05) -> DetectionRun:
    """Detect candidate peaks above ``floor * max`` in every sample.

    ``samples`` have ``id``, ``points``, ``mpp`` and ``load_image()``; images
    are resampled to the detector's resolution and points mapped back.
    """
    import time

    t0 = time.perf_counter()
    ids, xys, rels, truths = [], [], [], []
    for s in samples:
        det = detector.detect(s.load_image(), mpp=s.mpp, threshold_rel=floor)
        raw = det.raw_scores
        rel = raw / det.map_max if det.map_max > 0 else raw
        ids.append(str(s.id))
        xys.append(det.xy)
        rels.append(np.asarray(rel, np.float64))
        truths.append(np.asarray(s.points, np.float64).reshape(-1, 2))
    return DetectionRun(ids, xys, rels, truths, time.perf_counter() - t0)


def score_run(
    run: DetectionRun,
    *,
    xi: float,
    radii: Sequence[float] = (6.0, 8.0),
    pr_thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """PROTOCOL figures of a run at threshold ``xi`` for each radius.

    Returns
    -------
    dict
        ``{"xi": xi, "images": n, "radius": {"6": {pooled..., "mean_image_f1",
        "per_image": {...}}, ...}, "pr_curve": {"6": {...}}}`` — JSON-ready.
    """
    preds = run.at(xi)
    out: dict[str, Any] = {"xi": float(xi), "images": len(run.ids), "radius": {}, "pr_curve": {}}
    thr = np.asarray(pr_thresholds if pr_thresholds is not None else np.round(np.arange(0.05, 0.96, 0.05), 2))
    for r in radii:
        rep = evaluate_points(preds, run.truths, float(r))
        d = rep.pooled.to_dict()
        d["mean_image_f1"] = float(rep.mean_f1)
        d["per_image"] = {i: s.to_dict() for i, s in zip(run.ids, rep.per_image)}
        out["radius"][f"{r:g}"] = d
        # strictly above xi: shift the thresholds by a hair to reuse the >= sweep
        curve = precision_recall_curve(run.xy, run.rel_scores, run.truths, float(r), np.nextafter(thr, np.inf))
        out["pr_curve"][f"{r:g}"] = {k: np.asarray(v).tolist() for k, v in curve.items()}
        out["pr_curve"][f"{r:g}"]["thresholds"] = thr.tolist()
    return out
