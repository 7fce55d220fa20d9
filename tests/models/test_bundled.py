"""The weights shipped inside the package describe themselves truthfully."""

import pytest

from nucleikit.models import build_model
from nucleikit.models.weights import bundled_weights_dir, load_weights, read_weights_meta

BUNDLED = sorted(bundled_weights_dir().glob("*.safetensors"))


def test_the_default_detector_is_bundled():
    assert {"micronet", "micronet_he"} <= {p.stem for p in BUNDLED}


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_bundled_weights_metadata_matches_reality(path):
    meta = read_weights_meta(path)
    model = build_model(meta["model"], **meta["model_kwargs"])
    assert meta["num_params"] == sum(p.numel() for p in model.parameters())
    assert path.stat().st_size < 15e6  # a few MB, inside the package
    dense = meta["task"] in ("detection", "segmentation")
    keys = ("mpp", "mean", "std", "training", "validation", "test") + (("postprocess", "halo") if dense else ())
    for key in keys:
        assert key in meta, key
    assert meta["test"].get("protocol", True) is True  # never weights shipped from a --limit-images check
    if meta["task"] == "detection":
        post = meta["postprocess"]
        assert 0 <= post["threshold_rel"] < 1 and post["min_distance"] >= 1
        # the absolute rule (xi 0) relies on its floor alone
        assert post["threshold_rel"] > 0 or post["threshold_abs"] > 0
        assert meta["halo"] % 16 == 0
        t = meta["test"]
        assert 0 < t["f1_r6"] <= t["f1_r8"] <= 1  # a larger radius never loses pairs
        p, r = t["precision_r6"], t["recall_r6"]
        assert t["f1_r6"] == pytest.approx(2 * p * r / (p + r))
    if meta["task"] == "segmentation" and meta["target"] == "instance":
        post = meta["postprocess"]
        assert 0 < post["threshold"] < 1 and post["markers"] in ("distance", "boundary") and post["min_size"] >= 0
        assert meta["halo"] % 16 == 0
        t = meta["test"]
        for key in ("aji", "pq", "dice", "dsb"):
            assert 0 < t["mean"][key] <= 1
        if meta["dataset"].startswith("MoNuSeg"):  # H&E at 0.5 um/px, tuned on mean AJI, per-organ figures
            assert meta["mpp"] == 0.5 and meta["intensity"] == "none" and meta["validation"]["criterion"] == "mean aji"
            assert len(t["per_image"]) == 8 and sorted(t["per_organ"]) == ["breast", "kidney", "lung", "prostate"]
            for key in ("aji", "pq", "dice"):
                assert t["mean"][key] == pytest.approx(sum(r[key] for r in t["per_image"]) / 8)
        else:  # DSB2018: input resolution, percentile stretch, tuned on mean DSB score
            assert meta["mpp"] is None and meta["intensity"] == "percentile"
            assert meta["validation"]["criterion"] == "mean dsb_score" and "stage1_test" in t["split"]
    elif meta["task"] == "segmentation":
        post = meta["postprocess"]
        assert 0 < post["threshold"] < 1 and post["min_distance"] >= 1 and post["min_size"] >= 0
        assert post["seeds"] in ("distance", "detector") and meta["colour"] in ("rgb", "grey")
        t = meta["test"]
        assert t["shipped_seeds"] == post["seeds"] == meta["validation"]["chosen_seeds"]
        for kind in ("distance", "detector"):
            assert t[kind]["images"] == 65
            assert 0 <= t[kind]["dsb_score"] <= t[kind]["ap50"] <= 1  # the mean over IoU 0.5..0.95 <= its first term
    if meta["task"] == "classification":
        t = meta["test"]
        assert 0 < t["weighted_f1"] <= 1 and sorted(t["classes"]) == sorted(meta["classes"])
    loaded, _ = load_weights(path)
    assert not loaded.training
