"""Output names: every command in one ``-o`` folder keeps its own files; ``evaluate`` finds its own."""

from __future__ import annotations

import json

import pytest

from nucleikit.cli.main import main
from nucleikit.export import OUTPUT_TAGS, output_stem


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _all_commands(out, image, centres, tiny_weights, tiny_classifier_weights, seg_weights, tmp_path):
    """detect, segment, analyze and classify of one image into one folder; returns detect's CSV text."""
    common = ["-o", str(out), "--threads", "1"]
    assert main(["detect", str(image), "--model", str(tiny_weights), *common]) == 0
    detected = (out / "discs.csv").read_text()
    assert main(["segment", str(image), "--model", str(seg_weights), "--threshold", "0.5", *common]) == 0
    assert main(["analyze", str(image), "--detector", str(tiny_weights), "--classifier",
                 str(tiny_classifier_weights), *common]) == 0
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n" + "".join(f"{x:g},{y:g}\n" for x, y in centres))
    assert main(["classify", str(image), "--points", str(points), "--model", str(tiny_classifier_weights),
                 *common]) == 0
    return detected


def test_output_stem_tags_every_command_but_detect():
    assert output_stem("img1", "detect") == "img1"
    assert [output_stem("img1", c) for c in ("segment", "analyze", "classify")] == \
        ["img1_outlines", "img1_typed", "img1_classified"]
    assert len(set(OUTPUT_TAGS.values())) == len(OUTPUT_TAGS)  # no two commands share a name
    with pytest.raises(ValueError, match="unknown command 'train'"):
        output_stem("img1", "train")


def test_four_commands_in_one_folder_keep_their_own_files(tiny_weights, tiny_classifier_weights,
                                                         make_segmenter_weights, disc_png, tmp_path):
    image, centres = disc_png
    out = tmp_path / "out"
    detected = _all_commands(out, image, centres, tiny_weights, tiny_classifier_weights,
                             make_segmenter_weights(model="unet"), tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "discs.csv", "discs.geojson", "discs_overlay.png", "detect_run.json",
        "discs_labels.tif", "discs_outlines.csv", "discs_outlines.geojson", "discs_outlines_overlay.png",
        "segment_run.json",
        "discs_typed.csv", "discs_typed.geojson", "discs_typed_overlay.png", "analyze_run.json",
        "discs_classified.csv", "classify_run.json",
    ])
    # detect's table survived the three later commands byte for byte
    assert (out / "discs.csv").read_text() == detected
    assert (out / "discs_outlines.csv").read_text().startswith("id,x,y,area,mean_intensity\n")
    assert (out / "discs_typed.csv").read_text().startswith("x,y,score,class,class_prob\n")
    assert (out / "discs_classified.csv").read_text().startswith("x,y,class,class_prob\n")


def test_classify_can_read_detect_output_in_the_same_folder(tiny_weights, tiny_classifier_weights, disc_png,
                                                            tmp_path):
    image, _ = disc_png
    out = tmp_path / "out"
    assert main(["detect", str(image), "--model", str(tiny_weights), "-o", str(out), "--threads", "1"]) == 0
    before = (out / "discs.csv").read_text()
    # before the tag this was refused: the output would have overwritten the points file
    assert main(["classify", str(image), "--points", str(out / "discs.csv"), "-o", str(out),
                 "--model", str(tiny_classifier_weights), "--threads", "1"]) == 0
    assert (out / "discs.csv").read_text() == before
    assert len((out / "discs_classified.csv").read_text().splitlines()) == len(before.splitlines())


# --- evaluate in a shared folder ------------------------------------------------------------------


@pytest.fixture
def shared(tmp_path):
    """A folder with every command's tables for img1, and a truth folder."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    (pred / "img1.csv").write_text("x,y,score\n10,10,0.9\n40,40,0.8\n")
    (pred / "img1_outlines.csv").write_text("id,x,y,area,mean_intensity\n1,70,70,30,0.2\n")
    (pred / "img1_typed.csv").write_text("x,y,score,class,class_prob\n10,10,0.9,epithelial,0.8\n")
    (truth / "img1.csv").write_text("x,y,class\n10,11,epithelial\n40,40,others\n")
    return pred, truth


def test_evaluate_detection_scores_only_detects_tables(shared, capsys):
    pred, truth = shared
    assert main(["evaluate", "detection", "--pred", str(pred), "--truth", str(truth), "--radius", "3",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # the outline centroid (70, 70) and the typed table were not read as more detections of img1
    assert (r["tp"], r["fp"], r["fn"], r["images"]) == (2, 0, 0, 1)


def test_evaluate_typed_scores_the_typed_table(shared, capsys):
    pred, truth = shared
    assert main(["evaluate", "typed", "--pred", str(pred), "--truth", str(truth), "--radius", "3",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["detection"]["tp"], r["detection"]["fp"], r["detection"]["fn"]) == (1, 0, 1)


def test_evaluate_detection_on_another_commands_folder_says_so(shared, capsys):
    pred, truth = shared
    (pred / "img1.csv").unlink()
    code = main(["evaluate", "detection", "--pred", str(pred), "--truth", str(truth), "--radius", "3"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"nucleikit: error: {pred}: holds ")
    assert "segment table(s) <stem>_outlines.csv" in line and "not detect's <stem>.csv" in line
    assert "evaluate segmentation scores segment's" in line and "evaluate typed scores analyze's" in line


def test_evaluate_typed_on_a_detect_folder_says_so(shared, capsys):
    pred, truth = shared
    (pred / "img1_typed.csv").unlink()
    code = main(["evaluate", "typed", "--pred", str(pred), "--truth", str(truth), "--radius", "3"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "not analyze's <stem>_typed.csv or classify's <stem>_classified.csv" in line
    assert "evaluate detection scores detect's" in line


def test_evaluate_typed_refuses_two_typed_tables_of_one_image(shared, capsys):
    pred, truth = shared
    (pred / "img1_classified.csv").write_text("x,y,class,class_prob\n10,10,others,0.5\n")
    code = main(["evaluate", "typed", "--pred", str(pred), "--truth", str(truth), "--radius", "3"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "two typed tables for img1: img1_classified.csv and img1_typed.csv" in line


def test_evaluate_segmentation_on_a_points_folder_says_so(shared, capsys):
    pred, truth = shared
    code = main(["evaluate", "segmentation", "--pred", str(pred), "--truth", str(truth)])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no prediction *_labels.tif files" in line and "`evaluate detection` scores detect's" in line
