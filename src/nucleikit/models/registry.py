"""The model registry: one name per architecture, with what it is trained for.

Builders register themselves with :func:`register_model` when their module is
imported (``import nucleikit.models`` imports them all); the rest of nucleikit
asks the registry instead of chaining ``if name == ...``:

>>> from nucleikit.models import build_model, get_spec, list_models
>>> list_models(task="segmentation")
['r2unet', 'unet']
>>> get_spec("micronet").target
'proximity'
>>> model = build_model("micronet", width=32)

An unknown name or keyword is a :class:`~nucleikit.errors.ConfigError`; the
registry never substitutes a default model.

``ModelSpec.train`` holds nucleikit's recipe defaults for the training loop
(keys ``crop`` in pixels, ``optimizer`` ("sgd" or "adam"), ``nesterov``,
``lr``, ``momentum``, ``batch_size``): :data:`XING_RECIPE` or
:data:`ALOM_RECIPE`. Crop sizes and optimizers follow the papers (Xing et al.
2019: 200x200 crops, SGD with Nesterov momentum; Alom et al. 2022: 96x96
patches, Adam with learning rate 2e-4); the SGD learning rate and momentum
(0.01, 0.9) and all batch sizes are nucleikit's starting values, to be tuned
on validation data.

``ModelSpec.alignment`` is the network's total downsampling factor (16 for four
2x poolings or stride-2 convolutions), an int or a function of the builder's
arguments (a U-Net's depth is ``len(widths)``). Tiled inference is exact only on
windows laid out on that lattice (:mod:`nucleikit.infer.tiling`), so every model
declares it, :func:`build_model` sets it on the network it returns
(``model.alignment``), and the test suite checks each declaration against the
network itself (:func:`measure_alignment`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from torch import nn

from ..errors import ConfigError

__all__ = [
    "TASKS",
    "TARGETS",
    "XING_RECIPE",
    "ALOM_RECIPE",
    "ModelSpec",
    "register_model",
    "list_models",
    "get_spec",
    "build_model",
    "measure_alignment",
]

TASKS = ("detection", "segmentation", "classification")
TARGETS = ("proximity", "density", "mask", "instance", "label", "boxes")

#: Training recipe of Xing et al.'s detectors (MicroNet, FCRN, U-Net regressor).
XING_RECIPE = MappingProxyType(
    {"crop": 200, "optimizer": "sgd", "nesterov": True, "lr": 0.01, "momentum": 0.9, "batch_size": 8}
)
#: Training recipe of Alom et al.'s networks (UD-Net, U-Net, R2U-Net).
ALOM_RECIPE = MappingProxyType({"crop": 96, "optimizer": "adam", "lr": 2e-4, "batch_size": 16})

Builder = Callable[..., nn.Module]
#: A model's alignment: a constant, or a function of the complete builder arguments.
Alignment = int | Callable[[Mapping[str, Any]], int]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"micronet"``.
    builder : callable
        Keyword-only function returning the ``nn.Module``.
    task : str
        One of :data:`TASKS`.
    target : str
        What the network regresses or predicts, one of :data:`TARGETS`:
        ``"proximity"`` (Xing's proximity map), ``"density"`` (Gaussian
        density map), ``"mask"`` (foreground probability), ``"instance"``
        (foreground, boundary and normalised distance:
        :func:`nucleikit.targets.instance_targets`), ``"label"`` (class scores),
        ``"boxes"`` (a box detector trained on fixed-size boxes around the
        points, whose output is a detection map:
        :mod:`nucleikit.models.faster_rcnn`, trained by :mod:`nucleikit.train.boxes`).
    loss : str
        Training loss name (:mod:`nucleikit.losses`), e.g. ``"weighted_mse"``.
    mpp : float or None
        Default training resolution in micrometres per pixel (None when the
        training data have no fixed resolution, e.g. DSB2018).
    kwargs : Mapping
        Builder keyword arguments used unless overridden (read-only).
    train : Mapping
        Training recipe defaults (read-only; see the module docstring).
    description : str
        One line for ``nucleikit models``.
    alignment : int or callable
        Total downsampling factor of the network (pixels of the input per pixel
        of its coarsest feature map), or a function mapping the complete builder
        arguments (:meth:`full_kwargs`) to it; see :meth:`alignment_for`.
    """

    name: str
    builder: Builder
    task: str
    target: str
    loss: str
    mpp: float | None
    kwargs: Mapping[str, Any]
    train: Mapping[str, Any]
    description: str
    alignment: Alignment

    def accepted_kwargs(self) -> tuple[str, ...]:
        """Names of the keyword arguments the builder accepts."""
        params = inspect.signature(self.builder).parameters.values()
        return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))

    def full_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Every builder argument: its default, then ``kwargs``, then ``overrides``.

        Recording this complete set (as :func:`~nucleikit.models.weights.save_weights`
        does) rebuilds the same network even if a builder default changes later.

        Raises
        ------
        ConfigError
            An override the builder does not accept.
        """
        _check_kwargs(self, overrides)
        params = inspect.signature(self.builder).parameters.values()
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        return {**defaults, **self.kwargs, **overrides}

    def alignment_for(self, **overrides: Any) -> int:
        """Total downsampling factor of the network built with ``overrides``.

        Tiled inference lays every read window on a lattice of this step
        (:class:`~nucleikit.infer.tiling.TileGrid`); a wrong value breaks the
        tiled == untiled guarantee without an error, hence the test of every
        registered model against :func:`measure_alignment`.

        Raises
        ------
        ConfigError
            An override the builder does not accept, or a declared value that is
            not a positive integer.
        """
        value = self.alignment(self.full_kwargs(**overrides)) if callable(self.alignment) else self.alignment
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {self.name!r}: alignment must be a positive integer, got {value!r}")
        return value


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    task: str,
    target: str,
    loss: str,
    mpp: float | None,
    alignment: Alignment,
    kwargs: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a model builder under ``name``.

    Parameters
    ----------
    name : str
        Unique registry name.
    task, target, loss, mpp, alignment
        See :class:`ModelSpec`. ``alignment`` has no default: a network that
        downsamples by 32 tiled on a lattice of 16 would run and silently differ
        from its untiled output.
    kwargs : Mapping, optional
        Default builder arguments stored in the spec (must be accepted by the
        builder).
    train : Mapping, optional
        Training recipe defaults.
    description : str, optional
        One line; defaults to the first line of the builder's docstring.

    Returns
    -------
    The decorator; it returns the builder unchanged.

    Raises
    ------
    ConfigError
        If ``name`` is already registered, ``task``/``target`` are unknown, or
        ``kwargs`` names an argument the builder does not take.
    """
    if task not in TASKS:
        raise ConfigError(f"model {name!r}: unknown task {task!r}; known: {', '.join(TASKS)}")
    if target not in TARGETS:
        raise ConfigError(f"model {name!r}: unknown target {target!r}; known: {', '.join(TARGETS)}")

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is already registered")
        doc = inspect.getdoc(builder) or ""
        spec = ModelSpec(
            name=name,
            builder=builder,
            task=task,
            target=target,
            loss=loss,
            mpp=mpp,
            kwargs=MappingProxyType(dict(kwargs or {})),
            train=MappingProxyType(dict(train or {})),
            description=description if description is not None else doc.split("\n", 1)[0],
            alignment=alignment,
        )
        _check_kwargs(spec, spec.kwargs)
        spec.alignment_for()  # a constant or the defaults' value must be valid now, not at the first tile
        _REGISTRY[name] = spec
        return builder

    return decorator


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally of one task only.

    Raises
    ------
    ConfigError
        If ``task`` is given and is not one of :data:`TASKS`.
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return sorted(name for name, spec in _REGISTRY.items() if task is None or spec.task == task)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``.

    Raises
    ------
    ConfigError
        If no model of that name is registered (the message lists the known
        models).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ConfigError(f"unknown model {name!r}; known models: {known}") from None


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model: the spec's ``kwargs`` updated by ``overrides``.

    Parameters
    ----------
    name : str
        Registry name.
    **overrides
        Builder keyword arguments, e.g. ``width=32``.

    Returns
    -------
    nn.Module
        A freshly initialised model in training mode, on the CPU, with its total
        downsampling factor as ``model.alignment`` (:meth:`ModelSpec.alignment_for`),
        which the tiling engine reads.

    Raises
    ------
    ConfigError
        Unknown name, a keyword the builder does not accept, or a value the
        builder rejects.
    """
    spec = get_spec(name)
    _check_kwargs(spec, overrides)
    model = spec.builder(**{**spec.kwargs, **overrides})
    model.alignment = spec.alignment_for(**overrides)
    return model


def measure_alignment(model: nn.Module, *, in_channels: int = 3, max_factor: int = 64) -> int:
    """Total downsampling factor of ``model``, read from the feature maps it computes.

    One forward pass (eval mode, no gradient) on a random (1, C, 3 m, 5 m) probe,
    ``m = max_factor``, records the spatial shape of every 4-D tensor any torch
    operation returns (modules and functional calls alike). A feature map on a
    grid ``s`` times coarser than the input has shape ``(3 m / s, 5 m / s)``; the
    factor is the largest such ``s``. Tensors whose shape is not a common
    division of the probe (convolution kernels, global poolings) are ignored. The
    result depends on the architecture only, not on the weights: an untrained
    network whose deepest level contributes little still counts.

    Parameters
    ----------
    model : nn.Module
        Maps (B, C, H, W) to a dense (B, K, H, W) map or to class scores.
    in_channels : int
        C of the probe.
    max_factor : int
        Largest factor that can be told apart (the probe's sides are 3 and 5
        times it); a network downsampling further reads as a smaller factor.

    Returns
    -------
    int
        1 for a network that never downsamples.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    h, w = 3 * max_factor, 5 * max_factor
    factors = [1]

    class _Shapes(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-2] > 0 and out.shape[-1] > 0:
                sy, sx = Fraction(h, out.shape[-2]), Fraction(w, out.shape[-1])
                if sy == sx and sy.denominator == 1:
                    factors.append(int(sy))
            return out

    probe = torch.rand(1, in_channels, h, w, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Shapes():
            model(probe)
    finally:
        model.train(was_training)
    return max(factors)


def _check_kwargs(spec: ModelSpec, given: Mapping[str, Any]) -> None:
    accepted = spec.accepted_kwargs()
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model {spec.name!r} does not accept {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'nothing'}"
        )
