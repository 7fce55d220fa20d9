"""MicroNet: Xing et al.'s fully residual regression network for nucleus detection.

Xing F, Xie Y, Shi X, Chen P, Zhang Z, Yang L. Towards pixel-to-pixel deep
nucleus detection in microscopy images. BMC Bioinformatics 20:472 (2019).

The network maps an (N, C, H, W) image to an (N, K, H, W) proximity map in
[0, 1] (sigmoid), for any H and W. It is made of 10 numbered blocks
(``model.blocks[0]`` is block 1), the unit of layer freezing in the paper's
fine-tuning experiments (:func:`~nucleikit.models.blocks.freeze_blocks`):

====== ===================================================== =============
block  content                                               output (w=16)
====== ===================================================== =============
1      input transition: 3x3 conv-BN-ELU                     16, 1/1
2-5    down: 3x3 stride-2 conv-BN-ELU, residual unit         32, 64, 128,
       (dropout after blocks 4 and 5)                        128 at 1/2..1/16
6-9    up: 2x2 stride-2 transposed conv-BN-ELU, concatenate  128, 64, 32,
       the skip of the same size, residual unit              16 at 1/8..1/1
10     output transition: multi-context aggregation          K, 1/1
       (transposed convs from blocks 3, 4, 5 straight to
       full resolution, concatenated with block 9), 3x3
       conv-BN-ELU, 1x1 conv to K channels
====== ===================================================== =============

All convolutions are followed by batch normalisation and ELU, except the
final 1x1 convolution (bias, then sigmoid).

Inference in fp32 (eval mode, autograd off, e.g. under ``torch.inference_mode``)
takes a memory-lean route to the same output (within 1e-5), because the peak
memory of the forward pass fixes the tile size under a memory budget
(:mod:`nucleikit.infer.tiling`): in blocks 9 and 10 a convolution over
concatenated maps is computed as the sum of convolutions over each map with the
matching slice of its kernel, so the concatenated copy is never made and at
most one upsampled context is alive at a time; each transposed convolution has
its batch norm folded into its kernel and ELUs act in place; each skip is
dropped once used. The pass then holds at most four full-resolution maps of w
channels instead of eleven: 326 bytes per pixel instead of 774 for w = 16.
Training, and anything run with autograd on, takes the standard route.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .blocks import ConvBNAct, FreezableModel, ResidualBlock, pad_to_match
from .registry import XING_RECIPE, register_model

# pad_to_match branches on tensor sizes: a leaf for torch.fx, so the network can be traced
# (e.g. for int8 quantisation, benchmarks/int8_detector.py).
torch.fx.wrap("pad_to_match")

__all__ = ["MicroNet", "micronet", "MICRONET_NUM_PARAMS"]

#: Exact parameter count of ``MicroNet()`` (width 16, 3 in, 1 out).
MICRONET_NUM_PARAMS = 2_351_393

_ACT = "elu"


def _lean(module: nn.Module) -> bool:
    """Whether ``module`` takes the memory-lean inference route: eval mode, autograd off, no autocast.

    Under bf16 autocast each partial convolution would be rounded to bf16 before the sum,
    moving the outputs the weights' ``bf16_ok`` verdict was measured on; bf16 keeps the
    standard route.
    """
    return not module.training and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")


def _conv_part(conv: nn.Conv2d, x: torch.Tensor, start: int, *, bias: bool) -> torch.Tensor:
    """``conv``'s contribution from ``x``, its input channels ``start .. start + C_x``.

    ``conv(torch.cat([a, b], 1))`` equals ``_conv_part(conv, a, 0, bias=True) +
    _conv_part(conv, b, C_a, bias=False)``, without the concatenated copy in memory.
    """
    weight = conv.weight[:, start : start + x.shape[1]]
    return F.conv2d(x, weight, conv.bias if bias else None, conv.stride, conv.padding, conv.dilation)


class _TransposedBNAct(nn.Sequential):
    """Transposed convolution (kernel = stride, so no overlap) -> BN -> ELU.

    (N, C_in, h, w) -> (N, C_out, h * stride, w * stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, stride, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _lean(self):
            return super().forward(x)
        # One output map instead of three: the eval-mode batch norm, an affine map per
        # channel, folded into the kernel (output channels on its dim 1), and ELU in place.
        conv, norm, act = self
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        weight = conv.weight * scale[:, None, None]
        shift = norm.bias - norm.running_mean * scale
        return F.elu_(F.conv_transpose2d(x, weight, shift, conv.stride), act.alpha)


class _DownBlock(nn.Sequential):
    """Stride-2 3x3 conv-BN-ELU, residual unit, optional dropout.

    (N, C_in, H, W) -> (N, C_out, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, out_channels, 3, stride=2, activation=_ACT),
            ResidualBlock(out_channels, out_channels, activation=_ACT),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class _UpBlock(nn.Module):
    """Upsample by 2, concatenate the skip, residual unit.

    ``forward(x, skip)``: x (N, C_in, h, w), skip (N, C_skip, H, W) with
    H in {2h-1, 2h} -> (N, C_out, H, W).

    With ``split_cat`` (the full-resolution block) inference never makes the
    concatenation (:meth:`_lean_forward`); at coarser levels its maps are small
    and the split convolutions would cost more time than the memory they save.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, split_cat: bool = False) -> None:
        super().__init__()
        self.up = _TransposedBNAct(in_channels, skip_channels, 2)
        self.residual = ResidualBlock(2 * skip_channels, out_channels, activation=_ACT)
        self.split_cat = split_cat

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.split_cat and _lean(self):
            return self._lean_forward(x, skip)
        # no name holds the upsampled map: without autograd it is freed once concatenated
        return self.residual(torch.cat([pad_to_match(self.up(x), skip), skip], dim=1))

    def _lean_forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``forward`` without autograd in at most four maps of the output's size.

        The residual unit's first convolution and its shortcut projection both read
        cat([up, skip]); each is summed over the two parts instead (the upsampled map is
        dropped once both have read it), and the ELUs act in place. The normalisations
        are called as modules, so a module-hook memory probe
        (:meth:`~nucleikit.infer.predict.DensePredictor.bytes_per_pixel`) sees every map
        that is alive at this block's peak.
        """
        (conv, norm, act), conv2, norm2 = self.residual.body
        proj, proj_norm = self.residual.shortcut
        up = pad_to_match(self.up(x), skip)
        split = up.shape[1]
        h = _conv_part(conv, up, 0, bias=True)
        s = _conv_part(proj, up, 0, bias=True)
        del up
        h += _conv_part(conv, skip, split, bias=False)
        s += _conv_part(proj, skip, split, bias=False)
        s = proj_norm(s)
        h = F.elu_(norm(h), act.alpha)
        y = norm2(conv2(h))
        del h
        y += s
        return F.elu_(y, self.residual.act.alpha)


class _OutputTransition(nn.Module):
    """Multi-context aggregation and the two output convolutions.

    ``forward(x, contexts)``: x (N, w, H, W) from the last up block;
    contexts = [(N, C_i, H/s_i, W/s_i)] from the down path, each upsampled by
    its own transposed conv (stride s_i) to (N, w, H, W) -> (N, K, H, W)
    logits.
    """

    def __init__(self, width: int, context_channels: list[int], strides: list[int], out_channels: int) -> None:
        super().__init__()
        self.contexts = nn.ModuleList(
            _TransposedBNAct(c, width, s) for c, s in zip(context_channels, strides, strict=True)
        )
        self.fuse = ConvBNAct(width * (1 + len(strides)), width, 3, activation=_ACT)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor, contexts: list[torch.Tensor]) -> torch.Tensor:
        if _lean(self):
            return self._lean_forward(x, contexts)
        maps = [x] + [pad_to_match(up(c), x) for up, c in zip(self.contexts, contexts, strict=True)]
        return self.head(self.fuse(torch.cat(maps, dim=1)))

    def _lean_forward(self, x: torch.Tensor, contexts: list[torch.Tensor]) -> torch.Tensor:
        """``forward`` without autograd in at most four maps of ``x``'s size.

        The fusing convolution over cat([x, up_1, up_2, up_3]) is summed over its parts:
        each context is upsampled, added in and dropped before the next is made.
        """
        conv, norm, act = self.fuse
        fused = _conv_part(conv, x, 0, bias=True)
        start = x.shape[1]
        for up, context in zip(self.contexts, contexts, strict=True):
            part = pad_to_match(up(context), x)
            fused += _conv_part(conv, part, start, bias=False)
            start += part.shape[1]
            del part
        return self.head(F.elu_(norm(fused), act.alpha))


class MicroNet(FreezableModel):
    """Xing et al.'s MicroNet (see the module docstring for the layout).

    Parameters
    ----------
    in_channels : int
        Image channels (3 for RGB).
    out_channels : int
        Output maps K (1: one proximity map; one per class for typed detection).
    width : int
        Channels w of the input transition; the down blocks have 2w, 4w, 8w,
        8w channels. ``MicroNet()`` (w = 16) has 2,351,393 parameters,
        ``MicroNet(width=32)`` has 9,396,289 (about 4x: counts grow with w²).
    dropout : float
        Dropout probability after blocks 4 and 5 (0 disables).

    Notes
    -----
    ``forward``: (N, in_channels, H, W) float -> (N, out_channels, H, W) in
    [0, 1]; any H, W >= 1 (odd sizes are handled by padding or cropping the
    upsampled maps to their skip's size).
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 1, width: int = 16, dropout: float = 0.5) -> None:
        super().__init__()
        for key, value in {"in_channels": in_channels, "out_channels": out_channels, "width": width}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        w = width
        down = [2 * w, 4 * w, 8 * w, 8 * w]
        self.blocks = nn.ModuleList(
            [
                ConvBNAct(in_channels, w, 3, activation=_ACT),  # 1
                _DownBlock(w, down[0], 0.0),  # 2
                _DownBlock(down[0], down[1], 0.0),  # 3
                _DownBlock(down[1], down[2], dropout),  # 4
                _DownBlock(down[2], down[3], dropout),  # 5
                _UpBlock(down[3], down[2], down[2]),  # 6
                _UpBlock(down[2], down[1], down[1]),  # 7
                _UpBlock(down[1], down[0], down[0]),  # 8
                _UpBlock(down[0], w, w, split_cat=True),  # 9
                _OutputTransition(w, down[1:], [4, 8, 16], out_channels),  # 10
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.blocks
        x1 = b[0](x)
        d1 = b[1](x1)
        d2 = b[2](d1)
        d3 = b[3](d2)
        d4 = b[4](d3)
        u = b[5](d4, d3)
        u = b[6](u, d2)
        u = b[7](u, d1)
        del d1  # each skip is let go once used: less memory held through the full-resolution blocks
        u = b[8](u, x1)
        del x1
        return torch.sigmoid(b[9](u, [d2, d3, d4]))


@register_model(
    "micronet",
    task="detection",
    target="proximity",
    loss="weighted_mse",
    mpp=0.55,
    train=XING_RECIPE,
    alignment=16,  # blocks 2-5: four stride-2 convolutions
    description="MicroNet (Xing et al. 2019): fully residual regression of a proximity map",
)
def micronet(*, in_channels: int = 3, out_channels: int = 1, width: int = 16, dropout: float = 0.5) -> MicroNet:
    """MicroNet proximity-map regressor (2,351,393 parameters by default).

    See :class:`MicroNet` for the arguments.
    """
    return MicroNet(in_channels=in_channels, out_channels=out_channels, width=width, dropout=dropout)
