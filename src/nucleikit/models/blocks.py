"""Building blocks shared by the nucleikit architectures.

One definition per block, reused by every network (the idea of torchvision's
``Conv2dNormActivation``):

* :class:`ConvBNAct` — convolution, batch normalisation, activation.
* :class:`ResidualBlock` — two 3x3 conv-BN-act layers plus a shortcut
  (identity, or a 1x1 conv-BN projection when the channel counts differ).
  MicroNet's residual units.
* :class:`RecurrentConv` — the recurrent convolutional layer of Alom et al.
  (Eq. 2): a feed-forward kernel ``w_f`` and a recurrent kernel ``w_r``, each
  shared across the ``t`` time steps; post-activation as Eq. 2 is written
  (R2U-Net, UD-Net) or pre-activation (``order="pre"``, DCRN's dense layers).
* :class:`RecurrentResidualBlock` — the R2 unit (1x1 conv, two recurrent
  convolutional layers, residual addition) of R2U-Net and UD-Net.
* :class:`ResidualEncoder` — a stem conv-BN-act and stride-2 stages (each a
  stride-2 conv-BN-act and a :class:`ResidualBlock`), returning the feature
  map of every level (FCN, Faster R-CNN's backbone).
* :func:`pad_to_match` — bring an upsampled map to a skip connection's size
  (odd sizes: 75 -> 37 -> 74 is padded back to 75).
* :class:`FreezableModel` and :func:`freeze_blocks` — freeze the first k
  numbered blocks of a network for fine-tuning.

All tensors are (N, C, H, W) float tensors. Convolutions followed by batch
normalisation carry no bias (the normalisation's shift replaces it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "make_activation",
    "ConvBNAct",
    "ResidualBlock",
    "RecurrentConv",
    "RecurrentResidualBlock",
    "ResidualEncoder",
    "pad_to_match",
    "FreezableModel",
    "freeze_blocks",
]

#: Activation names accepted by every block (``activation=`` argument).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`).

    Raises
    ------
    ConfigError
        If ``name`` is not a known activation.
    """
    try:
        factory = ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None
    return factory()


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")


