"""FCRN-A and FCRN-B: fully convolutional regression networks (detection baselines).

Xie W, Noble JA, Zisserman A. Microscopy cell counting and detection with
fully convolutional regression networks. Computer Methods in Biomechanics
and Biomedical Engineering: Imaging & Visualization 6(3):283-292 (2018).

Layer tables (every convolution is conv-BN-ReLU, "same" padding; pooling is
2x2 max pooling; upsampling is 2x nearest neighbour; the head is a 1x1
convolution to one channel followed by a sigmoid, since nucleikit trains
them on proximity maps in [0, 1] like MicroNet, as in Xing et al.'s
comparison):

FCRN-A (3 poolings)::

    conv 3x3 32, pool, conv 3x3 64, pool, conv 3x3 128, pool,
    conv 3x3 512,
    up, conv 3x3 128, up, conv 3x3 64, up, conv 3x3 32, conv 1x1 1

FCRN-B (2 poolings, "conv-conv-pool")::

    conv 3x3 32, conv 3x3 64, pool, conv 3x3 128, conv 5x5 256, pool,
    conv 3x3 256,
    up, conv 5x5 256, up, conv 1x1 1

Any input size: the image is zero-padded at the bottom/right to a multiple
of 2**poolings and the output cropped back, so (N, C, H, W) maps to
(N, 1, H, W) with the top-left pixels aligned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .blocks import ConvBNAct
from .registry import XING_RECIPE, register_model

__all__ = ["FCRN", "fcrn_a", "fcrn_b", "FCRN_A_NUM_PARAMS", "FCRN_B_NUM_PARAMS"]

#: Exact parameter counts of ``fcrn_a()`` and ``fcrn_b()`` (3 input channels).
FCRN_A_NUM_PARAMS = 1_366_785
FCRN_B_NUM_PARAMS = 3_142_689

_POOL = "pool"
_UP = "up"

# Layer tables: (out_channels, kernel_size) for a conv-BN-ReLU, or a marker.
_FCRN_A = ((32, 3), _POOL, (64, 3), _POOL, (128, 3), _POOL, (512, 3), _UP, (128, 3), _UP, (64, 3), _UP, (32, 3))
_FCRN_B = ((32, 3), (64, 3), _POOL, (128, 3), (256, 5), _POOL, (256, 3), _UP, (256, 5), _UP)


class FCRN(nn.Module):
    """A fully convolutional regression network built from a layer table.

    Parameters
    ----------
    layers : tuple
        Entries ``(out_channels, kernel_size)`` (conv-BN-ReLU), ``"pool"``
        (2x2 max pooling) or ``"up"`` (2x nearest upsampling); as many
        ``"up"`` as ``"pool"``.
    in_channels : int
        Image channels.

    Notes
    -----
    ``forward``: (N, in_channels, H, W) -> (N, 1, H, W) in [0, 1].
    """

    def __init__(self, layers: tuple, *, in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
            raise ConfigError(f"in_channels must be a positive integer, got {in_channels!r}")
        if layers.count(_POOL) != layers.count(_UP):
            raise ConfigError("an FCRN layer table needs as many upsamplings as poolings")
        self.multiple = 2 ** layers.count(_POOL)
        modules: list[nn.Module] = []
        channels = in_channels
        for entry in layers:
            if entry == _POOL:
                modules.append(nn.MaxPool2d(2))
            elif entry == _UP:
                modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                out_channels, kernel_size = entry
                modules.append(ConvBNAct(channels, out_channels, kernel_size))
                channels = out_channels
        modules.append(nn.Conv2d(channels, 1, 1))
        self.body = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Pad to a multiple of 2**poolings so that pooling and upsampling
        # return exactly the padded size; crop back afterwards.
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return torch.sigmoid(self.body(x)[..., :h, :w])


@register_model(
    "fcrn_a",
    task="detection",
    target="proximity",
    loss="weighted_mse",
    mpp=0.55,
    train=XING_RECIPE,
    alignment=2 ** _FCRN_A.count(_POOL),
    description="FCRN-A (Xie et al. 2018): 3 poolings, proximity-map regression baseline",
)
def fcrn_a(*, in_channels: int = 3) -> FCRN:
    """FCRN-A regressor, one sigmoid channel (1,366,785 parameters with 3 input channels).

    Layer table in the module docstring.
    """
    return FCRN(_FCRN_A, in_channels=in_channels)


@register_model(
    "fcrn_b",
    task="detection",
    target="proximity",
    loss="weighted_mse",
    mpp=0.55,
    train=XING_RECIPE,
    alignment=2 ** _FCRN_B.count(_POOL),
    description="FCRN-B (Xie et al. 2018): 2 poolings, proximity-map regression baseline",
)
def fcrn_b(*, in_channels: int = 3) -> FCRN:
    """FCRN-B regressor, one sigmoid channel (3,142,689 parameters with 3 input channels).

    Layer table in the module docstring.
    """
    return FCRN(_FCRN_B, in_channels=in_channels)
