"""Tests of nucleikit.models.box_ops: hand-computed anchors, IoU, box coding, NMS, RoI pooling."""

from __future__ import annotations

import math

import pytest
import torch

from nucleikit.models.box_ops import (
    DELTA_CLAMP,
    box_centres,
    box_iou,
    boxes_around,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    make_anchors,
    nms,
    nms_reference,
    render_points,
    roi_align,
)


def test_anchors_are_centred_on_the_cells_in_row_column_size_order():
    a = make_anchors(2, 3, 4, [8.0, 4.0])
    assert a.shape == (2 * 3 * 2, 4)
    # cell (0, 0) covers pixels 0..3: centre 1.5; size 8 then size 4
    assert a[0].tolist() == [-2.5, -2.5, 5.5, 5.5]
    assert a[1].tolist() == [-0.5, -0.5, 3.5, 3.5]
    assert box_centres(a[2:3]).tolist() == [[5.5, 1.5]]  # cell (0, 1)
    assert box_centres(a[6:7]).tolist() == [[1.5, 5.5]]  # cell (1, 0)


def test_iou_by_hand():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 0, 5]])  # the second is degenerate (no area)
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 0, 5]])
    iou = box_iou(a, b)
    assert iou[0].tolist() == pytest.approx([1 / 7, 1.0, 0.0, 0.0])
    assert iou[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # no area, no union: 0, not NaN
    assert box_iou(a, b[:0]).shape == (2, 0)


def test_encode_decode_by_hand_and_back():
    box = torch.tensor([[2.0, 2, 6, 10]])  # centre (4, 6), 4 x 8
    ref = torch.tensor([[0.0, 0, 4, 4]])  # centre (2, 2), 4 x 4
    assert encode_boxes(box, ref)[0].tolist() == pytest.approx([0.5, 1.0, 0.0, math.log(2)])
    weighted = encode_boxes(box, ref, (10, 10, 5, 5))
    assert weighted[0].tolist() == pytest.approx([5.0, 10.0, 0.0, 5 * math.log(2)])
    assert decode_boxes(weighted, ref, (10, 10, 5, 5))[0].tolist() == pytest.approx(box[0].tolist())
    boxes = torch.rand(50, 2) * 100
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(50, 2) * 30], dim=1)
    refs = torch.roll(boxes, 1, 0)
    assert torch.allclose(decode_boxes(encode_boxes(boxes, refs), refs), boxes, atol=1e-4)


def test_decode_clamps_the_scale_change():
    ref = torch.tensor([[0.0, 0, 16, 16]])
    big = decode_boxes(torch.tensor([[0.0, 0, 100, 100]]), ref)
    assert (big[0, 2] - big[0, 0]).item() == pytest.approx(16 * math.exp(DELTA_CLAMP), rel=1e-4)  # 1000 px


def test_clip_around_and_centres():
    assert clip_boxes(torch.tensor([[-3.0, -1, 10, 20]]), 8, 6).tolist() == [[-0.5, -0.5, 5.5, 7.5]]
    boxes = boxes_around(torch.tensor([[10.0, 20.0]]), 16)
    assert boxes.tolist() == [[2.0, 12.0, 18.0, 28.0]]
    assert box_centres(boxes).tolist() == [[10.0, 20.0]]
    assert boxes_around(torch.zeros(0, 2), 16).shape == (0, 4)


def test_nms_keeps_what_a_suppressed_box_overlapped():
    # A-B IoU 0.818, B-C 0.818, A-C 0.667; scores A > B > C
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.7).tolist() == [0, 2]  # B goes; C stays, only B overlapped it that much
    assert nms(boxes, scores, 0.6).tolist() == [0]
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2]
    assert nms(boxes[[2, 0, 1]], scores[[2, 0, 1]], 0.7).tolist() == [1, 0]  # indices of the input, by score
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
def test_nms_equals_the_greedy_loop_on_random_boxes(threshold):
    g = torch.Generator().manual_seed(int(threshold * 10))
    centres = torch.rand(300, 2, generator=g) * 120
    sides = 8 + torch.rand(300, 2, generator=g) * 12
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], dim=1)
    scores = torch.round(torch.rand(300, generator=g) * 20) / 20  # many ties
    assert nms(boxes, scores, threshold).tolist() == nms_reference(boxes, scores, threshold).tolist()


def test_roi_align_of_a_ramp_gives_the_bin_centres():
    # feature value = column index (first channel) and row index (second); stride 4
    cols = torch.arange(16.0).repeat(16, 1)
    feats = torch.stack([cols, cols.T])[None]  # (1, 2, 16, 16)
    # x 7.5..23.5: bin centres 9.5, 13.5, 17.5, 21.5 -> feature coordinates (x + 0.5) / 4 - 0.5 = 2, 3, 4, 5
    # y 15.5..31.5: bin centres 17.5, 21.5, 25.5, 29.5 -> 4, 5, 6, 7
    out = roi_align(feats, torch.tensor([[7.5, 15.5, 23.5, 31.5]]), torch.tensor([0]), stride=4, output_size=4)
    assert out.shape == (1, 2, 4, 4)
    assert torch.allclose(out[0, 0], torch.tensor([2.0, 3, 4, 5]).repeat(4, 1), atol=1e-5)
    assert torch.allclose(out[0, 1], torch.tensor([4.0, 5, 6, 7])[:, None].repeat(1, 4), atol=1e-5)


def test_roi_align_reads_the_right_image_and_zeros_outside():
    feats = torch.stack([torch.full((3, 8, 8), 1.0), torch.full((3, 8, 8), 2.0)])
    rois = torch.tensor([[4.0, 4, 12, 12], [4, 4, 12, 12], [100, 100, 120, 120]])
    out = roi_align(feats, rois, torch.tensor([1, 0, 0]), stride=2, output_size=3)
    assert out.shape == (3, 3, 3, 3)
    assert torch.allclose(out[0], torch.full((3, 3, 3), 2.0)) and torch.allclose(out[1], torch.ones(3, 3, 3))
    assert float(out[2].abs().max()) == 0.0
    assert roi_align(feats, rois[:0], torch.zeros(0, dtype=torch.int64), stride=2, output_size=3).shape == (0, 3, 3, 3)


def test_render_points_at_nearest_pixel_keeping_the_larger_score():
    pts = torch.tensor([[1.4, 2.6], [0.6, 3.4], [9.0, 1.0], [-0.6, 0.0]])
    m = render_points(pts, torch.tensor([0.5, 0.7, 0.9, 0.4]), 5, 4)
    assert m.shape == (5, 4)
    assert m[3, 1].item() == pytest.approx(0.7)  # both first points round to (x 1, y 3)
    assert m.sum().item() == pytest.approx(0.7)  # x = 9 and x = -0.6 are outside
