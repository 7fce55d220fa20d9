"""``nucleikit evaluate segmentation``: three truth layouts, hand-computed scores, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucleikit.cli.main import main
from nucleikit.io.rle import rle_encode

# Truth: two 4x4 squares. Prediction: the first square exactly, the second shifted by 2 columns
# (IoU 8/24 = 1/3 < 0.5: a miss), so at every threshold TP 1, FP 1, FN 1 -> score 1/3.
TRUTH = np.zeros((10, 12), np.uint16)
TRUTH[1:5, 1:5] = 1
TRUTH[5:9, 6:10] = 2
PRED = np.zeros((10, 12), np.uint16)
PRED[1:5, 1:5] = 7
PRED[5:9, 8:12] = 3


def _write_pred(folder, stem="a", pred=PRED):
    folder.mkdir(exist_ok=True)
    tifffile.imwrite(folder / f"{stem}_labels.tif", pred)
    return folder


def _evaluate(capsys, *args):
    code = main(["evaluate", "segmentation", *map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out) if code == 0 else None


def _check_hand_computed(result):
    assert result["images"] == 1
    # foreground: 32 truth px, 32 predicted, 24 shared
    assert result["dice"] == pytest.approx(2 * 24 / 64)
    assert result["pooled_dice"] == pytest.approx(2 * 24 / 64)
    assert result["iou"] == pytest.approx(24 / 40)
    assert result["dsb_score"] == pytest.approx(1 / 3)
    assert result["ap50"] == pytest.approx(1 / 3)
    # AJI: truth 1 takes prediction 7 (C += 16, U += 16), truth 2 its best-IoU prediction, the
    # shifted square (C += 8, U += 24); no prediction is left over
    assert result["aji"] == pytest.approx(24 / 40)
    assert result["pq"] == pytest.approx(1.0 / (1 + 0.5 + 0.5))


def test_label_image_truth(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    truth = tmp_path / "truth"
    truth.mkdir()
    Image.fromarray(TRUTH).save(truth / "a.png")
    code, result = _evaluate(capsys, "--pred", pred, "--truth", truth)
    assert code == 0
    _check_hand_computed(result)


def test_kaggle_mask_folder_truth(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    masks = tmp_path / "truth" / "a" / "masks"
    masks.mkdir(parents=True)
    (tmp_path / "truth" / "a" / "images").mkdir()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "truth" / "a" / "images" / "a.png")
    for k in (1, 2):
        Image.fromarray(((TRUTH == k) * 255).astype(np.uint8)).save(masks / f"m{k}.png")
    code, result = _evaluate(capsys, "--pred", pred, "--truth", tmp_path / "truth")
    assert code == 0
    _check_hand_computed(result)


def test_rle_csv_truth(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    rows = [f"a,{rle_encode(TRUTH == k)},10,12" for k in (1, 2)]
    csv = tmp_path / "solution.csv"
    csv.write_text("ImageId,EncodedPixels,Height,Width\n" + "\n".join(rows) + "\n")
    code, result = _evaluate(capsys, "--pred", pred, "--truth", csv)
    assert code == 0
    _check_hand_computed(result)


def test_per_image_and_text_output(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    _write_pred(pred, "b", TRUTH)
    truth = tmp_path / "truth"
    truth.mkdir()
    Image.fromarray(TRUTH).save(truth / "a.png")
    Image.fromarray(TRUTH).save(truth / "b.png")
    assert main(["evaluate", "segmentation", "--pred", str(pred), "--truth", str(truth), "--json", "--per-image"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["per_image"]["b"]["dsb"] == 1.0 and result["per_image"]["a"]["dsb"] == pytest.approx(1 / 3)
    assert result["dsb_score"] == pytest.approx((1 + 1 / 3) / 2)
    assert main(["evaluate", "segmentation", "--pred", str(pred), "--truth", str(truth)]) == 0
    assert "DSB score 0.6667" in capsys.readouterr().out


def test_size_mismatch_names_the_file(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    truth = tmp_path / "truth"
    truth.mkdir()
    Image.fromarray(TRUTH[:8]).save(truth / "a.png")
    assert main(["evaluate", "segmentation", "--pred", str(pred), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # one convention across messages: width x height (this one said H x W; issue 16)
    assert len(err) == 1 and "a.png" in err[0] and "truth is 12 x 8 px (W x H)" in err[0] and "is 12 x 10 px" in err[0]


def test_rle_size_mismatch_names_the_file(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    csv = tmp_path / "solution.csv"
    csv.write_text(f"ImageId,EncodedPixels,Height,Width\na,{rle_encode(TRUTH[:8] == 1)},8,12\n")
    assert main(["evaluate", "segmentation", "--pred", str(pred), "--truth", str(csv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "solution.csv" in err[0]


def test_missing_truth_and_empty_pred(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    (tmp_path / "truth").mkdir()
    assert main(["evaluate", "segmentation", "--pred", str(pred), "--truth", str(tmp_path / "truth")]) == 2
    assert "no truth for 1 prediction(s), e.g. a_labels.tif" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "segmentation", "--pred", str(tmp_path / "empty"), "--truth", str(tmp_path)]) == 2
    assert "no prediction" in capsys.readouterr().err


def test_radius_is_refused_for_segmentation_and_required_for_detection(tmp_path, capsys):
    pred = _write_pred(tmp_path / "pred")
    assert main(["evaluate", "segmentation", "--pred", str(pred), "--truth", str(pred), "--radius", "5"]) == 2
    assert "do not apply" in capsys.readouterr().err
    assert main(["evaluate", "detection", "--pred", str(pred), "--truth", str(pred)]) == 2
    assert "needs --radius" in capsys.readouterr().err


def test_segment_then_evaluate_round_trip(make_segmenter_weights, disc_png, tmp_path, capsys):
    """Labels written by `segment` score perfectly against themselves."""
    image, _ = disc_png
    out = tmp_path / "out"
    assert main(["segment", str(image), "-o", str(out), "--model", str(make_segmenter_weights()),
                 "--threads", "1", "--threshold", "0", "--no-overlay"]) == 0
    truth = tmp_path / "truth"
    truth.mkdir()
    tifffile.imwrite(truth / "discs.tif", tifffile.imread(out / "discs_labels.tif"))
    capsys.readouterr()
    code, result = _evaluate(capsys, "--pred", out, "--truth", truth)
    assert code == 0 and result["dsb_score"] == 1.0 and result["aji"] == 1.0

