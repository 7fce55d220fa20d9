"""Detection scores that mean the same across models: calibrated on validation images.

A detector's raw score is its map value at the peak, in the units of its
training target: MicroNet's proximity map peaks near 1 at a centre, UD-Net's
Gaussian density near 0.3, a Faster R-CNN's map holds box probabilities. So
"score 0.5" says different things for different weights. A
:class:`ScoreCalibration` maps a raw score to the **fraction of validation
detections with that score that were true nuclei** (matched one-to-one to an
annotated centre within the protocol radius, PROTOCOL.md): a monotone
(isotonic) fit of matched / not matched against the raw score, so a higher map
value never gets a lower probability.

What it is not: the probability that a nucleus is found (recall), nor a
probability on images unlike the validation images (other stains, scanners).
It is fitted on all candidate peaks above the lowest xi of the tuning grid, so
it also covers scores a user sees after lowering xi; below and above the
fitted range it is constant (the end values).

The calibration is stored in the weights' metadata (``"calibration"``) by
``tools/ship_weights.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ScoreCalibration", "fit_calibration", "fit_map_calibration", "peak_outcomes"]


@dataclass(frozen=True)
class ScoreCalibration:
    """A monotone map from raw detection scores to validation precision.

    Attributes
    ----------
    map_values : tuple of float
        Knots on the raw score axis (map units), strictly increasing.
    probabilities : tuple of float
        Fraction of true nuclei at each knot, in [0, 1], non-decreasing.
    n_peaks : int
        Detections the fit saw.
    fitted_on : str
        What they came from (data sets, radius), for the metadata.
    """

    map_values: tuple[float, ...]
    probabilities: tuple[float, ...]
    n_peaks: int = 0
    fitted_on: str = ""

    def __post_init__(self) -> None:
        from ..models.weights_meta import check_calibration  # the one rule, shared with the weights' check

        x = np.asarray(self.map_values, float)
        y = np.asarray(self.probabilities, float)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError("calibration: map_values and probabilities must be non-empty lists of one length")
        check_calibration(x.tolist(), y.tolist())

    def __call__(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of raw scores, (N,) float32 (linear between knots, constant outside)."""
        s = np.asarray(scores, dtype=np.float64)
        return np.interp(s, self.map_values, self.probabilities).astype(np.float32)

    def to_meta(self) -> dict:
        return {"map_values": [float(v) for v in self.map_values],
                "probabilities": [float(v) for v in self.probabilities],
                "n_peaks": int(self.n_peaks), "fitted_on": self.fitted_on}

    @classmethod
    def from_record(cls, record: Any) -> "ScoreCalibration":
        """From the weights' checked calibration (:class:`~nucleikit.models.weights_meta.Calibration`)."""
        return cls(tuple(float(v) for v in record.map_values), tuple(float(v) for v in record.probabilities),
                   int(record.n_peaks), str(record.fitted_on))

    @classmethod
    def from_meta(cls, d: Mapping[str, Any]) -> "ScoreCalibration":
        """From weights metadata; raises ValueError naming what is wrong."""
        if not isinstance(d, Mapping) or "map_values" not in d or "probabilities" not in d:
            raise ValueError("calibration: needs map_values and probabilities")
        return cls(tuple(float(v) for v in d["map_values"]), tuple(float(v) for v in d["probabilities"]),
                   int(d.get("n_peaks", 0)), str(d.get("fitted_on", "")))


