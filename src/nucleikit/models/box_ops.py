"""Box geometry for the box detector, in plain tensor operations (no torchvision).

Coordinate convention (as everywhere in nucleikit): (x, y) with x to the right
and y down, in pixels of the network's input, 0-based **pixel centres** (pixel
(row i, col j) has its centre at x = j, y = i and covers [j - 0.5, j + 0.5]).
A box is ``(x0, y0, x1, y1)`` in those continuous coordinates, with width
``x1 - x0`` and centre ``((x0 + x1) / 2, (y0 + y1) / 2)`` (no "+1" pixel
convention); so a 16-pixel box centred on pixel centre (10, 20) is
``(2, 12, 18, 28)``.

A feature map of stride ``s`` (cell (i, j) summarises input pixels
``[j s, j s + s - 1]``) has cell centres at ``x = j s + (s - 1) / 2``: input
coordinate x is feature coordinate ``u = (x + 0.5) / s - 0.5``.

* :func:`make_anchors` — square anchors centred on every cell of a feature map.
* :func:`box_iou` — pairwise intersection over union.
* :func:`encode_boxes`, :func:`decode_boxes` — Faster R-CNN's (dx, dy, dw, dh)
  parametrisation of a box relative to a reference box.
* :func:`clip_boxes`, :func:`boxes_around`, :func:`box_centres`.
* :func:`nms`, :func:`nms_reference` — greedy non-maximum suppression
  (matrix form, and the plain loop it is tested against).
* :func:`roi_align` — bilinear RoI pooling through ``grid_sample``.
* :func:`render_points` — scores drawn at their (rounded) centres on a map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "make_anchors",
    "box_iou",
    "encode_boxes",
    "decode_boxes",
    "clip_boxes",
    "boxes_around",
    "box_centres",
    "nms",
    "nms_reference",
    "roi_align",
    "render_points",
    "DELTA_CLAMP",
]

#: Largest log-scale change a decoded box may take (Faster R-CNN's log(1000 / 16)).
DELTA_CLAMP = math.log(1000.0 / 16)


def make_anchors(height: int, width: int, stride: int, sizes: Sequence[float]) -> torch.Tensor:
    """Square anchors of each size centred on every cell of an (height, width) feature map.

    Parameters
    ----------
    height, width : int
        Feature-map size in cells.
    stride : int
        Input pixels per cell.
    sizes : sequence of float
        Anchor sides in input pixels (A of them).

    Returns
    -------
    (height * width * A, 4) float32 tensor
        Boxes ``(x0, y0, x1, y1)``, ordered by row i, then column j, then size
        (the order of a (N, A, H, W) head output permuted to (N, H, W, A)).
        Cell (i, j)'s anchors are centred on ``(j s + (s - 1) / 2, i s + (s - 1) / 2)``.
    """
    centre = (stride - 1) / 2.0
    ys = torch.arange(height, dtype=torch.float32) * stride + centre
    xs = torch.arange(width, dtype=torch.float32) * stride + centre
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    half = torch.as_tensor([float(s) / 2 for s in sizes], dtype=torch.float32)
    cx, cy = cx[..., None], cy[..., None]
    boxes = torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)
    return boxes.reshape(-1, 4)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union of two sets of boxes.

    Parameters
    ----------
    a : (N, 4) tensor
    b : (M, 4) tensor
        Boxes ``(x0, y0, x1, y1)``.

    Returns
    -------
    (N, M) tensor
        IoU in [0, 1]; 0 for pairs whose union is empty (degenerate boxes).
    """
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes: torch.Tensor, reference: torch.Tensor,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Regression targets of ``boxes`` relative to ``reference`` (Faster R-CNN).

    ``dx = wx (x - xr) / wr``, ``dy = wy (y - yr) / hr``, ``dw = ww log(w / wr)``,
    ``dh = wh log(h / hr)``, with (x, y) box centres and (w, h) sides.

    Parameters
    ----------
    boxes, reference : (N, 4) tensors
        Boxes ``(x0, y0, x1, y1)``; reference sides must be positive.
    weights : 4 floats
        (wx, wy, ww, wh): RPNs use 1s, RoI heads (10, 10, 5, 5).

    Returns
    -------
    (N, 4) tensor of (dx, dy, dw, dh)
    """
    wx, wy, ww, wh = weights
    x, y, w, h = _centre_size(boxes)
    xr, yr, wr, hr = _centre_size(reference)
    return torch.stack([wx * (x - xr) / wr, wy * (y - yr) / hr, ww * torch.log(w / wr), wh * torch.log(h / hr)],
                       dim=-1)


def decode_boxes(deltas: torch.Tensor, reference: torch.Tensor,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Boxes from regression deltas: the inverse of :func:`encode_boxes`.

    Parameters
    ----------
    deltas : (N, 4) tensor of (dx, dy, dw, dh)
    reference : (N, 4) tensor
    weights : 4 floats
        As given to :func:`encode_boxes`.

    Returns
    -------
    (N, 4) tensor of ``(x0, y0, x1, y1)``. The log-scale changes are clamped
    to :data:`DELTA_CLAMP` so that an untrained head cannot overflow.
    """
    wx, wy, ww, wh = weights
    xr, yr, wr, hr = _centre_size(reference)
    x = deltas[..., 0] / wx * wr + xr
    y = deltas[..., 1] / wy * hr + yr
    w = torch.exp((deltas[..., 2] / ww).clamp(max=DELTA_CLAMP)) * wr
    h = torch.exp((deltas[..., 3] / wh).clamp(max=DELTA_CLAMP)) * hr
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=-1)


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes cut to the image's extent ``[-0.5, width - 0.5] x [-0.5, height - 0.5]``."""
    x = boxes[..., 0::2].clamp(-0.5, width - 0.5)
    y = boxes[..., 1::2].clamp(-0.5, height - 0.5)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def boxes_around(points: torch.Tensor, size: float) -> torch.Tensor:
    """Square boxes of side ``size`` (pixels) centred on (N, 2) points (x, y): (N, 4)."""
    points = points.reshape(-1, 2).to(torch.float32)
    half = float(size) / 2
    return torch.cat([points - half, points + half], dim=1)


