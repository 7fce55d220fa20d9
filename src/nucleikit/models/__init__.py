"""Network architectures and the model registry.

Importing this package imports the architecture modules, whose builders
register themselves (:func:`~nucleikit.models.registry.register_model`);
nothing else happens at import time.

>>> from nucleikit.models import build_model, list_models
>>> list_models(task="detection")
['faster_rcnn', 'fcn', 'fcrn_a', 'fcrn_b', 'micronet', 'udnet', 'unet_regressor']
"""

from __future__ import annotations

from . import faster_rcnn, fcn, fcrn, micronet, unet  # noqa: F401  (imported to register the builders)
from . import densenet  # noqa: F401  (registers "densenet" and "dcrn")
from .blocks import freeze_blocks
from .registry import ModelSpec, build_model, get_spec, list_models, register_model
from .weights import load_weights, read_weights_meta, resolve_weights, save_weights
from .weights_meta import WeightsMeta

__all__ = [
    "ModelSpec",
    "build_model",
    "freeze_blocks",
    "get_spec",
    "list_models",
    "load_weights",
    "read_weights_meta",
    "register_model",
    "resolve_weights",
    "save_weights",
    "WeightsMeta",
]
