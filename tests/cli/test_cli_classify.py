"""`nucleikit classify`, `analyze`, `evaluate typed` and `train classification`: contract and bad input."""

import json

import numpy as np
import pytest

from nucleikit.cli.main import main
from nucleikit.export import DEFAULT_CLASS_COLORS

CLASSES = ("epithelial", "fibroblast", "inflammatory", "others")


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- classify


def test_classify_writes_header_and_one_valid_row_per_point(tiny_classifier_weights, disc_png, tmp_path):
    image, centres = disc_png
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n" + "".join(f"{x:g},{y:g}\n" for x, y in centres))
    out = tmp_path / "out"
    code = main(["classify", str(image), "--points", str(points), "-o", str(out),
                 "--model", str(tiny_classifier_weights), "--threads", "1"])
    assert code == 0
    lines = (out / "discs_classified.csv").read_text().splitlines()
    assert lines[0] == "x,y,class,class_prob"
    assert len(lines) == 1 + len(centres)
    rows = [line.split(",") for line in lines[1:]]
    np.testing.assert_array_equal([[float(r[0]), float(r[1])] for r in rows], centres)
    assert {r[2] for r in rows} <= set(CLASSES)
    # the chosen class's probability is at least 1/K and at most 1
    assert all(0.25 <= float(r[3]) <= 1.0 for r in rows)
    assert sorted(p.name for p in out.iterdir()) == ["classify_run.json", "discs_classified.csv"]
    entry = json.loads((out / "classify_run.json").read_text())["inputs"][str(image)]
    assert entry["mpp_source"] == "model" and entry["precision"]["used"] == "fp32"  # no bf16 verdict: fp32


def test_classify_reads_qupath_geojson_points(tiny_classifier_weights, disc_png, tmp_path):
    image, _ = disc_png
    points = tmp_path / "centres.geojson"
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [20.5, 20.5]},
                 "properties": {"objectType": "detection", "classification": {"name": "Tumor"}}}]
    points.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "out"
    assert main(["classify", str(image), "--points", str(points), "-o", str(out),
                 "--model", str(tiny_classifier_weights), "--threads", "1"]) == 0
    lines = (out / "discs_classified.csv").read_text().splitlines()
    assert lines[1].split(",")[:2] == ["20.0", "20.0"]  # QuPath's pixel-corner offset removed
    assert lines[1].split(",")[2] in CLASSES  # the file's own class is replaced, not kept


