"""DenseNet and DCRN: one densely connected classifier skeleton, two layer types.

Nucleus classification of Alom et al. 2022 (CRCHistoPhenotypes, 32x32 patches
centred on the nuclei, four classes: epithelial, fibroblast, inflammatory,
others):

* DenseNet (Huang et al. 2017): every layer of a dense block is
  BN-ReLU-Conv3x3 producing ``growth`` new channels that are concatenated to
  its input.
* DCRN (densely connected recurrent network, Alom et al.): the same network
  with every 3x3 convolution replaced by a recurrent convolutional layer
  (:class:`~nucleikit.models.blocks.RecurrentConv`, pre-activation order,
  t = 2): ``h(0) = w_f * x``, ``h(k) = w_f * x + w_r * ReLU(BN(h(k-1)))``,
  with ``w_f`` and ``w_r`` shared over the steps.

:class:`DenseClassifier` is the shared skeleton; the convolution type is a
constructor argument and :class:`DenseNet` and :class:`DCRN` only choose it:

====== ============================================================ ==============
block  content                                                      output (32x32)
====== ============================================================ ==============
1      stem: 3x3 convolution (no bias) to ``stem_width`` channels   s, 32x32
2-4    dense block of ``layers[i]`` layers (7), then the transition c_i, 16/8/4
       BN-ReLU-Conv1x1 (no bias) to ``floor(compression * c)``
       channels and 2x2 average pooling (stride 2)
5      last dense block, BN, ReLU                                   F, 4x4
6      global average pooling, linear classifier                    n_classes
====== ============================================================ ==============

``model.blocks[i]`` is block i + 1 (a :class:`~nucleikit.models.blocks.FreezableModel`,
so :func:`~nucleikit.models.blocks.freeze_blocks` freezes the first k for
fine-tuning). ``features(x)`` is the global average of block 5: the
"bottleneck features" (B, F) that Alom et al. project with UMAP;
``forward(x)`` returns logits (B, n_classes) (no softmax: the loss is
:func:`nucleikit.losses.cross_entropy`).

The transition includes the ReLU of Huang et al.'s implementation (as
torchvision's ``_Transition``); it has no parameters. The three 2x2 poolings
floor odd sizes, so any input of at least 8x8 pixels works (32x32 is the
training patch). Default PyTorch initialisation, as the other nucleikit
models.

Parameter counts
----------------
Alom et al. give 1.22M parameters for both networks but not their widths.
Ours keep the 7-7-7-7 layers and compression 0.5 of the paper's description;
the growth rate sets the size and the stem width makes the fine adjustment
(3 input channels, 4 classes):

======== ====== ===== =========== =============== ==========
builder  growth stem  compression features (F)    parameters
======== ====== ===== =========== =============== ==========
densenet 24     44    0.5         320             1,220,466
dcrn     22     64    0.5         296             1,220,925
======== ====== ===== =========== =============== ==========

A DCRN layer holds one more 3x3 kernel (``w_r``, growth x growth) and one
more BatchNorm than a DenseNet layer, hence its smaller growth rate. The
recurrent kernels are shared over the steps, so ``t`` changes the
computation (and the receptive field), never the parameter count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import MappingProxyType

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import FreezableModel, RecurrentConv
from .registry import register_model

__all__ = [
    "CLASSIFY_RECIPE",
    "DENSENET_NUM_PARAMS",
    "DCRN_NUM_PARAMS",
    "DenseClassifier",
    "DenseNet",
    "DCRN",
    "densenet",
    "dcrn",
]

#: Alom et al.'s classification recipe: SGD, learning rate 1e-3, momentum 0.9,
#: weight decay 1e-4, batches of 32 patches of 32x32 pixels.
CLASSIFY_RECIPE: Mapping[str, object] = MappingProxyType(
    {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 32, "patch": 32}
)

#: Exact parameter counts of ``densenet()`` and ``dcrn()`` with their defaults.
DENSENET_NUM_PARAMS = 1_220_466
DCRN_NUM_PARAMS = 1_220_925

#: ``conv(in_channels, out_channels)``: a module (N, in, H, W) -> (N, out, H, W).
ConvFactory = Callable[[int, int], nn.Module]


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 "same" convolution without bias (a BatchNorm always precedes the next one)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class _DenseLayer(nn.Module):
    """BN -> ReLU -> conv to ``growth`` channels, concatenated to the input.

    (N, C, H, W) -> (N, C + growth, H, W).
    """

    def __init__(self, conv: ConvFactory, in_channels: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU()
        self.conv = conv(in_channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.act(self.norm(x)))], dim=1)


def _dense_block(conv: ConvFactory, in_channels: int, growth: int, n_layers: int) -> nn.Sequential:
    return nn.Sequential(*(_DenseLayer(conv, in_channels + i * growth, growth) for i in range(n_layers)))


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN-ReLU-Conv1x1-AvgPool2x2: (N, in, H, W) -> (N, out, floor(H/2), floor(W/2))."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.AvgPool2d(2),
    )


def _check_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


class DenseClassifier(FreezableModel):
    """Densely connected patch classifier parameterised by its convolution type.

    Parameters
    ----------
    conv : callable
        ``conv(in_channels, out_channels)`` returns the module used for every
        3x3 convolution of the dense layers; it must keep H and W.
    in_channels : int
        Image channels (3 for RGB).
    n_classes : int
        Number of classes (outputs of the linear classifier).
    growth : int
        Growth rate k: channels added by each dense layer.
    stem_width : int
        Channels of the stem convolution.
    compression : float
        In (0, 1]; a transition maps c channels to ``floor(compression * c)``.
    layers : sequence of int
        Dense layers per block (7, 7, 7, 7 in Alom et al.); one transition
        between consecutive blocks, so ``len(layers) - 1`` poolings.

    Attributes
    ----------
    blocks : nn.ModuleList
        Stem, one stage per dense block, classifier (see the module docstring).
    feature_dim : int
        F, the width of :meth:`features`.

    Notes
    -----
    ``forward``: (N, in_channels, H, W) float -> (N, n_classes) logits, for
    H, W >= 2 ** (len(layers) - 1).
    """

    def __init__(
        self,
        conv: ConvFactory,
        *,
        in_channels: int,
        n_classes: int,
        growth: int,
        stem_width: int,
        compression: float,
        layers: Sequence[int],
    ) -> None:
        super().__init__()
        for name, value in {
            "in_channels": in_channels,
            "n_classes": n_classes,
            "growth": growth,
            "stem_width": stem_width,
        }.items():
            _check_int(name, value)
        layers = tuple(layers)
        if not layers:
            raise ConfigError("layers must name at least one dense block")
        for n in layers:
            _check_int("each entry of layers", n)
        if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not 0 < compression <= 1:
            raise ConfigError(f"compression must be in (0, 1], got {compression!r}")
        self.layers = layers
        self.n_classes = n_classes
        stages: list[nn.Module] = [nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)]
        channels = stem_width
        for index, n_layers in enumerate(layers):
            block = _dense_block(conv, channels, growth, n_layers)
            channels += n_layers * growth
            if index < len(layers) - 1:
                out = int(compression * channels)
                if out < 1:
                    raise ConfigError(f"compression {compression} leaves no channel after dense block {index + 1}")
                stages.append(nn.Sequential(block, _transition(channels, out)))
                channels = out
            else:
                stages.append(nn.Sequential(block, nn.BatchNorm2d(channels), nn.ReLU()))
        stages.append(nn.Linear(channels, n_classes))
        self.blocks = nn.ModuleList(stages)
        self.feature_dim = channels

    @property
    def min_size(self) -> int:
        """Smallest input height and width (pixels)."""
        return 2 ** (len(self.layers) - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features: global average of the last dense block after BN-ReLU.

        Parameters
        ----------
        x : (N, in_channels, H, W) float tensor
            Standardised patches, H and W >= :attr:`min_size`.

        Returns
        -------
        (N, F) tensor, F = :attr:`feature_dim`.
        """
        if x.shape[-1] < self.min_size or x.shape[-2] < self.min_size:
            raise ValueError(
                f"input of {tuple(x.shape[-2:])} pixels is smaller than the minimum {self.min_size}x{self.min_size}"
            )
        for stage in self.blocks[:-1]:
            x = stage(x)
        return x.mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, n_classes) logits."""
        return self.blocks[-1](self.features(x))


class DenseNet(DenseClassifier):
    """DenseNet: dense layers BN-ReLU-Conv3x3.

    Parameters as :class:`DenseClassifier`, without ``conv``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        n_classes: int = 4,
        growth: int = 24,
        stem_width: int = 44,
        compression: float = 0.5,
        layers: Sequence[int] = (7, 7, 7, 7),
    ) -> None:
        super().__init__(
            _conv3x3,
            in_channels=in_channels,
            n_classes=n_classes,
            growth=growth,
            stem_width=stem_width,
            compression=compression,
            layers=layers,
        )