def peak_outcomes(
    peaks: Sequence[tuple[np.ndarray, np.ndarray]],
    truths: Sequence[np.ndarray],
    radius: float | Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores of detections and whether each was a true nucleus.

    Parameters
    ----------
    peaks : sequence of ((N, 2) float, (N,) float)
        Per image, the detected centres (x, y) and their raw scores.
    truths : sequence of (M, 2) float
        Per image, the true centres in the same pixels.
    radius : float or sequence of float
        Matching radius in those pixels (one per image allowed, e.g. images of
        data sets with different radii).

    Returns
    -------
    scores : (K,) float64
    matched : (K,) bool
        True where the detection is paired with a true centre (PROTOCOL.md matching).
    """
    from ..metrics import match_points

    radii = np.broadcast_to(np.asarray(radius, float), (len(peaks),))
    scores, matched = [], []
    for (xy, sc), truth, r in zip(peaks, truths, radii, strict=True):
        m = match_points(np.asarray(xy, float).reshape(-1, 2), np.asarray(truth, float).reshape(-1, 2), float(r))
        hit = np.zeros(len(sc), bool)
        hit[m.pred_index] = True
        scores.append(np.asarray(sc, np.float64))
        matched.append(hit)
    if not scores:
        return np.zeros(0), np.zeros(0, bool)
    return np.concatenate(scores), np.concatenate(matched)


def fit_calibration(scores: Any, matched: Any, *, fitted_on: str = "", max_knots: int = 64) -> ScoreCalibration:
    """Isotonic fit of ``matched`` against ``scores``, reduced to at most ``max_knots`` knots.

    Parameters
    ----------
    scores : (K,) float
        Raw detection scores (map values at the peaks).
    matched : (K,) bool
        Whether each detection was a true nucleus (:func:`peak_outcomes`).
    fitted_on : str
        Stored with the result.
    max_knots : int
        The fit's step function (one level per block of the pool-adjacent-violators
        solution, with knots at the block's lowest and highest score) is thinned to at
        most this many knots, evenly by rank, always keeping the first and last.

    Returns
    -------
    ScoreCalibration

    Raises
    ------
    ValueError
        No detections, or shapes that disagree.
    """
    from scipy.optimize import isotonic_regression

    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(matched, bool).ravel().astype(np.float64)
    if s.size == 0 or s.shape != y.shape:
        raise ValueError(f"fit_calibration needs as many outcomes as scores (got {s.size} and {y.size}), and some")
    if max_knots < 2:
        raise ValueError("max_knots must be at least 2")
    # equal scores form one observation (weight = count), so the fit is a function of the score
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    rate = np.bincount(inverse, weights=y) / counts
    fit = isotonic_regression(rate, weights=counts, increasing=True).x
    # a block of equal fitted value spans [its lowest, its highest] score: knots at both ends, so
    # every observed score gets exactly its fitted value and the map is linear only between blocks
    starts = np.flatnonzero(np.r_[True, np.diff(fit) > 1e-12])
    ends = np.r_[starts[1:], values.size] - 1
    xs = np.column_stack([values[starts], values[ends]]).ravel()
    ys = np.repeat(fit[starts], 2)
    single = np.repeat(starts == ends, 2) & np.tile([False, True], starts.size)
    xs, ys = xs[~single], ys[~single]
    if xs.size > max_knots:
        keep = np.unique(np.round(np.linspace(0, xs.size - 1, max_knots)).astype(int))
        xs, ys = xs[keep], ys[keep]
    if xs.size == 1:  # one level: a flat map, two knots so interpolation is defined
        xs = np.array([xs[0], xs[0] + 1e-9])
        ys = np.array([ys[0], ys[0]])
    return ScoreCalibration(tuple(float(v) for v in xs), tuple(float(np.clip(v, 0, 1)) for v in ys),
                            int(s.size), fitted_on)


def fit_map_calibration(
    maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    radii: float | Sequence[float],
    *,
    min_distance: float,
    lowest_xi: float,
    fitted_on: str = "",
) -> ScoreCalibration:
    """A calibration from validation maps: every peak above ``lowest_xi * max`` at ``min_distance``.

    Parameters
    ----------
    maps : sequence of (H, W) float
        The detector's maps of the validation images, at its resolution.
    truths : sequence of (M, 2) float
        True centres (x, y) in the maps' pixels.
    radii : float or sequence of float
        Matching radius in the maps' pixels (per image allowed).
    min_distance : float
        The shipped peak distance (map pixels).
    lowest_xi : float
        The lowest xi of the tuning grid: the peaks a user who lowers xi can see are covered.
    fitted_on : str
        Stored with the result.
    """
    from ..postprocess import find_peaks

    peaks = []
    for m in maps:
        pmax = float(m.max()) if m.size else 0.0
        peaks.append(find_peaks(m, min_distance=min_distance, threshold=lowest_xi * pmax) if pmax > 0
                     else (np.zeros((0, 2)), np.zeros(0)))
    scores, matched = peak_outcomes(peaks, truths, radii)
    return fit_calibration(scores, matched, fitted_on=fitted_on)
