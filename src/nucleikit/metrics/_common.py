"""Helpers shared by the metric modules: argument checks and JSON values.

Private to :mod:`nucleikit.metrics`; nothing here is part of the public API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__: list[str] = []


def _check_same_length(name_a: str, a: Sequence[Any], name_b: str, b: Sequence[Any]) -> None:
    """Raise ValueError unless ``a`` and ``b`` hold one entry per image and are not empty."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must hold one entry per image, got {len(a)} and {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{name_a} and {name_b} are empty: there are no images to evaluate")


def _nan_to_none(value: float) -> float | None:
    """``value`` as a JSON number; NaN (undefined, e.g. ED without TP) becomes None."""
    return None if math.isnan(value) else float(value)