def test_classify_point_outside_the_image_exit_2_nothing_written(tiny_classifier_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n20,20\n97.6,10\n")  # 1.1 px beyond the image's right edge (95.5)
    out = tmp_path / "out"
    code = main(["classify", str(image), "--points", str(points), "-o", str(out),
                 "--model", str(tiny_classifier_weights), "--threads", "1"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"nucleikit: error: {points}: 1 point lies outside the 96 x 80 image, e.g. (97.6, 10)"
    assert not out.exists()


def test_classify_points_less_than_a_pixel_outside_are_typed(tiny_classifier_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    points = tmp_path / "centres.csv"
    # as CRCHisto's img8: a fraction of a pixel outside (the first two); the third is on the edge pixel
    points.write_text("x,y\n20,-0.85\n95.9,79.7\n95.4,-0.4\n")
    out = tmp_path / "out"
    assert main(["classify", str(image), "--points", str(points), "-o", str(out),
                 "--model", str(tiny_classifier_weights), "--threads", "1"]) == 0
    rows = (out / "discs_classified.csv").read_text().splitlines()
    assert rows[0].startswith("x,y,class") and len(rows) == 4
    assert rows[1].startswith("20.0,-0.85,")  # the table keeps the points as given
    # the summary says so, once (issue 16)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith("; 2 points lie less than 1 px outside the image: typed at the pixel on its edge")


def test_classify_points_inside_get_no_note(tiny_classifier_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n20,20\n-0.5,79.5\n")  # on the image's outer edge: inside
    assert main(["classify", str(image), "--points", str(points), "-o", str(tmp_path / "out"),
                 "--model", str(tiny_classifier_weights), "--threads", "1"]) == 0
    assert "outside" not in capsys.readouterr().out


def test_classify_points_file_without_points_exit_2(tiny_classifier_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n")
    out = tmp_path / "out"
    code = main(["classify", str(image), "--points", str(points), "-o", str(out),
                 "--model", str(tiny_classifier_weights)])
    assert code == 2
    assert _one_error_line(capsys.readouterr().err) == f"nucleikit: error: {points}: file holds no points"
    assert not out.exists()


def test_classify_refuses_detector_weights(tiny_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n20,20\n")
    code = main(["classify", str(image), "--points", str(points), "-o", str(tmp_path / "out"),
                 "--model", str(tiny_weights)])
    assert code == 2
    assert "holds a detection model, not a nucleus classifier" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- analyze


def test_analyze_writes_typed_csv_geojson_and_overlay(
    tiny_weights, tiny_classifier_weights, disc_png, tmp_path, capsys
):
    image, _ = disc_png
    out = tmp_path / "out"
    code = main(["analyze", str(image), "-o", str(out), "--detector", str(tiny_weights),
                 "--classifier", str(tiny_classifier_weights), "--threads", "1"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["analyze_run.json", "discs_typed.csv", "discs_typed.geojson",
                                                      "discs_typed_overlay.png"]
    lines = (out / "discs_typed.csv").read_text().splitlines()
    assert lines[0] == "x,y,score,class,class_prob"
    features = json.loads((out / "discs_typed.geojson").read_text())["features"]
    assert len(features) == len(lines) - 1 > 0
    for line, feature in zip(lines[1:], features):
        x, y, score, name, prob = line.split(",")
        props = feature["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"] == {"name": name, "color": list(DEFAULT_CLASS_COLORS[name])}
        assert feature["geometry"]["coordinates"] == [float(x) + 0.5, float(y) + 0.5]
        m = props["measurements"]
        assert m["tiny score"] == pytest.approx(float(score), abs=5e-5)
        probs = [m[f"{c} probability"] for c in CLASSES]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert max(probs) == pytest.approx(float(prob), abs=5e-5)
    assert "1 of 1 inputs processed" in capsys.readouterr().out


def test_analyze_without_bundled_classifier_says_so(tiny_weights, disc_png, tmp_path, capsys, monkeypatch):
    import nucleikit.models.weights as weights

    empty = tmp_path / "bundled"
    empty.mkdir()
    monkeypatch.setattr(weights, "bundled_weights_dir", lambda: empty)
    image, _ = disc_png
    out = tmp_path / "out"
    code = main(["analyze", str(image), "-o", str(out), "--detector", str(tiny_weights)])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("nucleikit: error: no classifier weights are bundled with this nucleikit")
    assert "--classifier PATH" in line
    assert not out.exists()


def test_analyze_refuses_a_classifier_as_detector(tiny_classifier_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    code = main(["analyze", str(image), "-o", str(tmp_path / "out"), "--detector", str(tiny_classifier_weights),
                 "--classifier", str(tiny_classifier_weights)])
    assert code == 2
    assert "holds a classification model, not a nucleus detector" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_analyze_batch_goes_on_past_a_bad_file(tiny_weights, tiny_classifier_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image" * 10)
    out = tmp_path / "out"
    code = main(["analyze", str(junk), str(image), "-o", str(out), "--detector", str(tiny_weights),
                 "--classifier", str(tiny_classifier_weights), "--no-overlay", "--threads", "1"])
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["analyze_run.json", "discs_typed.csv", "discs_typed.geojson"]
    err = capsys.readouterr().err
    assert "1 failed" in err and "junk.png" in err and "Traceback" not in err


def test_analyze_bundled_sample_with_bundled_models(tmp_path):
    from nucleikit.io.images import sample_image_path
    from nucleikit.models.weights import bundled_weights_dir

    needed = [bundled_weights_dir() / f"{n}.safetensors" for n in ("micronet", "dcrn")]
    assert all(p.is_file() for p in needed), "analyze's default detector and classifier must ship"
    out = tmp_path / "out"
    assert main(["analyze", str(sample_image_path()), "-o", str(out), "--threads", "1"]) == 0
    rows = (out / "sample_he_typed.csv").read_text().splitlines()
    assert rows[0] == "x,y,score,class,class_prob" and len(rows) > 1
    assert {r.split(",")[3] for r in rows[1:]} <= set(CLASSES)


def test_analyze_stain_normalise_with_bundled_models(tmp_path):
    from nucleikit.io.images import sample_image_path

    out = tmp_path / "out"
    assert main(["analyze", str(sample_image_path()), "-o", str(out), "--threads", "1", "--no-overlay"]) == 0
    normed = tmp_path / "normed"
    assert main(["analyze", str(sample_image_path()), "-o", str(normed), "--threads", "1", "--no-overlay",
                 "--stain-normalise"]) == 0
    plain_rows = (out / "sample_he_typed.csv").read_text().splitlines()[1:]
    normed_rows = (normed / "sample_he_typed.csv").read_text().splitlines()[1:]
    # the same detections, typed from differently coloured patches
    assert [r.split(",")[:3] for r in plain_rows] == [r.split(",")[:3] for r in normed_rows]
    assert [r.split(",")[3] for r in plain_rows] != [r.split(",")[3] for r in normed_rows]


def test_classify_stain_normalise_without_training_stain_exit_2(tiny_classifier_weights, disc_png, tmp_path,
                                                                capsys):
    image, _ = disc_png
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n20,20\n")
    code = main(["classify", str(image), "--points", str(points), "-o", str(tmp_path / "out"),
                 "--model", str(tiny_classifier_weights), "--stain-normalise"])
    assert code == 2
    assert "no training stain" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- evaluate typed


def _truth_geojson(path, items):
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [x + 0.5, y + 0.5]},
                 "properties": {"objectType": "detection", "classification": {"name": c, "color": [0, 0, 0]}}}
                for x, y, c in items]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def test_evaluate_typed_hand_made_case(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    (pred / "a_typed.csv").write_text("x,y,score,class,class_prob\n10,10,0.9,epithelial,0.8\n"
                                "20,20,0.9,fibroblast,0.7\n50,50,0.9,others,0.6\n")
    _truth_geojson(truth / "a.geojson", [(11, 10, "epithelial"), (20, 21, "inflammatory")])
    assert main(["evaluate", "typed", "--pred", str(pred), "--truth", str(truth), "--radius", "6", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # F_d: 2 pairs, 1 unpaired prediction -> P 2/3, R 1, F1 0.8; one pair of the two has the right type.
    assert (r["detection"]["tp"], r["detection"]["fp"], r["detection"]["fn"]) == (2, 1, 0)
    assert r["f_d"] == pytest.approx(0.8)
    assert r["type_accuracy"] == 0.5
    assert r["per_class"]["epithelial"]["f1"] == 1.0
    assert r["per_class"]["inflammatory"]["f1"] == 0.0 and r["per_class"]["inflammatory"]["support"] == 1
    assert r["weighted_f1_c"] == 0.5  # (1 * 1 + 0 * 1) / 2


def test_evaluate_typed_unknown_class_in_geojson_exit_2(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    (pred / "a_classified.csv").write_text("x,y,class\n10,10,epithelial\n")
    _truth_geojson(truth / "a.geojson", [(11, 10, "epithelial"), (20, 21, "Tumor")])
    code = main(["evaluate", "typed", "--pred", str(pred), "--truth", str(truth), "--radius", "6"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == (f"nucleikit: error: {truth / 'a.geojson'}: unknown class 'Tumor' "
                    "(expected one of epithelial, fibroblast, inflammatory, others)")


def test_evaluate_typed_needs_classes_on_every_point(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    (pred / "a_typed.csv").write_text("x,y,score\n10,10,0.5\n")
    (truth / "a.csv").write_text("x,y,class\n10,10,epithelial\n")
    assert main(["evaluate", "typed", "--pred", str(pred), "--truth", str(truth), "--radius", "6"]) == 2
    assert "the points carry no class" in _one_error_line(capsys.readouterr().err)


@pytest.mark.data
def test_evaluate_typed_reads_crchisto_class_folders(crchisto_dir, tmp_path, capsys):
    from nucleikit.io.datasets.crchisto import class_points, merge_class_points

    pred = tmp_path / "pred"
    pred.mkdir()
    xy, labels = merge_class_points(class_points(crchisto_dir, 1))
    rows = "".join(f"{x},{y},{c}\n" for (x, y), c in zip(xy, labels))
    (pred / "img1_typed.csv").write_text("x,y,class\n" + rows)
    assert main(["evaluate", "typed", "--pred", str(pred), "--truth", str(crchisto_dir / "Classification"),
                 "--radius", "6", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["f_d"] == 1.0 and r["type_accuracy"] == 1.0 and r["detection"]["tp"] == len(xy)


# --------------------------------------------------------------------------- train classification


@pytest.mark.data
def test_train_classification_one_tiny_epoch_on_two_images(crchisto_dir, tmp_path, capsys):
    from nucleikit.infer.classify import Classifier
    from nucleikit.io.datasets.crchisto import CRCHisto

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model_kwargs": {"growth": 4, "stem_width": 8, "layers": [1, 1, 1, 1]},
                                  "patch": 16}))
    out = tmp_path / "run"
    code = main(["train", "classification", "-o", str(out), "--dataset", "crchisto",
                 "--data-root", str(crchisto_dir.parent), "--fold", "fixed", "--model", "densenet",
                 "--epochs", "1", "--batch-size", "64", "--lr", "0.01", "--sampling", "balanced",
                 "--limit-images", "2", "--config", str(config), "--threads", "1", "--no-progress"])
    assert code == 0
    assert "best validation weighted F1" in capsys.readouterr().out
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    clf = Classifier.from_weights(out / "best.safetensors")
    assert clf.classes == CLASSES and clf.patch == 16 and clf.mpp == 0.55
    assert clf.meta["model"] == "densenet"
    train_ids = CRCHisto(crchisto_dir, split="fixed", subset="train").ids[:2]
    assert clf.meta["train_images"] == sorted(train_ids)
    cfg = clf.meta["train_config"]
    assert (cfg["epochs"], cfg["batch_size"], cfg["lr"], cfg["sampling"]) == (1, 64, 0.01, "balanced")
    # the training stain is stored for --stain-normalise: H&E patches have L* well below white
    assert len(clf.meta["lab_mean"]) == 3 and 30 < clf.meta["lab_mean"][0] < 95
    assert all(v > 0 for v in clf.meta["lab_std"])


def test_train_classification_refuses_detection_options(tmp_path, capsys):
    code = main(["train", "classification", "-o", str(tmp_path / "run"), "--dataset", "crchisto", "--steps", "10"])
    assert code == 2
    assert _one_error_line(capsys.readouterr().err) == (
        "nucleikit: error: not an option of `train classification`: --steps"
    )
    assert not (tmp_path / "run").exists()


def test_train_detection_refuses_classification_options(tmp_path, capsys):
    code = main(["train", "detection", "-o", str(tmp_path / "run"), "--dataset", "crchisto", "--epochs", "3"])
    assert code == 2
    assert _one_error_line(capsys.readouterr().err) == (
        "nucleikit: error: not an option of `train detection`: --epochs"
    )


def test_train_classification_needs_crchisto(tmp_path, capsys):
    assert main(["train", "classification", "-o", str(tmp_path / "run")]) == 2
    assert "needs --dataset crchisto" in _one_error_line(capsys.readouterr().err)


@pytest.mark.data
def test_train_classification_patch_protocol_one_tiny_epoch(crchisto_dir, tmp_path, capsys):
    from nucleikit.infer.classify import Classifier
    from nucleikit.train.patches import crchisto_patch_split

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model_kwargs": {"growth": 4, "stem_width": 8, "layers": [1, 1, 1, 1]}}))
    out = tmp_path / "run"
    code = main(["train", "classification", "-o", str(out), "--dataset", "crchisto",
                 "--data-root", str(crchisto_dir.parent), "--protocol", "patch", "--model", "dcrn",
                 "--epochs", "1", "--batch-size", "64", "--lr", "0.01", "--limit-images", "3", "--patch", "16",
                 "--label-smoothing", "0.1", "--tta", "2", "--config", str(config), "--threads", "1",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "patch-level split" in printed and "of 3 images" in printed
    clf = Classifier.from_weights(out / "best.safetensors")
    meta = clf.meta
    assert meta["protocol"] == "patch" and "Alom" in meta["split"] and meta["split_images"] == 3
    assert meta["limit_images"] == 3 and clf.tta == 2 and clf.patch == 16
    assert meta["train_config"]["label_smoothing"] == 0.1 and meta["train_config"]["tta"] == 2
    parts, _ = crchisto_patch_split(crchisto_dir, patch=16, limit_images=3)
    # trained on the patch split's training patches: images of the test part among them
    assert meta["train_counts"] == parts["train"].counts().tolist()
    assert set(meta["train_images"]) & set(parts["test"].image_ids.tolist())
    assert "val_weighted_f1_one_view" in json.loads((out / "log.jsonl").read_text().splitlines()[0])


def test_train_classification_patch_protocol_refuses_a_fold(tmp_path, capsys):
    code = main(["train", "classification", "-o", str(tmp_path / "run"), "--dataset", "crchisto",
                 "--data-root", str(tmp_path), "--protocol", "patch", "--fold", "2"])
    assert code == 2
    assert "--protocol patch draws its own patch-level split" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("flags", [["--label-smoothing", "1"], ["--tta", "3"], ["--protocol", "slide"]])
def test_train_classification_refuses_bad_option_values(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "classification", "-o", str(tmp_path / "run"), "--dataset", "crchisto", *flags])
    assert exit_.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_train_detection_refuses_the_protocol(tmp_path, capsys):
    code = main(["train", "detection", "-o", str(tmp_path / "run"), "--dataset", "crchisto", "--protocol", "patch"])
    assert code == 2
    assert _one_error_line(capsys.readouterr().err) == (
        "nucleikit: error: not an option of `train detection`: --protocol"
    )


def test_classify_with_tta_writes_the_same_rows(tiny_classifier_weights, disc_png, tmp_path):
    image, centres = disc_png
    points = tmp_path / "centres.csv"
    points.write_text("x,y\n" + "".join(f"{x:g},{y:g}\n" for x, y in centres))
    out = tmp_path / "out"
    code = main(["classify", str(image), "--points", str(points), "-o", str(out),
                 "--model", str(tiny_classifier_weights), "--threads", "1", "--tta", "8"])
    assert code == 0
    lines = (out / "discs_classified.csv").read_text().splitlines()
    assert lines[0] == "x,y,class,class_prob" and len(lines) == 1 + len(centres)