class ConvBNAct(nn.Sequential):
    """Convolution -> BatchNorm -> activation ("same" padding for odd kernels).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel_size : int
        Square kernel size; padding is ``kernel_size // 2`` so that with
        ``stride=1`` an (H, W) map stays (H, W). With ``stride=2`` and a 3x3
        kernel, (H, W) becomes (ceil(H/2), ceil(W/2)).
    stride : int
        Convolution stride.
    activation : str
        One of :data:`ACTIVATIONS` ("relu", "elu", "leaky_relu", "identity").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        activation: str = "relu",
    ) -> None:
        _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, stride=stride)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            make_activation(activation),
        )


class ResidualBlock(nn.Module):
    """Residual unit: ``act(BN(conv(act(BN(conv(x))))) + shortcut(x))``.

    Two 3x3 convolutions, each followed by batch normalisation; the second
    activation comes after the addition (He et al. 2016). The shortcut is the
    identity when ``in_channels == out_channels``, else a 1x1 conv + BN
    projection. (N, in_channels, H, W) -> (N, out_channels, H, W).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    activation : str
        One of :data:`ACTIVATIONS`.
    """

    def __init__(self, in_channels: int, out_channels: int, *, activation: str = "relu") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(in_channels, out_channels, 3, activation=activation),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class RecurrentConv(nn.Module):
    """Recurrent convolutional layer (Alom et al., Eq. 2).

    ``h(0) = act(BN(w_f * x))`` and, for ``k = 1 .. t``,
    ``h(k) = act(BN(w_f * x + w_r * h(k-1)))``; the output is ``h(t)``.
    The feed-forward kernel ``w_f``, the recurrent kernel ``w_r`` and the
    batch normalisation are each shared across the time steps, so the number
    of parameters does not depend on ``t`` (only the depth of computation,
    and with it the receptive field, grows with ``t``). ``w_f * x`` is
    computed once and reused at every step.

    With ``order="pre"`` the same recurrence is written in pre-activation
    form, for networks whose layers are BN-ReLU-Conv (DenseNet, DCRN):
    ``h(0) = w_f * x`` and ``h(k) = w_f * x + w_r * act(BN(h(k-1)))``; the
    output ``h(t)`` is linear (not normalised, not activated), and the caller
    normalises and activates ``x`` itself, as before any convolution of such
    a network. With ``t = 0`` this is a plain convolution ``w_f * x`` (the
    recurrent kernel and the normalisation are then unused).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of ``x`` and of ``h``.
    t : int
        Number of recurrent steps (>= 0; ``t = 0`` is a plain conv-BN-act).
    kernel_size : int
        Size of both square kernels (odd; "same" padding).
    activation : str
        One of :data:`ACTIVATIONS`.
    order : {"post", "pre"}
        ``"post"`` (default): Eq. 2 as written, conv -> BN -> activation at
        every step. ``"pre"``: BN -> activation -> recurrent conv inside the
        recurrence, linear output (see above). Both have the same parameters
        (``w_f``, ``w_r``, one BatchNorm of ``out_channels``).

    step_norm : bool
        False (default, Alom et al. and the usual R2U-Net code): one
        BatchNorm serves every step. True: each step has its own BatchNorm
        (statistics and affine), as recurrent batch normalisation does
        (Cooijmans et al. 2017); ``t + 1`` of them in ``"post"`` order, ``t``
        in ``"pre"`` order.

    Notes
    -----
    (N, in_channels, H, W) -> (N, out_channels, H, W). With one shared
    BatchNorm its running statistics average over the steps, whose inputs
    have different statistics (``w_f * x`` alone, then ``w_f * x + w_r * h``):
    in training each step is normalised by its own batch statistics, in
    evaluation every step by the average, so the evaluated network is not the
    trained one. On DSB2018 validation crops an R2U-Net scored pooled Dice 0.71
    in eval mode against 0.90 with batch statistics (a U-Net: 0.91 and 0.91);
    ``step_norm=True`` removes that mismatch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        t: int = 2,
        kernel_size: int = 3,
        activation: str = "relu",
        order: str = "post",
        step_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size)
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise ConfigError(f"t must be a non-negative integer, got {t!r}")
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd to keep the map size, got {kernel_size}")
        if order not in ("post", "pre"):
            raise ConfigError(f"order must be 'post' or 'pre', got {order!r}")
        self.t = t
        self.order = order
        self.step_norm = bool(step_norm)
        padding = kernel_size // 2
        self.conv_f = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.conv_r = nn.Conv2d(out_channels, out_channels, kernel_size, padding=padding, bias=False)
        if self.step_norm:
            # `bn` stays None so that code folding a shared BatchNorm (models.optimize) leaves this layer alone
            self.bn = None
            self.bns = nn.ModuleList(nn.BatchNorm2d(out_channels) for _ in range(t + 1 if order == "post" else t))
        else:
            self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation)

    def _norm(self, k: int) -> nn.Module:
        """The BatchNorm of step ``k`` (0-based): its own, or the shared one."""
        return self.bns[k] if self.step_norm else self.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feed = self.conv_f(x)
        if self.order == "pre":
            h = feed
            for k in range(self.t):
                h = feed + self.conv_r(self.act(self._norm(k)(h)))
            return h
        h = self.act(self._norm(0)(feed))
        for k in range(1, self.t + 1):
            h = self.act(self._norm(k)(feed + self.conv_r(h)))
        return h

    def extra_repr(self) -> str:
        parts = [f"t={self.t}"] + ([f"order={self.order!r}"] if self.order != "post" else [])
        return ", ".join(parts + (["step_norm=True"] if self.step_norm else []))


class RecurrentResidualBlock(nn.Module):
    """Recurrent residual (R2) unit of R2U-Net (Alom et al.).

    ``y = conv1x1(x)``; output ``y + RC(RC(y))`` with two
    :class:`RecurrentConv` layers of ``out_channels`` channels.
    (N, in_channels, H, W) -> (N, out_channels, H, W).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts; the 1x1 convolution (with bias, no normalisation, as
        in R2U-Net) maps ``in_channels`` to ``out_channels``.
    t : int
        Recurrent steps of each :class:`RecurrentConv`.
    kernel_size : int
        Kernel size of the recurrent convolutions.
    activation : str
        One of :data:`ACTIVATIONS`.
    step_norm : bool
        One BatchNorm per recurrent step (see :class:`RecurrentConv`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        t: int = 2,
        kernel_size: int = 3,
        activation: str = "relu",
        step_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels)
        self.project = nn.Conv2d(in_channels, out_channels, 1)
        self.body = nn.Sequential(
            RecurrentConv(out_channels, out_channels, t=t, kernel_size=kernel_size, activation=activation,
                          step_norm=step_norm),
            RecurrentConv(out_channels, out_channels, t=t, kernel_size=kernel_size, activation=activation,
                          step_norm=step_norm),
        )

    @property
    def t(self) -> int:
        """Recurrent steps of the unit's recurrent convolutions."""
        return self.body[0].t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(x)
        return y + self.body(y)


