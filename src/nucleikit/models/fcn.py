"""FCN: a compact FCN-8s regressing a proximity map (detection baseline of Xing et al. 2019, Table 1).

Long J, Shelhamer E, Darrell T. Fully convolutional networks for semantic
segmentation. CVPR 2015 (FCN-8s: class scores at strides 32, 16 and 8 fused by
2x learned upsampling and addition, then a fixed 8x bilinear upsampling).

nucleikit's FCN keeps that head on a small encoder made of the shared blocks
(:class:`~nucleikit.models.blocks.ResidualEncoder`: a stem and five stride-2
stages, each a stride-2 conv-BN-ReLU and a residual unit) instead of VGG-16,
and regresses the same one-channel proximity map in [0, 1] as MicroNet
(sigmoid output, weighted MSE), as in Xing et al.'s comparison:

====== ========================================================= ==============
block  content                                                   output (w=16)
====== ========================================================= ==============
1      stem: 3x3 conv-BN-ReLU                                    16, 1/1
2-6    stride-2 3x3 conv-BN-ReLU + residual unit                 32, 64, 128,
                                                                 128, 256 at
                                                                 1/2 .. 1/32
7      head: 1x1 score convs on blocks 4, 5, 6 (strides 8, 16,   K, 1/1
       32); score32 -> 2x transposed conv + score16 -> 2x
       transposed conv + score8 -> 8x bilinear -> sigmoid
====== ========================================================= ==============

The two 2x transposed convolutions (kernel 4, stride 2, padding 1) are learned
and start as bilinear interpolation, as in FCN-8s. Any input size: the image
is zero-padded at the bottom/right to a multiple of 32 and the output cropped
back, so (N, C, H, W) maps to (N, K, H, W) with the top-left pixels aligned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .blocks import FreezableModel, ResidualEncoder
from .registry import XING_RECIPE, register_model

__all__ = ["FCN", "fcn", "FCN_NUM_PARAMS", "bilinear_kernel"]

#: Exact parameter count of ``FCN()`` (width 16, 3 in, 1 out).
FCN_NUM_PARAMS = 2_405_427

#: Downsampling factor of the deepest level (five stride-2 stages).
_FACTOR = 32


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """(channels, channels, k, k) weights making a transposed conv a bilinear upsampling.

    Channel c maps to channel c only (the off-diagonal kernels are zero). With
    ``kernel_size = 2 s`` and ``stride = s``, ``padding = s / 2``, the
    transposed convolution interpolates an (h, w) map to (s h, s w) linearly
    between pixel centres (the FCN initialisation).
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - torch.abs(og - centre) / factor
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    for c in range(channels):
        weight[c, c] = kernel
    return weight


class _Head(nn.Module):
    """FCN-8s fusion: scores at strides 8/16/32, 2x learned upsampling + skip addition, 8x bilinear.

    ``forward(f8, f16, f32)``: features at strides 8, 16, 32 (sizes exactly
    2x apart) -> (N, K, 8 h8, 8 w8) logits.
    """

    def __init__(self, channels8: int, channels16: int, channels32: int, out_channels: int) -> None:
        super().__init__()
        self.score8 = nn.Conv2d(channels8, out_channels, 1)
        self.score16 = nn.Conv2d(channels16, out_channels, 1)
        self.score32 = nn.Conv2d(channels32, out_channels, 1)
        self.up32 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, padding=1, bias=False)
        self.up16 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, padding=1, bias=False)
        with torch.no_grad():
            self.up32.weight.copy_(bilinear_kernel(out_channels, 4))
            self.up16.weight.copy_(bilinear_kernel(out_channels, 4))

    def forward(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        s = self.up32(self.score32(f32)) + self.score16(f16)
        s = self.up16(s) + self.score8(f8)
        return F.interpolate(s, scale_factor=8, mode="bilinear", align_corners=False)


class FCN(FreezableModel):
    """Compact FCN-8s proximity regressor (layout in the module docstring).

    Parameters
    ----------
    in_channels : int
        Image channels.
    out_channels : int
        Output maps K.
    width : int
        Channels w of the stem; the five stages have 2w, 4w, 8w, 8w, 16w
        (about MicroNet's size).
        ``FCN()`` (w = 16) has 2,405,427 parameters.

    Notes
    -----
    ``forward``: (N, in_channels, H, W) float -> (N, out_channels, H, W) in
    [0, 1]; any H, W >= 1. ``model.blocks`` numbers the seven blocks of the
    module docstring for :func:`~nucleikit.models.blocks.freeze_blocks`.
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        for key, value in {"in_channels": in_channels, "out_channels": out_channels, "width": width}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        w = width
        widths = (w, 2 * w, 4 * w, 8 * w, 8 * w, 16 * w)
        encoder = ResidualEncoder(in_channels, widths)
        self.blocks = nn.ModuleList([*encoder.levels, _Head(widths[3], widths[4], widths[5], out_channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % _FACTOR, -w % _FACTOR
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = []
        for level in self.blocks[:-1]:
            x = level(x)
            feats.append(x)
        out = self.blocks[-1](feats[3], feats[4], feats[5])
        return torch.sigmoid(out[..., :h, :w])


@register_model(
    "fcn",
    task="detection",
    target="proximity",
    loss="weighted_mse",
    mpp=0.55,
    train=XING_RECIPE,
    alignment=_FACTOR,  # five stride-2 stages
    description="FCN-8s (Long et al. 2015) on residual blocks: proximity-map regression baseline",
)
def fcn(*, in_channels: int = 3, out_channels: int = 1, width: int = 16) -> FCN:
    """Compact FCN-8s proximity regressor (2,405,427 parameters by default).

    See :class:`FCN` for the arguments.
    """
    return FCN(in_channels=in_channels, out_channels=out_channels, width=width)
