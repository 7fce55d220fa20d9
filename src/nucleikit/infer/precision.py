"""Which arithmetic a network runs in: ``--precision auto|fp32|bf16``.

bfloat16 autocast halves the bytes every activation moves, and on a CPU with native
bf16 instructions (AMX tiles, ``amx_bf16``, or AVX-512 BF16, ``avx512_bf16``) it roughly
doubles a convolution's speed. Without them oneDNN emulates bf16 and the same network can
run *slower* than in fp32 (an AVX-512 Xeon without AVX512-BF16: 0.5-0.7x for MicroNet,
measured). And it changes the network's outputs slightly, so whether a model keeps its
accuracy under it is a fact about that model, measured on its validation data (fp32 against
forced bf16, ``tools/bf16_verdict.py``; ``micronet``'s older verdict compared its test figures)
and stored with its weights (metadata key ``bf16_ok``, :mod:`nucleikit.models.weights`).

``auto`` (the default) therefore runs bf16 only when both hold: the CPU has native bf16 and
the weights say their figures hold under it. Absent or false means fp32. ``fp32`` and
``bf16`` force one or the other. The choice is one pure function of the request, the CPU
flags and the stored verdict (:func:`choose_precision`), and every run records the result
with its reason (:attr:`Precision.record`).

This module imports neither torch nor NumPy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = [
    "PRECISIONS",
    "BF16_CPU_FLAGS",
    "Precision",
    "choose_precision",
    "check_precision",
    "requested_precision",
    "cpu_flags",
    "cpu_model",
    "native_bf16",
    "resolve_precision",
]

#: What a user may ask for.
PRECISIONS = ("auto", "fp32", "bf16")
#: /proc/cpuinfo flags of CPUs that run bf16 natively (AMX tiles; AVX-512 BF16 dot products).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: Metadata key of the stored verdict: does the model keep its figures under bf16?
BF16_META_KEY = "bf16_ok"


@dataclass(frozen=True)
class Precision:
    """The precision a network runs in, and why.

    Attributes
    ----------
    used : {"fp32", "bf16"}
    requested : {"auto", "fp32", "bf16"}
    reason : str
        One phrase, e.g. ``"auto: fp32, CPU has no AMX/AVX512-BF16"``.
    """

    used: str
    requested: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.used == "bf16"

    @property
    def record(self) -> dict[str, str]:
        """What a run record stores: ``{"used", "requested", "reason"}``."""
        return {"used": self.used, "requested": self.requested, "reason": self.reason}


def check_precision(value: Any) -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigError`."""
    if value not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return str(value)


def requested_precision(precision: str, bf16: bool | None) -> str:
    """The request of a config holding both the new ``precision`` and the old ``bf16`` flag.

    ``bf16=None`` (not given) leaves ``precision``; ``bf16=True`` asks for bf16 and
    ``bf16=False`` for fp32, as they did before ``precision`` existed, so older callers keep
    their behaviour. Both given and disagreeing is a :class:`ConfigError`.

    Examples
    --------
    >>> requested_precision("auto", None), requested_precision("auto", True), requested_precision("auto", False)
    ('auto', 'bf16', 'fp32')
    """
    precision = check_precision(precision)
    if bf16 is None:
        return precision
    legacy = "bf16" if bf16 else "fp32"
    if precision not in ("auto", legacy):
        raise ConfigError(f"bf16={bf16} contradicts precision={precision!r}: give one of them")
    return legacy


def choose_precision(requested: str, *, cpu_flags: Iterable[str], bf16_ok: Any) -> Precision:
    """The precision to run in (module docstring); pure, so any CPU can be tested anywhere.

    Parameters
    ----------
    requested : {"auto", "fp32", "bf16"}
    cpu_flags : iterable of str
        The CPU's feature flags as ``/proc/cpuinfo`` names them (:func:`cpu_flags`).
    bf16_ok : bool or None
        The weights' stored verdict (``WeightsMeta.bf16_ok``); only ``True`` counts as yes.

    Examples
    --------
    >>> choose_precision("auto", cpu_flags={"avx512f", "amx_bf16"}, bf16_ok=True).used
    'bf16'
    >>> choose_precision("auto", cpu_flags={"avx512f"}, bf16_ok=True).reason
    'auto: fp32, CPU has no AMX/AVX512-BF16'
    """
    requested = check_precision(requested)
    if requested != "auto":
        return Precision(requested, requested, f"{requested}: asked for")
    flags = set(cpu_flags)
    native = [f for f in BF16_CPU_FLAGS if f in flags]
    if not native:
        return Precision("fp32", "auto", "auto: fp32, CPU has no AMX/AVX512-BF16")
    if bf16_ok is not True:
        verdict = "not measured" if bf16_ok is None else "does not hold"
        return Precision("fp32", "auto", f"auto: fp32, the weights' accuracy under bf16 {verdict} ({BF16_META_KEY})")
    return Precision("bf16", "auto", f"auto: bf16, CPU has {'/'.join(native)} and the weights hold under bf16")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (``/proc/cpuinfo``; empty where there is none, e.g. macOS).

    An empty set means "no native bf16" to :func:`choose_precision`: unknown CPUs run fp32.
    """
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or ``""``."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether a CPU with these flags (default: this one) runs bf16 natively."""
    present = set(cpu_flags() if flags is None else flags)
    return any(f in present for f in BF16_CPU_FLAGS)


def resolve_precision(requested: str, meta: dict | None = None) -> Precision:
    """:func:`choose_precision` for this CPU and the weights' metadata ``meta``."""
    return choose_precision(requested, cpu_flags=cpu_flags(), bf16_ok=(meta or {}).get(BF16_META_KEY))
