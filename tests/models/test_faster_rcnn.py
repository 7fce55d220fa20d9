"""Tests of nucleikit.models.faster_rcnn: the network, its matching and sampling, its weights."""

from __future__ import annotations

import json
import struct

import pytest
import torch

import nucleikit.models as models
from nucleikit.errors import ConfigError
from nucleikit.models.box_ops import boxes_around
from nucleikit.models.faster_rcnn import (
    FASTER_RCNN_NUM_PARAMS,
    FasterRCNN,
    match_boxes,
    sample_labels,
)
from nucleikit.models.weights import load_weights, save_weights


def tiny(**kw):
    return FasterRCNN(width=4, hidden=32, mpp=0.5, **kw)


def test_parameter_count_spec_and_sizes():
    model = models.build_model("faster_rcnn")
    assert sum(p.numel() for p in model.parameters()) == FASTER_RCNN_NUM_PARAMS == 1_893_914
    spec = models.get_spec("faster_rcnn")
    assert (spec.task, spec.target, spec.loss, spec.mpp) == ("detection", "boxes", "faster_rcnn", 0.55)
    assert model.alignment == 16
    assert model.box_px == pytest.approx(8.0 / 0.55)
    assert model.halo % 16 == 0 and model.halo >= model.backbone.receptive_radius() + 2 * model.box_px
    assert tiny(anchor_scales=(0.75, 1.0, 1.5)).anchor_sizes == pytest.approx((12.0, 16.0, 24.0))


def test_detection_map_of_any_size():
    model = tiny().eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 45, 37))
    assert y.shape == (2, 1, 45, 37) and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert int((y > 0).sum()) <= 2 * model.settings.max_detections


def test_losses_are_finite_and_reach_every_head():
    torch.manual_seed(0)
    model = tiny().train()
    x = torch.randn(2, 3, 64, 64)
    boxes = [boxes_around(torch.tensor([[10.0, 12.0], [40.0, 30.0], [50.5, 55.0]]), 16), torch.zeros(0, 4)]
    out = model(x, boxes)
    assert set(out) == {"loss", "rpn_cls", "rpn_box", "roi_cls", "roi_box"}
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    for part in (model.backbone, model.rpn.cls, model.rpn.box, model.roi_head.cls, model.roi_head.box):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in (model.rpn.box.weight.grad, model.roi_head.box.weight.grad))


def test_image_weights_weigh_each_image_loss():
    model = tiny().eval()  # batch statistics would tie the images together
    x = torch.randn(2, 3, 48, 48)
    boxes = [boxes_around(torch.tensor([[20.0, 20.0]]), 16), boxes_around(torch.tensor([[30.0, 10.0]]), 16)]
    losses = []
    for w in ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0]):
        torch.manual_seed(3)  # the same anchors and proposals sampled each time
        losses.append(float(model(x, boxes, torch.tensor(w))["loss"].detach()))
    assert losses[0] + losses[1] == pytest.approx(losses[2], rel=1e-5)


def test_match_boxes_by_hand():
    iou = torch.tensor([[0.8, 0.1], [0.4, 0.2], [0.1, 0.25], [0.05, 0.0]])
    labels, matched = match_boxes(iou, 0.5, 0.3, best_per_target=False)
    assert labels.tolist() == [1, -1, 0, 0] and matched.tolist() == [0, 0, 1, 0]
    labels, _ = match_boxes(iou, 0.5, 0.3, best_per_target=True)
    assert labels.tolist() == [1, -1, 1, 0]  # target 1's best anchor (0.25) becomes positive
    labels, matched = match_boxes(torch.zeros(3, 0), 0.5, 0.3, best_per_target=True)
    assert labels.tolist() == [0, 0, 0] and matched.tolist() == [0, 0, 0]


def test_sample_labels_caps_the_positives():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    pos, neg = sample_labels(labels, 16, 0.25)
    assert (len(pos), len(neg)) == (4, 12)
    assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())
    assert len(set(pos.tolist())) == 4
    pos, neg = sample_labels(torch.tensor([1, 1] + [0] * 30), 16, 0.5)
    assert (len(pos), len(neg)) == (2, 14)


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="box_um"):
        FasterRCNN(box_um=0)
    with pytest.raises(ConfigError, match="anchor_scales"):
        FasterRCNN(anchor_scales=())
    with pytest.raises(ConfigError, match="width"):
        FasterRCNN(width=0)
    model = tiny()
    with pytest.raises(ConfigError, match="2 images but 1"):
        model(torch.randn(2, 3, 32, 32), [torch.zeros(0, 4)])


def test_weights_round_trip_through_safetensors(tmp_path):
    torch.manual_seed(0)
    kwargs = {"width": 4, "hidden": 32, "mpp": 0.5, "box_um": 6.0}
    model = models.build_model("faster_rcnn", **kwargs).eval()
    meta = {"name": "t", "model": "faster_rcnn", "model_kwargs": kwargs, "task": "detection", "target": "boxes",
            "mpp": 0.5, "mean": [0.5] * 3, "std": [0.25] * 3, "halo": model.halo}
    path = save_weights(tmp_path / "frcnn.safetensors", model, meta)
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])  # safetensors: a JSON header, no pickle
    assert "nucleikit" in header["__metadata__"]
    loaded, meta2 = load_weights(path)
    assert meta2["model_kwargs"]["box_um"] == 6.0 and loaded.box_px == pytest.approx(12.0)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.eval()(x))