class ResidualEncoder(nn.Module):
    """A downsampling encoder: stem, then stride-2 stages with a residual unit each.

    Level 0 is a 3x3 conv-BN-act at full resolution (``widths[0]`` channels);
    level k >= 1 is a stride-2 3x3 conv-BN-act followed by a
    :class:`ResidualBlock`, with ``widths[k]`` channels at 1/2**k of the input.

    Parameters
    ----------
    in_channels : int
        Image channels.
    widths : sequence of int
        Channels of levels 0, 1, ..., K (K = ``len(widths) - 1`` downsamplings).
    activation : str
        One of :data:`ACTIVATIONS`.

    Notes
    -----
    ``forward``: (N, in_channels, H, W) -> list of K + 1 tensors, level k of
    shape (N, widths[k], ceil(H / 2**k), ceil(W / 2**k)) (exactly H / 2**k when
    H is a multiple of 2**K). ``self.levels[k]`` is level k's module, so a
    network can number them as freezable blocks.
    """

    def __init__(self, in_channels: int, widths, *, activation: str = "relu") -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths:
            raise ConfigError("an encoder needs at least one level width")
        _check_positive(in_channels=in_channels, **{f"widths[{k}]": w for k, w in enumerate(widths)})
        levels: list[nn.Module] = [ConvBNAct(in_channels, widths[0], 3, activation=activation)]
        for prev, width in zip(widths[:-1], widths[1:]):
            levels.append(nn.Sequential(ConvBNAct(prev, width, 3, stride=2, activation=activation),
                                        ResidualBlock(width, width, activation=activation)))
        self.levels = nn.ModuleList(levels)
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


def pad_to_match(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Zero-pad or crop ``x`` at the bottom/right to ``ref``'s spatial size.

    Parameters
    ----------
    x : (N, C, h, w) tensor
        Typically an upsampled map (a 75-pixel side pooled to 37 comes back
        as 74; a stride-2 convolution of 75 gives 38, which comes back as 76).
    ref : (..., H, W) tensor
        The skip connection whose size ``x`` must take.

    Returns
    -------
    (N, C, H, W) tensor
        ``x`` unchanged when the sizes already agree; otherwise rows/columns
        are added (zeros) or removed at the bottom and right, so that the
        top-left pixel of ``x`` stays aligned with that of ``ref``.
    """
    dh = ref.shape[-2] - x.shape[-2]
    dw = ref.shape[-1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    # F.pad pads with zeros for positive amounts and crops for negative ones.
    return F.pad(x, (0, dw, 0, dh))


class FreezableModel(nn.Module):
    """Base class of networks made of numbered blocks that can be frozen.

    A subclass stores its blocks, from input to output, in ``self.blocks``
    (an ``nn.ModuleList``; block 1 is ``self.blocks[0]``) and registers them
    nowhere else. :func:`freeze_blocks` then freezes the first k of them.

    Frozen blocks stay frozen across ``model.train()``: this class overrides
    :meth:`train` so that the frozen blocks are always in eval mode, which
    keeps their batch normalisation using, and not updating, its running
    statistics, and turns their dropout off.
    """

    blocks: nn.ModuleList
    frozen_blocks: int = 0

    def train(self, mode: bool = True) -> FreezableModel:
        super().train(mode)
        for block in self.blocks[: self.frozen_blocks]:
            block.eval()
        return self


def freeze_blocks(model: FreezableModel, k: int) -> FreezableModel:
    """Freeze blocks 1..k of ``model`` and make blocks k+1.. trainable.

    For each of the first ``k`` blocks: ``requires_grad`` is set to False on
    every parameter, and the block is kept in eval mode even when
    ``model.train()`` is called later (see :class:`FreezableModel`), so its
    BatchNorm running statistics do not change during fine-tuning. All other
    blocks get ``requires_grad=True``. ``k = 0`` unfreezes everything.

    Build the optimizer after freezing, from
    ``[p for p in model.parameters() if p.requires_grad]`` (optimizers skip
    parameters without gradients anyway, but then weight decay and momentum
    buffers are not allocated for nothing).

    Parameters
    ----------
    model : FreezableModel
        E.g. :class:`~nucleikit.models.micronet.MicroNet` (10 blocks).
    k : int
        Number of leading blocks to freeze, 0 <= k <= len(model.blocks).

    Returns
    -------
    The same model (modified in place), in its previous train/eval mode.

    Raises
    ------
    ConfigError
        If the model has no numbered blocks or ``k`` is out of range.
    """
    if not isinstance(model, FreezableModel):
        raise ConfigError(f"{type(model).__name__} has no numbered blocks to freeze")
    n = len(model.blocks)
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n:
        raise ConfigError(f"k must be an integer in 0..{n} for {type(model).__name__}, got {k!r}")
    for index, block in enumerate(model.blocks):
        for param in block.parameters():
            param.requires_grad_(index >= k)
    model.frozen_blocks = k
    # Re-apply the current mode so newly frozen blocks switch to eval now.
    model.train(model.training)
    return model
