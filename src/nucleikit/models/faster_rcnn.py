"""A compact Faster R-CNN for nucleus points (detection baseline of Xing et al. 2019, Table 1).

Ren S, He K, Girshick R, Sun J. Faster R-CNN: towards real-time object
detection with region proposal networks. NeurIPS 2015.

Nuclei are annotated as points, so the detector is trained on boxes of one
fixed physical size (``box_um`` microns, ``box_um / mpp`` pixels) centred on
the points, and a detection is the centre of a box that survives the final
non-maximum suppression. The network, all from shared blocks and plain tensor
operations (:mod:`nucleikit.models.box_ops`; no torchvision):

* **backbone** — a :class:`~nucleikit.models.blocks.ResidualEncoder` (stem and
  four stride-2 stages: w, 2w, 4w, 8w, 8w channels at strides 1..16) and a
  top-down path (1x1 lateral convolutions, nearest 2x upsampling and
  addition, FPN-style) back to one map of 4w channels at stride 4, so that an
  8-micron nucleus (16 px at 0.5 um/px) spans 4x4 cells;
* **region proposal network** — a 3x3 conv-BN-ReLU, then per cell and anchor
  an objectness logit and box deltas; anchors are squares of
  ``box_px * scale`` for each of ``anchor_scales`` (one size by default: every
  target box has the same size);
* **RoI head** — bilinear RoI pooling (:func:`~nucleikit.models.box_ops.roi_align`,
  ``roi_size x roi_size`` bins) of each proposal, two fully connected layers,
  a nucleus logit and box deltas (weights 10, 10, 5, 5).

``forward(x)`` returns a **detection map**: an (N, 1, H, W) tensor holding
each final detection's score (in [0, 1]) at the pixel nearest its box centre
and 0 elsewhere. That is the form every other nucleikit detector gives (a map
whose peaks are nuclei), so tiled inference, ``Detector``, the peak finder
(whose ``xi * max`` rule then thresholds the scores relative to the image's
best, and whose minimum distance suppresses detections closer than it), the
validation tuning and the evaluations run it unchanged; centres are rounded
to the nearest pixel, as other detectors' peaks are. ``forward(x, boxes)``
returns the training losses instead (see :meth:`FasterRCNN.forward`).

Tiling: the output at a pixel depends on the image within :attr:`FasterRCNN.halo`
pixels (a bound from the layer sizes, not an impulse measurement: a
suppression or a top-k choice has no impulse response). The proposal caps
(:class:`RCNNSettings`) act per tile, so a tiled run equals an untiled one
when no cap binds, which the defaults make the usual case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .blocks import ConvBNAct, ResidualEncoder, pad_to_match
from .box_ops import (
    box_centres,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    make_anchors,
    nms,
    render_points,
    roi_align,
)
from .registry import register_model

__all__ = ["RCNNSettings", "FasterRCNN", "faster_rcnn", "FASTER_RCNN_NUM_PARAMS", "match_boxes", "sample_labels"]

#: Exact parameter count of ``faster_rcnn()`` (width 16, one anchor size, 7x7 RoIs, 3 in).
FASTER_RCNN_NUM_PARAMS = 1_893_914

_STRIDE = 4  # the map the RPN and the RoI head read
_ALIGN = 16  # four stride-2 stages
_ROI_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@dataclass(frozen=True)
class RCNNSettings:
    """Matching, sampling and suppression settings (Faster R-CNN's, adapted to nuclei).

    Attributes
    ----------
    rpn_fg_iou, rpn_bg_iou : float
        An anchor is positive at IoU >= fg with a target box (and the best
        anchors of each box are positive whatever their IoU), negative below
        bg, ignored between. 0.5 rather than 0.7: a 16-px box 2 px off a
        stride-4 anchor already has IoU 0.62.
    rpn_batch, rpn_positive_fraction : int, float
        Anchors sampled per image for the RPN loss, at most this share positive.
    rpn_nms_iou : float
        Suppression among proposals.
    pre_nms_train, post_nms_train, pre_nms_test, post_nms_test : int
        Proposals kept per image before / after that suppression.
    rpn_min_score : float
        At inference, anchors below this objectness are not proposed.
    roi_fg_iou : float
        A proposal is a nucleus for the RoI head at IoU >= this, else background.
    roi_batch, roi_positive_fraction : int, float
        Proposals sampled per image for the RoI head's loss.
    score_min : float
        Detections below this score are dropped before the final suppression.
    nms_iou : float
        Final suppression: two 16-px boxes 8 px apart have IoU 0.33, so 0.4
        keeps touching nuclei apart and merges duplicates of one nucleus.
    max_detections : int
        Per image (per tile in tiled inference).
    """

    rpn_fg_iou: float = 0.5
    rpn_bg_iou: float = 0.3
    rpn_batch: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_nms_iou: float = 0.7
    pre_nms_train: int = 2000
    post_nms_train: int = 512
    pre_nms_test: int = 6000
    post_nms_test: int = 2000
    rpn_min_score: float = 0.01
    roi_fg_iou: float = 0.5
    roi_batch: int = 128
    roi_positive_fraction: float = 0.5
    score_min: float = 0.01
    nms_iou: float = 0.4
    max_detections: int = 2000


class _Backbone(nn.Module):
    """Residual encoder to stride 16 and a top-down path back to stride 4.

    (N, C, H, W), H and W multiples of 16 -> (N, 4w, H/4, W/4).
    """

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.encoder = ResidualEncoder(in_channels, (w, 2 * w, 4 * w, 8 * w, 8 * w))
        self.channels = 4 * w
        self.lateral = nn.ModuleList(nn.Conv2d(c, self.channels, 1) for c in (4 * w, 8 * w, 8 * w))
        self.smooth = ConvBNAct(self.channels, self.channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)[2:]  # strides 4, 8, 16
        p = self.lateral[2](feats[2])
        for k in (1, 0):
            lat = self.lateral[k](feats[k])
            p = pad_to_match(F.interpolate(p, scale_factor=2, mode="nearest"), lat) + lat
        return self.smooth(p)

    @staticmethod
    def receptive_radius() -> int:
        """Input pixels on each side of a stride-4 cell that can reach it (a bound).

        Stem 3x3: 1; stage k (input stride s = 2**(k-1)): its stride-2 3x3 conv
        s, its residual unit's two 3x3 convs 2 * 2s; stages 1-4: 5 (1+2+4+8);
        nearest upsampling from stride 16: 8; the smoothing and RPN 3x3 convs at
        stride 4: 4 each.
        """
        return 1 + 5 * (1 + 2 + 4 + 8) + 8 + 4 + 4


class _RPNHead(nn.Module):
    """(N, C, h, w) -> objectness logits (N, A, h, w) and box deltas (N, 4A, h, w)."""

    def __init__(self, channels: int, anchors: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(channels, channels, 3)
        self.cls = nn.Conv2d(channels, anchors, 1)
        self.box = nn.Conv2d(channels, 4 * anchors, 1)
        for layer in (self.cls, self.box):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        return self.cls(h), self.box(h)


class _RoIHead(nn.Module):
    """(R, C, P, P) pooled features -> nucleus logits (R,) and box deltas (R, 4)."""

    def __init__(self, channels: int, roi_size: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * roi_size * roi_size, hidden), nn.ReLU(),
                                nn.Linear(hidden, hidden), nn.ReLU())
        self.cls = nn.Linear(hidden, 1)
        self.box = nn.Linear(hidden, 4)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(x)
        return self.cls(h)[:, 0], self.box(h)


def match_boxes(iou: torch.Tensor, fg: float, bg: float, *, best_per_target: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Label candidates (anchors or proposals) against target boxes.

    Parameters
    ----------
    iou : (N, G) tensor
        IoU of N candidates with G targets (G may be 0).
    fg, bg : float
        Positive at IoU >= fg, negative below bg, ignored (-1) in between.
    best_per_target : bool
        Also make positive, for each target, the candidates of highest IoU with
        it (if above 0), so that no target is left without a positive anchor.

    Returns
    -------
    labels : (N,) int64 in {-1, 0, 1}
    matched : (N,) int64
        Index of each candidate's target of highest IoU (0 when G = 0).
    """
    n, g = iou.shape
    if g == 0:
        return torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64)
    best, matched = iou.max(dim=1)
    labels = torch.full((n,), -1, dtype=torch.int64)
    labels[best < bg] = 0
    labels[best >= fg] = 1
    if best_per_target:
        top = iou.max(dim=0).values
        is_top = (iou == top[None, :]) & (top[None, :] > 0)
        labels[is_top.any(dim=1)] = 1
    return labels, matched


