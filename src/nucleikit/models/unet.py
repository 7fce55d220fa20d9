"""U-Net, R2U-Net and UD-Net: one encoder-decoder skeleton, two block types.

* U-Net (Ronneberger et al. 2015) with batch normalisation: each level is a
  pair of 3x3 conv-BN-ReLU layers.
* R2U-Net (Alom et al. 2018): each level is a recurrent residual unit
  (:class:`~nucleikit.models.blocks.RecurrentResidualBlock`, t steps).
* UD-Net (Alom et al. 2022): R2U-Net with t = 3 and a one-channel head
  regressing a Gaussian density map for nucleus detection.

:class:`EncoderDecoder` is the shared skeleton: ``len(widths) - 1`` 2x2 max
poolings on the way down (4 with the default 5 widths), a 2x2 stride-2
transposed convolution on the way up, skip connections by concatenation, a
1x1 convolution head and an output activation. The block type is a
constructor argument; :class:`UNet` and :class:`R2UNet` only choose it.

Maps are (N, C, H, W). Pooling floors odd sizes (75 -> 37); the upsampled
map (74) is zero-padded at the bottom/right to its skip's size (75), so any
H, W >= 2**(len(widths) - 1) works and the output has the input's H and W.

Alom et al. 2022 report about 0.98M parameters for U-Net and R2U-Net and
1.04M for UD-Net but not the widths; ours double per level with the
bottleneck width set to reach those counts (3 input channels):

============== ====================== ========== ==========
builder        widths                 t          parameters
============== ====================== ========== ==========
unet           12, 24, 48, 96, 168    -          985,573
r2unet         8, 16, 32, 64, 120     2          974,753
udnet          8, 16, 32, 64, 128     3          1,048,777
unet_regressor 12, 24, 48, 96, 168    -          985,573
============== ====================== ========== ==========

The recurrent kernels are shared across time steps, so t changes the
computation, never the parameter count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import ConvBNAct, RecurrentResidualBlock, pad_to_match
from .registry import ALOM_RECIPE, XING_RECIPE, register_model

__all__ = [
    "OUT_ACTIVATIONS",
    "EncoderDecoder",
    "UNet",
    "R2UNet",
    "UNET_WIDTHS",
    "R2UNET_WIDTHS",
    "UDNET_WIDTHS",
    "encoder_alignment",
    "unet",
    "r2unet",
    "udnet",
    "unet_regressor",
]

OUT_ACTIVATIONS = ("sigmoid", "linear", "softmax")

#: Default widths (channels per level, 4 poolings) of each builder.
UNET_WIDTHS = (12, 24, 48, 96, 168)
R2UNET_WIDTHS = (8, 16, 32, 64, 120)
UDNET_WIDTHS = (8, 16, 32, 64, 128)

BlockFactory = Callable[[int, int], nn.Module]


def encoder_alignment(kwargs: Mapping[str, Any]) -> int:
    """Total downsampling of an :class:`EncoderDecoder`: one 2x2 pooling per level below the first.

    The registry's ``alignment`` of every builder here (a function of ``widths``, so a
    deeper U-Net declares its own lattice).
    """
    return 2 ** (len(tuple(kwargs["widths"])) - 1)


class _ConvPair(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers: the plain U-Net level."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNAct(in_channels, out_channels, 3), ConvBNAct(out_channels, out_channels, 3))


class EncoderDecoder(nn.Module):
    """U-shaped encoder-decoder parameterised by its block type.

    Parameters
    ----------
    block : callable
        ``block(in_channels, out_channels)`` returns a module mapping
        (N, in, H, W) to (N, out, H, W); used at every level on both paths.
    in_channels, out_channels : int
        Image channels and output maps.
    widths : sequence of int
        Channels per level, from full resolution down to the bottleneck; its
        length minus one is the number of poolings.
    out_activation : {"sigmoid", "linear", "softmax"}
        Applied to the head's output ("softmax" over the channel axis).

    Notes
    -----
    ``forward``: (N, in_channels, H, W) -> (N, out_channels, H, W), with
    H, W >= 2**(len(widths) - 1).
    """

    def __init__(
        self,
        block: BlockFactory,
        *,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int],
        out_activation: str,
    ) -> None:
        super().__init__()
        widths = tuple(widths)
        if len(widths) < 2 or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise ConfigError(f"widths must be at least two positive integers, got {widths!r}")
        for key, value in {"in_channels": in_channels, "out_channels": out_channels}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if out_activation not in OUT_ACTIVATIONS:
            raise ConfigError(f"unknown out_activation {out_activation!r}; known: {', '.join(OUT_ACTIVATIONS)}")
        self.widths = widths
        self.out_activation = out_activation
        self.encoder = nn.ModuleList(block(c_in, c_out) for c_in, c_out in zip((in_channels, *widths), widths))
        self.pool = nn.MaxPool2d(2)
        # Decoder level i (deepest first) upsamples widths[i+1] -> widths[i]
        # and fuses it with the encoder's skip of widths[i] channels.
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(len(widths) - 1))
        )
        self.decoder = nn.ModuleList(block(2 * widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smallest = 2 ** (len(self.widths) - 1)
        if x.shape[-1] < smallest or x.shape[-2] < smallest:
            raise ValueError(f"input of {tuple(x.shape[-2:])} pixels is smaller than the minimum {smallest}x{smallest}")
        skips = []
        for index, level in enumerate(self.encoder):
            if index > 0:
                x = self.pool(x)
            x = level(x)
            skips.append(x)
        skips.pop()  # the bottleneck is not a skip
        for up, level in zip(self.up, self.decoder, strict=True):
            skip = skips.pop()
            x = level(torch.cat([pad_to_match(up(x), skip), skip], dim=1))
        y = self.head(x)
        if self.out_activation == "sigmoid":
            return torch.sigmoid(y)
        if self.out_activation == "softmax":
            return torch.softmax(y, dim=1)
        return y


class UNet(EncoderDecoder):
    """U-Net with batch normalisation (pairs of 3x3 conv-BN-ReLU per level).

    Parameters as :class:`EncoderDecoder`, without ``block``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 1,
        widths: Sequence[int] = UNET_WIDTHS,
        out_activation: str = "sigmoid",
    ) -> None:
        super().__init__(
            _ConvPair,
            in_channels=in_channels,
            out_channels=out_channels,
            widths=widths,
            out_activation=out_activation,
        )


