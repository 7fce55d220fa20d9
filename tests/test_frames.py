"""Results as pandas DataFrames (nucleikit.frames): the columns of the CSV the CLI writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nucleikit.frames import classification_dataframe, to_dataframe
from nucleikit.infer.pipelines import FileResult, TypedNuclei
from nucleikit.infer.predict import Detections
from nucleikit.infer.segment import Segmentation


def test_detections_give_x_y_score():
    det = Detections(np.array([[10.0, 2.5], [3.0, 40.0]]), np.array([0.9, 0.25], np.float32), 1.0)
    df = to_dataframe(det)
    assert list(df.columns) == ["x", "y", "score"]
    assert df["x"].tolist() == [10.0, 3.0] and df["y"].tolist() == [2.5, 40.0]
    assert df["score"].tolist() == pytest.approx([0.9, 0.25])
    empty = to_dataframe(Detections(np.zeros((0, 2)), np.zeros(0, np.float32), 0.0))
    assert list(empty.columns) == ["x", "y", "score"] and len(empty) == 0


def test_segmentation_gives_the_outlines_table_columns():
    labels = np.zeros((6, 6), np.int32)
    labels[1:3, 1:4] = 1
    m = {"label": np.array([1], np.int32), "x": np.array([2.0]), "y": np.array([1.5]), "area": np.array([6]),
         "mean_intensity": np.array([0.25])}
    df = to_dataframe(Segmentation(prob=np.zeros((6, 6), np.float32), labels=labels, measurements=m))
    assert list(df.columns) == ["id", "x", "y", "area", "mean_intensity"]
    assert df.iloc[0].tolist() == [1, 2.0, 1.5, 6, 0.25]


def test_typed_nuclei_and_classifier_output():
    typed = TypedNuclei(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, 0.75], np.float32),
                        np.array(["epi", "fib"]), np.array([[0.75, 0.25], [0.125, 0.875]], np.float32), ("epi", "fib"))
    df = to_dataframe(typed)
    assert list(df.columns) == ["x", "y", "score", "class", "class_prob"]  # analyze's <stem>_typed.csv
    assert df["class"].tolist() == ["epi", "fib"]
    assert df["class_prob"].tolist() == [0.75, 0.875]
    wide = to_dataframe(typed, probabilities=True)
    assert wide["prob_epi"].tolist() == [0.75, 0.125] and wide["prob_fib"].tolist() == [0.25, 0.875]
    # Classifier.classify returns (labels, probs): the centres and classes come from the caller
    df = classification_dataframe([[1.0, 2.0]], ["fib"], [[0.25, 0.75]], ("epi", "fib"))
    assert list(df.columns) == ["x", "y", "class", "class_prob"]
    assert df.iloc[0].tolist() == [1.0, 2.0, "fib", 0.75]


def test_a_file_result_gives_its_result():
    det = Detections(np.array([[1.0, 2.0]]), np.array([0.5], np.float32), 1.0)
    res = FileResult(path=Path("a.png"), count=1, mpp=0.5, mpp_source="model", seconds=0.0, detections=det)
    assert to_dataframe(res).equals(to_dataframe(det))


def test_something_else_is_a_type_error():
    with pytest.raises(TypeError, match="cannot make a DataFrame of a dict"):
        to_dataframe({})


def test_the_frame_matches_the_csv_the_cli_writes(tmp_path):
    from nucleikit.export import write_points_csv

    det = Detections(np.array([[10.123, 2.5], [3.0, 40.0]]), np.array([0.9, 0.25], np.float32), 1.0)
    path = write_points_csv(tmp_path / "a.csv", det.xy, columns={"score": det.scores})
    pd.testing.assert_frame_equal(pd.read_csv(path), to_dataframe(det).astype("float64").round(2), atol=1e-4)