def sample_labels(labels: torch.Tensor, batch: int, positive_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Random positives (at most ``batch * positive_fraction``) and negatives (the rest of ``batch``).

    Uses torch's global generator (seeded by the training loop).

    Returns
    -------
    positive, negative : int64 index tensors into ``labels``
    """
    pos = torch.nonzero(labels == 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    n_pos = min(pos.numel(), int(batch * positive_fraction))
    n_neg = min(neg.numel(), batch - n_pos)
    return pos[torch.randperm(pos.numel())[:n_pos]], neg[torch.randperm(neg.numel())[:n_neg]]


class FasterRCNN(nn.Module):
    """Compact Faster R-CNN for nuclei (module docstring).

    Parameters
    ----------
    in_channels : int
        Image channels.
    width : int
        Stem channels w of the backbone (stages 2w, 4w, 8w, 8w; RPN and RoI
        features 4w).
    box_um : float
        Side of the target boxes in microns (a typical nucleus diameter).
    mpp : float
        Microns per pixel of the network's input (its training resolution):
        boxes and anchors are ``box_um / mpp`` pixels.
    anchor_scales : sequence of float
        Anchor sides as multiples of the box side (e.g. ``(0.75, 1.0, 1.33)``
        for three sizes).
    roi_size : int
        RoI pooling bins per side.
    hidden : int
        Width of the RoI head's fully connected layers.
    settings : RCNNSettings or None
        Matching, sampling and suppression (not saved with weights; defaults).

    Attributes
    ----------
    box_px : float
        Box side in input pixels.
    halo : int
        Context, in input pixels, that tiled inference must read around a
        tile (a multiple of 16).
    """

    def __init__(self, *, in_channels: int = 3, width: int = 16, box_um: float = 8.0, mpp: float = 0.55,
                 anchor_scales: Sequence[float] = (1.0,), roi_size: int = 7, hidden: int = 256,
                 settings: RCNNSettings | None = None) -> None:
        super().__init__()
        for key, value in {"in_channels": in_channels, "width": width, "roi_size": roi_size,
                           "hidden": hidden}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        scales = [float(s) for s in anchor_scales]
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ConfigError(f"anchor_scales must be positive numbers, got {anchor_scales!r}")
        for key, value in {"box_um": box_um, "mpp": mpp}.items():
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value > 0):
                raise ConfigError(f"{key} must be a positive number, got {value!r}")
        self.box_px = float(box_um) / float(mpp)
        self.anchor_sizes = tuple(self.box_px * s for s in scales)
        self.roi_size = roi_size
        self.settings = settings or RCNNSettings()
        self.backbone = _Backbone(in_channels, width)
        self.rpn = _RPNHead(self.backbone.channels, len(scales))
        self.roi_head = _RoIHead(self.backbone.channels, roi_size, hidden)
        reach = _Backbone.receptive_radius() + 2 * max(self.anchor_sizes)
        self.halo = int(math.ceil(reach / _ALIGN) * _ALIGN)

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, boxes: Sequence[torch.Tensor] | None = None,
                weights: torch.Tensor | None = None):
        """Detection map, or training losses.

        Parameters
        ----------
        x : (N, C, H, W) float tensor
            Standardised images; any H, W >= 1 (padded at the bottom/right to a
            multiple of 16 inside).
        boxes : None or sequence of N (G_i, 4) tensors
            Target boxes ``(x0, y0, x1, y1)`` of each image (G_i may be 0).
        weights : (N,) tensor or None
            Loss weight of each image (default 1).

        Returns
        -------
        (N, 1, H, W) float32 tensor in [0, 1]
            Without ``boxes``: the detection map (module docstring).
        dict of scalar tensors
            With ``boxes``: ``loss`` (the weighted mean over images of the sum
            below), ``rpn_cls``, ``rpn_box``, ``roi_cls``, ``roi_box`` (means
            over images, detached).
        """
        n, _, h, w = x.shape
        ph, pw = -h % _ALIGN, -w % _ALIGN
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feat = self.backbone(x)
        logits, deltas = self.rpn(feat)
        a, hf, wf = logits.shape[1], logits.shape[2], logits.shape[3]
        anchors = make_anchors(hf, wf, _STRIDE, self.anchor_sizes).to(x.device)
        obj = logits.float().permute(0, 2, 3, 1).reshape(n, -1)
        reg = deltas.float().reshape(n, a, 4, hf, wf).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        training = boxes is not None
        proposals = [self._proposals(anchors, obj[i].detach(), reg[i].detach(), h, w, training=training)
                     for i in range(n)]
        if not training:
            return self._detection_map(feat.float(), proposals, h, w)
        if len(boxes) != n:
            raise ConfigError(f"{n} images but {len(boxes)} sets of target boxes")
        return self._losses(feat.float(), anchors, obj, reg, proposals, boxes, weights)

    def _proposals(self, anchors: torch.Tensor, scores: torch.Tensor, deltas: torch.Tensor, h: int, w: int, *,
                   training: bool) -> torch.Tensor:
        """(P, 4) proposal boxes of one image: top anchors, decoded, clipped, suppressed."""
        s = self.settings
        pre, post = (s.pre_nms_train, s.post_nms_train) if training else (s.pre_nms_test, s.post_nms_test)
        if not training:
            keep = torch.nonzero(torch.sigmoid(scores) >= s.rpn_min_score).flatten()
            scores, deltas, anchors = scores[keep], deltas[keep], anchors[keep]
        top = torch.topk(scores, min(pre, scores.numel())).indices
        b = clip_boxes(decode_boxes(deltas[top], anchors[top]), h, w)
        sc = scores[top]
        ok = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
        b, sc = b[ok], sc[ok]
        return b[nms(b, sc, s.rpn_nms_iou)[:post]]

    def _roi_outputs(self, feat: torch.Tensor, rois: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """RoI head on per-image boxes: (R,) logits, (R, 4) deltas, (R,) image index."""
        index = torch.cat([torch.full((len(r),), i, dtype=torch.int64) for i, r in enumerate(rois)])
        pooled = roi_align(feat, torch.cat(rois), index, stride=_STRIDE, output_size=self.roi_size)
        cls, reg = self.roi_head(pooled)
        return cls.float(), reg.float(), index

    def _detection_map(self, feat: torch.Tensor, proposals: list[torch.Tensor], h: int, w: int) -> torch.Tensor:
        """Score each proposal, refine its box, suppress, and draw the centres (N, 1, h, w)."""
        s = self.settings
        cls, reg, index = self._roi_outputs(feat, proposals)
        scores = torch.sigmoid(cls)
        boxes = clip_boxes(decode_boxes(reg, torch.cat(proposals), _ROI_WEIGHTS), h, w)
        maps = []
        for i in range(len(proposals)):
            sel = torch.nonzero((index == i) & (scores > s.score_min)).flatten()
            b, sc = boxes[sel], scores[sel]
            keep = nms(b, sc, s.nms_iou)[: s.max_detections]
            maps.append(render_points(box_centres(b[keep]), sc[keep], h, w))
        return torch.stack(maps)[:, None]

    def _losses(self, feat, anchors, obj, reg, proposals, boxes, weights) -> dict[str, torch.Tensor]:
        """RPN and RoI-head losses of a batch (see :meth:`forward`)."""
        s = self.settings
        n = len(proposals)
        terms = {"rpn_cls": [], "rpn_box": [], "roi_cls": [], "roi_box": []}
        rois, roi_labels, roi_targets = [], [], []
        for i in range(n):
            gt = torch.as_tensor(boxes[i], dtype=torch.float32).reshape(-1, 4)
            # RPN: label anchors, sample, classify and regress
            labels, matched = match_boxes(box_iou(anchors, gt), s.rpn_fg_iou, s.rpn_bg_iou, best_per_target=True)
            pos, neg = sample_labels(labels, s.rpn_batch, s.rpn_positive_fraction)
            sampled = torch.cat([pos, neg])
            terms["rpn_cls"].append(F.binary_cross_entropy_with_logits(obj[i][sampled], labels[sampled].float()))
            target = encode_boxes(gt[matched[pos]], anchors[pos]) if len(gt) else reg.new_zeros((0, 4))
            terms["rpn_box"].append(F.smooth_l1_loss(reg[i][pos], target, beta=1 / 9, reduction="sum")
                                    / max(1, sampled.numel()))
            # RoI head: proposals and the targets themselves, labelled and sampled
            cand = torch.cat([proposals[i], gt])
            labels, matched = match_boxes(box_iou(cand, gt), s.roi_fg_iou, s.roi_fg_iou, best_per_target=False)
            pos, neg = sample_labels(labels, s.roi_batch, s.roi_positive_fraction)
            rois.append(torch.cat([cand[pos], cand[neg]]))
            roi_labels.append(torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]))
            roi_targets.append(encode_boxes(gt[matched[pos]], cand[pos], _ROI_WEIGHTS) if len(gt)
                               else reg.new_zeros((0, 4)))
        cls, deltas, index = self._roi_outputs(feat, rois)
        for i in range(n):
            sel = torch.nonzero(index == i).flatten()
            npos = len(roi_targets[i])
            terms["roi_cls"].append(F.binary_cross_entropy_with_logits(cls[sel], roi_labels[i])
                                    if sel.numel() else cls.sum() * 0)
            terms["roi_box"].append(F.smooth_l1_loss(deltas[sel[:npos]], roi_targets[i], reduction="sum")
                                    / max(1, sel.numel()))
        per_image = sum(torch.stack(v) for v in terms.values())
        w = torch.ones(n) if weights is None else torch.as_tensor(weights, dtype=torch.float32).reshape(n)
        out = {"loss": (per_image * w).sum() / n}
        out.update({k: torch.stack(v).mean().detach() for k, v in terms.items()})
        return out


@register_model(
    "faster_rcnn",
    task="detection",
    target="boxes",
    loss="faster_rcnn",
    mpp=0.55,
    train={"crop": 128, "optimizer": "adam", "lr": 1e-3, "batch_size": 8},
    alignment=_ALIGN,
    description="compact Faster R-CNN (Ren et al. 2015): fixed-size boxes on points, box centres as nuclei",
)
def faster_rcnn(*, in_channels: int = 3, width: int = 16, box_um: float = 8.0, mpp: float = 0.55,
                anchor_scales: Sequence[float] = (1.0,), roi_size: int = 7, hidden: int = 256) -> FasterRCNN:
    """Compact Faster R-CNN point detector (1,893,914 parameters by default).

    See :class:`FasterRCNN` for the arguments. The training loop sets ``mpp``
    to the training resolution.
    """
    return FasterRCNN(in_channels=in_channels, width=width, box_um=box_um, mpp=mpp, anchor_scales=anchor_scales,
                      roi_size=roi_size, hidden=hidden)