class DCRN(DenseClassifier):
    """DCRN: dense layers BN-ReLU-RecurrentConv (pre-activation, shared kernels).

    Parameters as :class:`DenseClassifier`, without ``conv``, plus ``t``:
    recurrent steps of every recurrent convolutional layer (>= 0; the
    parameter count does not depend on t; t = 0 computes a DenseNet), and
    ``step_norm``: one BatchNorm per recurrent step instead of one shared
    (:class:`~nucleikit.models.blocks.RecurrentConv`; False in the paper and
    the bundled weights).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        n_classes: int = 4,
        growth: int = 22,
        stem_width: int = 64,
        compression: float = 0.5,
        layers: Sequence[int] = (7, 7, 7, 7),
        t: int = 2,
        step_norm: bool = False,
    ) -> None:
        super().__init__(
            partial(RecurrentConv, t=t, kernel_size=3, activation="relu", order="pre", step_norm=step_norm),
            in_channels=in_channels,
            n_classes=n_classes,
            growth=growth,
            stem_width=stem_width,
            compression=compression,
            layers=layers,
        )
        self.t = t


def transition_alignment(kwargs: Mapping[str, object]) -> int:
    """Total downsampling of a :class:`DenseClassifier`: one 2x2 pooling per transition.

    The registry's ``alignment`` of both builders (patches are classified whole, never
    tiled; declared as for every model).
    """
    return 2 ** (len(tuple(kwargs["layers"])) - 1)


@register_model(
    "densenet",
    task="classification",
    target="label",
    loss="cross_entropy",
    mpp=0.55,
    train=CLASSIFY_RECIPE,
    alignment=transition_alignment,
    description="DenseNet (7-7-7-7, k = 24): nucleus class logits from 32x32 patches",
)
def densenet(
    *,
    in_channels: int = 3,
    n_classes: int = 4,
    growth: int = 24,
    stem_width: int = 44,
    compression: float = 0.5,
    layers: Sequence[int] = (7, 7, 7, 7),
) -> DenseNet:
    """DenseNet patch classifier (1,220,466 parameters by default).

    See :class:`DenseNet` and the module docstring for the arguments.
    """
    return DenseNet(
        in_channels=in_channels,
        n_classes=n_classes,
        growth=growth,
        stem_width=stem_width,
        compression=compression,
        layers=layers,
    )


@register_model(
    "dcrn",
    task="classification",
    target="label",
    loss="cross_entropy",
    mpp=0.55,
    train=CLASSIFY_RECIPE,
    alignment=transition_alignment,
    description="DCRN (Alom et al.): DenseNet with recurrent conv layers, t = 2",
)
def dcrn(
    *,
    in_channels: int = 3,
    n_classes: int = 4,
    growth: int = 22,
    stem_width: int = 64,
    compression: float = 0.5,
    layers: Sequence[int] = (7, 7, 7, 7),
    t: int = 2,
    step_norm: bool = False,
) -> DCRN:
    """DCRN patch classifier, t = 2 (1,220,925 parameters by default).

    See :class:`DCRN` and the module docstring for the arguments.
    """
    return DCRN(
        in_channels=in_channels,
        n_classes=n_classes,
        growth=growth,
        stem_width=stem_width,
        compression=compression,
        layers=layers,
        t=t,
        step_norm=step_norm,
    )
