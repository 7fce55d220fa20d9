"""Results as pandas DataFrames: the same columns as the CSV table the CLI writes for them.

=======================================  ================================================
result                                   columns
=======================================  ================================================
:class:`~nucleikit.infer.predict.Detections`      ``x, y, score``
:class:`~nucleikit.infer.segment.Segmentation`    ``id, x, y, area, mean_intensity``
:class:`~nucleikit.infer.pipelines.TypedNuclei`   ``x, y, score, class, class_prob``
(``analyze_image``; ``score`` is NaN for given centres)  [+ ``prob_<class>`` with
                                                  ``probabilities=True``]
``Classifier.classify``'s ``(labels, probs)``     :func:`classification_dataframe`
a ``FileResult`` of the file pipelines            its detections, typed nuclei or segmentation
=======================================  ================================================

(x, y) are 0-based pixel centres of the **input** image (x right, y down), whatever
resolution the model ran at: row ``r``, column ``c`` of the array is (x, y) = (c, r). For
napari, whose points are (row, column), take ``df[["y", "x"]].to_numpy()``.

pandas is the ``pandas`` extra (``pip install "nucleikit[pandas]"``) and is imported only
here, when a frame is asked for; without it the call raises
:class:`~nucleikit.extras.MissingExtraError` naming the extra. This module imports nothing
heavy: the result classes are recognised by their attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .extras import require

__all__ = ["to_dataframe", "classification_dataframe"]


def _pandas():
    return require("pandas", "DataFrames")


def to_dataframe(result: Any, *, probabilities: bool = False):
    """One result as a DataFrame, one row per nucleus (see the module docstring for the columns).

    Parameters
    ----------
    result : Detections, Segmentation, TypedNuclei or FileResult
        What ``Detector.detect``, ``Segmenter.segment``, ``analyze_image`` or a file
        pipeline (``detect_file``, ``segment_file``, ``analyze_file``, ``classify_file``)
        returned.
    probabilities : bool
        Typed nuclei: also one ``prob_<class>`` column per class.

    Returns
    -------
    pandas.DataFrame
        Rows in the result's order; a result without nuclei gives the columns and no rows.

    Raises
    ------
    MissingExtraError
        pandas is not installed (``pip install "nucleikit[pandas]"``).
    TypeError
        ``result`` is none of the above.

    Examples
    --------
    >>> from nucleikit.infer.predict import Detections  # doctest: +SKIP
    >>> to_dataframe(Detections(np.array([[3.0, 4.0]]), np.array([0.9], np.float32), 1.0))  # doctest: +SKIP
         x    y  score
    0  3.0  4.0    0.9
    """
    # A FileResult: the result it carries (its fields are None when the pipeline did not make one).
    for inner in ("typed", "segmentation", "detections"):
        if hasattr(result, "outputs") and getattr(result, inner, None) is not None:
            return to_dataframe(getattr(result, inner), probabilities=probabilities)
    if hasattr(result, "measurements") and hasattr(result, "labels") and isinstance(result.measurements, dict):
        m = result.measurements
        return _pandas().DataFrame({"id": np.asarray(m["label"]), "x": np.asarray(m["x"], np.float64),
                                    "y": np.asarray(m["y"], np.float64), "area": np.asarray(m["area"]),
                                    "mean_intensity": np.asarray(m["mean_intensity"])})
    if hasattr(result, "probs") and hasattr(result, "classes") and hasattr(result, "xy"):
        return classification_dataframe(result.xy, result.labels, result.probs, result.classes,
                                        scores=result.scores, probabilities=probabilities)
    if hasattr(result, "xy") and hasattr(result, "scores"):
        xy = _xy(result.xy)
        return _pandas().DataFrame({"x": xy[:, 0], "y": xy[:, 1], "score": np.asarray(result.scores)})
    raise TypeError(f"cannot make a DataFrame of a {type(result).__name__}: give Detections, Segmentation, "
                    "TypedNuclei or a FileResult")


def classification_dataframe(xy: Any, labels: Any, probs: Any, classes: Sequence[str], *,
                             scores: Any = None, probabilities: bool = False):
    """Typed nuclei as a DataFrame: ``x, y[, score], class, class_prob[, prob_<class>...]``.

    Parameters
    ----------
    xy : (N, 2) array_like
        The centres given to ``Classifier.classify`` ((x, y), 0-based pixel centres).
    labels : (N,) array_like of str
        Its first return value (class of each centre).
    probs : (N, K) array_like
        Its second (class probabilities, columns in ``classes`` order).
    classes : sequence of str
        ``Classifier.classes``.
    scores : (N,) array_like or None
        Detection scores, as ``analyze`` writes them (a ``score`` column); None: no column.
    probabilities : bool
        Also one ``prob_<class>`` column per class.
    """
    xy = _xy(xy)
    probs = np.asarray(probs, dtype=np.float32).reshape(len(xy), len(classes))
    data: dict[str, Any] = {"x": xy[:, 0], "y": xy[:, 1]}
    if scores is not None:
        data["score"] = np.asarray(scores)
    data["class"] = np.asarray(labels, dtype=object).reshape(len(xy))
    data["class_prob"] = probs.max(axis=1) if len(probs) else np.zeros(0, np.float32)
    if probabilities:
        for k, name in enumerate(classes):
            data[f"prob_{name}"] = probs[:, k]
    return _pandas().DataFrame(data)


def _xy(xy: Any) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)
