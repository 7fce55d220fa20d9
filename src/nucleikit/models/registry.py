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
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
]

TASKS = ("detection", "segmentation", "classification")
TARGETS = ("proximity", "density", "mask", "instance", "label")

#: Training recipe of Xing et al.'s detectors (MicroNet, FCRN, U-Net regressor).
XING_RECIPE = MappingProxyType(
    {"crop": 200, "optimizer": "sgd", "nesterov": True, "lr": 0.01, "momentum": 0.9, "batch_size": 8}
)
#: Training recipe of Alom et al.'s networks (UD-Net, U-Net, R2U-Net).
ALOM_RECIPE = MappingProxyType({"crop": 96, "optimizer": "adam", "lr": 2e-4, "batch_size": 16})

Builder = Callable[..., nn.Module]


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
        :func:`nucleikit.targets.instance_targets`), ``"label"`` (class scores).
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


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    task: str,
    target: str,
    loss: str,
    mpp: float | None,
    kwargs: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a model builder under ``name``.

    Parameters
    ----------
    name : str
        Unique registry name.
    task, target, loss, mpp
        See :class:`ModelSpec`.
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
        )
        _check_kwargs(spec, spec.kwargs)
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
        A freshly initialised model in training mode, on the CPU.

    Raises
    ------
    ConfigError
        Unknown name, a keyword the builder does not accept, or a value the
        builder rejects.
    """
    spec = get_spec(name)
    _check_kwargs(spec, overrides)
    return spec.builder(**{**spec.kwargs, **overrides})


def _check_kwargs(spec: ModelSpec, given: Mapping[str, Any]) -> None:
    accepted = spec.accepted_kwargs()
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model {spec.name!r} does not accept {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'nothing'}"
        )