def box_centres(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 2) centres (x, y) of (N, 4) boxes."""
    return torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], dim=1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, computed with whole-matrix operations.

    Boxes are visited by decreasing score (ties: lower index first); a box is
    kept unless a kept box before it overlaps it with IoU strictly above
    ``iou_threshold``. That rule fixes ``keep[i]`` from the boxes before ``i``
    alone, so iterating ``keep <- not any(keep[j] and overlap[j, i], j < i)``
    from "all kept" is exact after at most N rounds: round k settles every box
    whose chain of suppressions before it is shorter than k, and the loop
    stops at the first round that changes nothing (a few rounds in practice).
    :func:`nms_reference` is the one-box-at-a-time loop it is tested against.

    Parameters
    ----------
    boxes : (N, 4) tensor
    scores : (N,) tensor
    iou_threshold : float

    Returns
    -------
    (K,) int64 tensor
        Indices of the kept boxes, by decreasing score.
    """
    n = int(scores.numel())
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.sort(scores, descending=True, stable=True).indices
    # over[j, i]: j comes before i and overlaps it
    over = torch.triu(_overlaps(boxes[order], float(iou_threshold)), diagonal=1)
    keep = torch.ones(n, dtype=torch.bool)
    for _ in range(n):
        new = ~(over & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def _overlaps(boxes: torch.Tensor, threshold: float, rows: int = 1024) -> torch.Tensor:
    """(N, N) bool: IoU of boxes i and j strictly above ``threshold``.

    ``inter / union > t`` is tested as ``inter (1 + t) > t (area_i + area_j)``
    (no division; union = area_i + area_j - inter), one coordinate at a time and
    ``rows`` rows at a time, which keeps a few thousand proposals fast and small.
    """
    b = boxes.to(torch.float32)
    x0, y0, x1, y1 = b.unbind(dim=1)
    area = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    n = b.shape[0]
    out = torch.empty((n, n), dtype=torch.bool)
    for a in range(0, n, rows):
        z = slice(a, a + rows)
        iw = (torch.minimum(x1[z, None], x1[None]) - torch.maximum(x0[z, None], x0[None])).clamp_(min=0)
        ih = (torch.minimum(y1[z, None], y1[None]) - torch.maximum(y0[z, None], y0[None])).clamp_(min=0)
        inter = iw.mul_(ih)
        out[z] = inter.mul_(1 + threshold) > (area[z, None] + area[None]).mul_(threshold)
    return out


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """The textbook greedy NMS loop (slow; the reference :func:`nms` is tested against)."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    kept: list[int] = []
    for i in order:
        if not kept or float(box_iou(boxes[i : i + 1], boxes[kept]).max()) <= iou_threshold:
            kept.append(i)
    return torch.as_tensor(kept, dtype=torch.int64)


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    image_index: torch.Tensor,
    *,
    stride: int,
    output_size: int,
    sampling: int = 2,
) -> torch.Tensor:
    """Bilinear RoI pooling ("RoIAlign") with ``torch.nn.functional.grid_sample``.

    Each RoI is divided into ``output_size x output_size`` bins; each bin is
    the mean of ``sampling x sampling`` bilinear samples at the centres of a
    regular sub-grid of the bin. Samples outside the feature map read 0.

    Parameters
    ----------
    features : (B, C, Hf, Wf) tensor
        Feature maps of stride ``stride``.
    rois : (R, 4) tensor
        Boxes ``(x0, y0, x1, y1)`` in input pixels (module docstring).
    image_index : (R,) int tensor
        Which of the B feature maps each RoI belongs to.
    stride : int
        Input pixels per feature cell.
    output_size : int
        P, the bins per side.
    sampling : int
        Samples per bin side.

    Returns
    -------
    (R, C, P, P) tensor
        Bin (p, q) covers rows p and columns q of the RoI's grid (p down, q right).
    """
    b, c, hf, wf = features.shape
    r = rois.shape[0]
    p, s = int(output_size), int(sampling)
    out = features.new_zeros((r, c, p, p))
    if r == 0:
        return out
    # sample positions as fractions of the RoI side: centres of a (p s) grid
    t = (torch.arange(p * s, dtype=rois.dtype, device=rois.device) + 0.5) / (p * s)
    x0, y0, x1, y1 = (rois[:, k : k + 1] for k in range(4))
    xs = x0 + t[None, :] * (x1 - x0)  # (R, P s)
    ys = y0 + t[None, :] * (y1 - y0)
    # input x -> grid_sample's [-1, 1] (align_corners=False): the image extent [-0.5, s Wf - 0.5]
    gx = 2 * (xs + 0.5) / (stride * wf) - 1
    gy = 2 * (ys + 0.5) / (stride * hf) - 1
    grid = torch.stack([gx[:, None, :].expand(r, p * s, p * s), gy[:, :, None].expand(r, p * s, p * s)], dim=-1)
    for k in range(b):
        sel = torch.nonzero(image_index == k).flatten()
        if sel.numel() == 0:
            continue
        g = grid[sel].reshape(1, sel.numel() * p * s, p * s, 2).to(features.dtype)
        sampled = F.grid_sample(features[k : k + 1], g, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.reshape(c, sel.numel(), p * s, p * s).permute(1, 0, 2, 3)
        out[sel] = F.avg_pool2d(sampled, s) if s > 1 else sampled
    return out


def render_points(points: torch.Tensor, scores: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An (height, width) map holding each score at its point's nearest pixel centre, 0 elsewhere.

    Parameters
    ----------
    points : (N, 2) tensor
        (x, y) in pixels; points whose nearest pixel is outside the map are dropped.
    scores : (N,) tensor of values >= 0
        Where two points fall on one pixel the larger score is kept.

    Returns
    -------
    (height, width) tensor of ``scores``'s dtype
    """
    out = scores.new_zeros(height * width)
    if points.numel() == 0:
        return out.reshape(height, width)
    col = torch.round(points[:, 0]).long()
    row = torch.round(points[:, 1]).long()
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    index = row[inside] * width + col[inside]
    out = out.scatter_reduce(0, index, scores[inside], reduce="amax", include_self=True)
    return out.reshape(height, width)