class R2UNet(EncoderDecoder):
    """Recurrent residual U-Net (R2U-Net) of Alom et al.

    Parameters as :class:`EncoderDecoder`, without ``block``, plus
    ``t``: recurrent steps of every recurrent convolutional layer (the
    parameter count does not depend on t), and ``step_norm``: one
    BatchNorm per recurrent step instead of one shared by all steps
    (:class:`~nucleikit.models.blocks.RecurrentConv`; False is Alom et al.'s
    network and that of every bundled R2U-Net/UD-Net weights file).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 1,
        widths: Sequence[int] = R2UNET_WIDTHS,
        t: int = 2,
        out_activation: str = "sigmoid",
        step_norm: bool = False,
    ) -> None:
        super().__init__(
            partial(RecurrentResidualBlock, t=t, step_norm=step_norm),
            in_channels=in_channels,
            out_channels=out_channels,
            widths=widths,
            out_activation=out_activation,
        )
        self.t = t
        self.step_norm = bool(step_norm)


@register_model(
    "unet",
    task="segmentation",
    target="mask",
    loss="dice_bce",
    mpp=None,
    train=ALOM_RECIPE,
    alignment=encoder_alignment,
    description="U-Net with batch normalisation: nucleus foreground probability",
)
def unet(
    *,
    in_channels: int = 3,
    out_channels: int = 1,
    widths: Sequence[int] = UNET_WIDTHS,
    out_activation: str = "sigmoid",
) -> UNet:
    """U-Net segmenter (985,573 parameters by default).

    See :class:`UNet` for the arguments.
    """
    return UNet(in_channels=in_channels, out_channels=out_channels, widths=widths, out_activation=out_activation)


@register_model(
    "r2unet",
    task="segmentation",
    target="mask",
    loss="dice_bce",
    mpp=None,
    train=ALOM_RECIPE,
    alignment=encoder_alignment,
    description="R2U-Net (Alom et al.): recurrent residual U-Net, t = 2",
)
def r2unet(
    *,
    in_channels: int = 3,
    out_channels: int = 1,
    widths: Sequence[int] = R2UNET_WIDTHS,
    t: int = 2,
    out_activation: str = "sigmoid",
    step_norm: bool = False,
) -> R2UNet:
    """R2U-Net segmenter, t = 2 (974,753 parameters by default).

    See :class:`R2UNet` for the arguments.
    """
    return R2UNet(in_channels=in_channels, out_channels=out_channels, widths=widths, t=t, out_activation=out_activation,
                  step_norm=step_norm)


@register_model(
    "unet_instance",
    task="segmentation",
    target="instance",
    loss="instance",
    mpp=None,
    train=ALOM_RECIPE,
    alignment=encoder_alignment,
    description="U-Net with an instance-aware head: foreground, boundary and distance maps",
)
def unet_instance(*, in_channels: int = 3, widths: Sequence[int] = UNET_WIDTHS) -> UNet:
    """U-Net with a three-channel sigmoid head (985,599 parameters by default).

    The same network as ``unet``; only the last 1x1 convolution differs. Its
    channels are :data:`nucleikit.targets.INSTANCE_CHANNELS` (foreground,
    inner boundary, distance to the border normalised per nucleus), trained
    with :func:`nucleikit.losses.instance_loss` and turned into instances by
    :func:`nucleikit.postprocess.instances_from_maps`.
    """
    return UNet(in_channels=in_channels, out_channels=3, widths=widths, out_activation="sigmoid")


@register_model(
    "r2unet_instance",
    task="segmentation",
    target="instance",
    loss="instance",
    mpp=None,
    train=ALOM_RECIPE,
    alignment=encoder_alignment,
    description="R2U-Net (t = 2) with an instance-aware head: foreground, boundary and distance maps",
)
def r2unet_instance(*, in_channels: int = 3, widths: Sequence[int] = R2UNET_WIDTHS, t: int = 2,
                    step_norm: bool = False) -> R2UNet:
    """R2U-Net (t = 2) with the three-channel head of :func:`unet_instance` (974,771 parameters by default)."""
    return R2UNet(in_channels=in_channels, out_channels=3, widths=widths, t=t, out_activation="sigmoid",
                  step_norm=step_norm)


@register_model(
    "udnet",
    task="detection",
    target="density",
    loss="mse",
    mpp=0.55,
    train=ALOM_RECIPE,
    alignment=encoder_alignment,
    description="UD-Net (Alom et al. 2022): R2U-Net, t = 3, regressing a density map",
)
def udnet(
    *,
    in_channels: int = 3,
    widths: Sequence[int] = UDNET_WIDTHS,
    t: int = 3,
    out_activation: str = "sigmoid",
    step_norm: bool = False,
) -> R2UNet:
    """UD-Net density regressor, one output channel (1,048,777 parameters by default).

    An :class:`R2UNet` with t = 3 and a one-channel head. The default
    sigmoid keeps the output in [0, 1] like the density targets of
    :func:`nucleikit.targets.gaussian_density_map` (peaks of 1); pass
    ``out_activation="linear"`` for an unbounded regression head.
    """
    return R2UNet(in_channels=in_channels, out_channels=1, widths=widths, t=t, out_activation=out_activation,
                  step_norm=step_norm)


@register_model(
    "unet_regressor",
    task="detection",
    target="proximity",
    loss="weighted_mse",
    mpp=0.55,
    train=XING_RECIPE,
    alignment=encoder_alignment,
    description="U-Net regressing Xing's proximity map (detection baseline)",
)
def unet_regressor(*, in_channels: int = 3, widths: Sequence[int] = UNET_WIDTHS) -> UNet:
    """U-Net proximity-map regressor, one sigmoid channel (985,573 parameters by default).

    The detection baseline of Xing et al.'s comparison: a :class:`UNet`
    trained like MicroNet.
    """
    return UNet(in_channels=in_channels, out_channels=1, widths=widths, out_activation="sigmoid")
