"""Typed metadata of a weights file: :class:`WeightsMeta`, checked once when the file is read.

The JSON object a weights file keeps under ``"nucleikit"`` (:mod:`nucleikit.models.weights`)
becomes one frozen record. Every key that inference or training reads is a typed attribute,
checked by :meth:`WeightsMeta.from_dict`: a value nucleikit cannot use is a
:class:`~nucleikit.errors.WeightsError` naming the file and the key, at load time, not a crash
or a silent fallback later. Everything else (figures, provenance, commands: ``test``,
``validation``, ``training``, ``train_config``, ``dataset``, ``split``, ...) travels untouched
in ``extra``. :meth:`WeightsMeta.to_dict` gives the JSON object back exactly: the same keys and
values (``7`` stays ``7`` and ``7.0`` stays ``7.0``; a key the file lacks stays absent, its
default is not written), so the tools that rewrite metadata keep every key.

Typed keys
----------
``model``, ``model_kwargs``, ``format_version``, ``num_params``, ``storage``
    What rebuilds the network (:func:`~nucleikit.models.weights.load_weights`).
``task``, ``target``, ``target_params``, ``name``
    What the network is: a registry task and training target, and the weights' name.
``mpp``, ``mean``, ``std``, ``colour``, ``intensity``, ``halo``, ``bf16_ok``
    How its input is prepared and how it is run.
``postprocess``
    The task's tuned post-processing: :class:`DetectionPost` for a detector,
    :class:`SegmentationPost` for a segmenter (other tasks keep theirs in ``extra``).
``calibration``
    A detector's score calibration (:class:`Calibration`; :mod:`nucleikit.infer.calibration`).
``classes``, ``patch``, ``tta``, ``lab_mean``, ``lab_std``
    A patch classifier's classes, patch side, test-time views and training stain.

Legacy defaults
---------------
A key that older weights lack takes the value below; this module is the one place these
defaults live. Every file nucleikit writes today records each of them, except where noted.

=====================================  ===================================================
key                                    absent means
=====================================  ===================================================
``task``                               the registry's task of ``model``, as
                                       :func:`~nucleikit.models.weights.save_weights`
                                       writes for a caller naming none (a file made
                                       another way); metadata built in memory for one
                                       kind of model takes that kind (a ``Detector``'s is a
                                       detector's); otherwise None
``target``                             ``"mask"`` for a segmenter (the binary heads predate
                                       the key), else None
``storage``                            ``"float32"`` (files from before float16 storage)
``colour``                             ``"rgb"`` (every network before grey input)
``intensity``                          ``"none"`` (no per-image stretch; detectors and
                                       classifiers never record one)
``tta``                                1: one view (classifiers before the key)
``postprocess`` of a detector          all of :class:`DetectionPost`'s defaults: xi 0.3,
                                       peak distance 3 px, no floor (a state dict converted
                                       with :data:`~nucleikit.models.weights.CONVERT_RECIPE`
                                       records no post-processing; these are the values
                                       such weights have always run with)
``postprocess.threshold_abs``          0: no floor, the relative rule alone (weights tuned
                                       before the floor; their results stay bit for bit)
``postprocess`` keys of a segmenter    :class:`SegmentationPost`'s defaults, key by key
                                       (binary heads record no marker keys, instance heads
                                       no seed keys)
=====================================  ===================================================

Refused rather than defaulted: a detector's ``postprocess`` that is present but lacks
``threshold_rel`` or ``min_distance``. Every file nucleikit writes has both, so such a file was
edited by hand or damaged, and the old silent fallback (xi 0.3, 3 px) would have changed its
figures without a word.

Mapping access
--------------
``meta["mpp"]``, ``meta.get("test")``, ``"calibration" in meta``, ``dict(meta)`` and
``{**meta, "key": value}`` read the JSON object (fresh copies of :meth:`~WeightsMeta.to_dict`'s
values; absent keys are absent): for tools, tests and scripts written when the metadata was a
dict. nucleikit's own modules read the attributes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from os import PathLike
from types import MappingProxyType
from typing import Any, Iterator

from ..errors import ConfigError, WeightsError
from .registry import TARGETS, TASKS, get_spec

__all__ = [
    "FORMAT_VERSION",
    "STORAGES",
    "COLOURS",
    "INTENSITY_MODES",
    "SEED_KINDS",
    "MARKER_KINDS",
    "TTA_SIZES",
    "DEFAULT_SEED_DETECTOR",
    "DetectionPost",
    "SegmentationPost",
    "Calibration",
    "WeightsMeta",
    "as_weights_meta",
    "check_calibration",
    "to_json",
]

#: Version of the weights file layout this nucleikit writes and reads (1..FORMAT_VERSION).
FORMAT_VERSION = 1
#: Precision of the stored floating-point tensors.
STORAGES = ("float32", "float16")
#: Input colour of a network.
COLOURS = ("rgb", "grey")
#: Per-image intensity normalisations a network may have been trained with.
INTENSITY_MODES = ("none", "percentile")
#: Watershed marker sources of a binary head: distance-transform maxima, or a detector's peaks.
SEED_KINDS = ("distance", "detector")
#: Marker maps of an instance head (:data:`nucleikit.postprocess.MARKER_KINDS`; a test keeps them equal).
MARKER_KINDS = ("distance", "boundary")
#: Test-time augmentation views (:data:`nucleikit.infer.tta.TTA_SIZES`; a test keeps them equal).
TTA_SIZES = (1, 2, 4, 8)
#: Bundled detector giving a binary head's seeds for ``seeds="detector"`` unless the weights name another.
DEFAULT_SEED_DETECTOR = "micronet"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --------------------------------------------------------------------------- JSON <-> frozen values

def _freeze(value: Any) -> Any:
    """A JSON value made read-only: objects as read-only mappings, arrays as tuples."""
    if isinstance(value, _Record):
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def to_json(value: Any) -> Any:
    """A fresh JSON value (dicts and lists) of a frozen one, a record, or a plain JSON value."""
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


class _Record:
    """What the metadata records share: the keys their source lacked, and the JSON they give back.

    ``_absent`` maps each field that holds a legacy default because the source had no such key
    to that default. :meth:`to_dict` leaves such a field out while it still holds that value;
    a field given another value (``dataclasses.replace``) is written.
    """

    _absent: Mapping[str, Any]
    extra: Mapping[str, Any]

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "_absent":
                object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))
        object.__setattr__(self, "_absent", MappingProxyType(dict(self._absent)))

    def __reduce__(self):
        # read-only mappings do not pickle: rebuild from plain values (pickle, copy.deepcopy, Dask)
        state = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        return (_rebuild, (type(self), state))

    def recorded(self, key: str) -> bool:
        """Whether ``key`` is in the JSON object (False where a legacy default stands in, or for no such key)."""
        return key in self.extra or (key in self._typed() and not self._defaulted(key))

    def _defaulted(self, name: str) -> bool:
        return name in self._absent and _same(getattr(self, name), self._absent[name])

    def _typed(self) -> list[str]:
        return [f.name for f in fields(self) if f.name not in ("extra", "_absent")]

    def _keys(self) -> list[str]:
        return sorted([n for n in self._typed() if not self._defaulted(n)] + list(self.extra))

    def _json(self, key: str) -> Any:
        """The JSON value of ``key`` (KeyError when the object has no such key)."""
        if key in self.extra:
            return to_json(self.extra[key])
        if key not in self._typed() or self._defaulted(key):
            raise KeyError(key)
        return to_json(getattr(self, key))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object this record was read from (keys sorted, as weights files store them)."""
        return {k: self._json(k) for k in self._keys()}


def _plain(value: Any) -> Any:
    """A frozen value with its read-only mappings as dicts (records and tuples kept)."""
    if isinstance(value, _Record):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _rebuild(cls: type, state: dict[str, Any]) -> Any:
    return cls(**state)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- checks

class _Check:
    """Reads typed values from one JSON object, raising one-line WeightsErrors that name the file."""

    def __init__(self, d: Mapping[str, Any], path: str | PathLike[str], prefix: str = "metadata") -> None:
        self.d, self.path, self.prefix = d, path, prefix
        #: Keys the object lacks, with the default each got.
        self.absent: dict[str, Any] = {}

    def fail(self, reason: str) -> WeightsError:
        return WeightsError(self.path, reason)

    def bad(self, key: str, what: str) -> WeightsError:
        return self.fail(f"{self.prefix} {key} must be {what}, got {self.d[key]!r}")

    def get(self, key: str, default: Any = None, *, check=None, what: str = "", null: bool = False) -> Any:
        """``d[key]`` passed through ``check`` (False: refused); ``default`` (and noted absent) if missing."""
        if key not in self.d:
            self.absent[key] = default
            return default
        value = self.d[key]
        if value is None and null:
            return None
        if check is not None and not check(value):
            raise self.bad(key, what)
        return value

    def choice(self, key: str, choices: tuple, default: Any, message: str | None = None) -> Any:
        """``d[key]`` if one of ``choices``; ``message`` (formatted with the value) when not."""
        value = self.get(key, default)
        if value not in choices or isinstance(value, bool):
            if message is not None:
                raise self.fail(message.format(value=value))
            raise self.bad(key, "one of " + ", ".join(map(str, choices)))
        return value


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return _real(v) and float(v).is_integer()


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v: Any) -> bool:
    """A list of finite real numbers (not booleans)."""
    return isinstance(v, (list, tuple)) and all(_real(x) for x in v)


def _strings(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) >= 1 and all(isinstance(x, str) for x in v)


def check_calibration(map_values: Any, probabilities: Any) -> None:
    """Refuse a score calibration that is not a monotone map (ValueError, ``"calibration: ..."``).

    The one rule of :class:`Calibration` and :class:`~nucleikit.infer.calibration.ScoreCalibration`:
    non-empty lists of numbers of one length, finite, ``map_values`` strictly increasing,
    ``probabilities`` non-decreasing and in [0, 1].
    """
    lists = isinstance(map_values, (list, tuple)) and isinstance(probabilities, (list, tuple))
    if not lists or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                            for v in (*map_values, *probabilities)):
        raise ValueError("calibration: map_values and probabilities must be lists of numbers")
    if len(map_values) != len(probabilities) or not map_values:
        raise ValueError("calibration: map_values and probabilities must be non-empty lists of one length")
    if not all(math.isfinite(v) for v in (*map_values, *probabilities)):
        raise ValueError("calibration: values must be finite")
    if any(b <= a for a, b in zip(map_values, map_values[1:])):
        raise ValueError("calibration: map_values must be strictly increasing")
    if any(b < a for a, b in zip(probabilities, probabilities[1:])) or min(probabilities) < 0 or max(probabilities) > 1:
        raise ValueError("calibration: probabilities must be non-decreasing and in [0, 1]")


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class DetectionPost(_Record):
    """A detector's tuned peak rule (:func:`~nucleikit.postprocess.peak_threshold`).

    Attributes
    ----------
    threshold_rel : float
        xi: a peak is kept above ``xi * max(map)``, 0 <= xi <= 1. Legacy default 0.3 only when
        the whole ``postprocess`` is absent (module docstring).
    min_distance : float
        Minimum distance between peaks in model pixels (>= 0). Legacy default 3 likewise.
    threshold_abs : float
        Absolute floor in map units (>= 0); absent: 0, the relative rule alone.
    extra : mapping
        Any other key, kept for :meth:`to_dict`.
    """

    threshold_rel: float = 0.3
    min_distance: float = 3
    threshold_abs: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    _absent: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Any, path: str | PathLike[str]) -> "DetectionPost":
        if d is None:  # no post-processing recorded at all: a converted state dict
            return cls(_absent={"threshold_rel": 0.3, "min_distance": 3, "threshold_abs": 0.0})
        if not isinstance(d, Mapping):
            raise WeightsError(path, f"metadata postprocess must be an object, got {d!r}")
        for key in ("threshold_rel", "min_distance"):
            if key not in d:
                raise WeightsError(path, f"metadata postprocess has no {key} (every detector nucleikit writes "
                                         "records threshold_rel and min_distance): the file was edited or damaged")
        c = _Check(d, path, "postprocess")
        return cls(
            threshold_rel=c.get("threshold_rel", check=lambda v: _real(v) and 0 <= v <= 1, what="a number in [0, 1]"),
            min_distance=c.get("min_distance", check=lambda v: _real(v) and v >= 0, what="a number >= 0"),
            threshold_abs=c.get("threshold_abs", 0.0, check=lambda v: _real(v) and v >= 0,
                                what="a finite number >= 0"),
            extra={k: v for k, v in d.items() if k not in ("threshold_rel", "min_distance", "threshold_abs")},
            _absent=c.absent,
        )


@dataclass(frozen=True)
class SegmentationPost(_Record):
    """A segmenter's tuned post-processing (:mod:`nucleikit.postprocess.instances`); defaults key by key.

    Attributes
    ----------
    threshold : float
        Foreground probability threshold in [0, 1]; default 0.5.
    min_distance : int
        Binary heads: minimum distance between watershed seeds in model pixels; default 5.
    min_size : int
        Smallest instance kept, in model pixels; default 10.
    seeds : {"distance", "detector"}
        Binary heads: where the watershed seeds come from; default "distance".
    seed_detector : str
        Bundled name or path of the detector giving ``seeds="detector"``; default
        :data:`DEFAULT_SEED_DETECTOR`.
    markers : {"distance", "boundary"}
        Instance heads: the marker map; default "distance".
    marker_threshold : float
        Instance heads: marker threshold in [0, 1]; default 0.5.
    extra : mapping
        Any other key (e.g. ``tuned``: the values chosen per seed kind), kept for :meth:`to_dict`.
    """

    threshold: float = 0.5
    min_distance: int = 5
    min_size: int = 10
    seeds: str = "distance"
    seed_detector: str = DEFAULT_SEED_DETECTOR
    markers: str = "distance"
    marker_threshold: float = 0.5
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    _absent: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Any, path: str | PathLike[str]) -> "SegmentationPost":
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise WeightsError(path, f"metadata postprocess must be an object, got {d!r}")
        c = _Check(d, path, "postprocess")
        unit = {"check": lambda v: _real(v) and 0 <= v <= 1, "what": "a number in [0, 1]"}
        count = {"check": lambda v: _whole(v) and v >= 0, "what": "a whole number >= 0"}
        typed = {f.name for f in fields(cls)} - {"extra", "_absent"}
        return cls(
            threshold=c.get("threshold", 0.5, **unit),
            min_distance=c.get("min_distance", 5, **count),
            min_size=c.get("min_size", 10, **count),
            seeds=c.choice("seeds", SEED_KINDS, "distance"),
            seed_detector=c.get("seed_detector", DEFAULT_SEED_DETECTOR, check=lambda v: isinstance(v, str) and v,
                                what="a weights name or path"),
            markers=c.choice("markers", MARKER_KINDS, "distance", "unknown watershed markers {value!r}"),
            marker_threshold=c.get("marker_threshold", 0.5, **unit),
            extra={k: v for k, v in d.items() if k not in typed},
            _absent=c.absent,
        )


@dataclass(frozen=True)
class Calibration(_Record):
    """A detector's score calibration as stored (:class:`~nucleikit.infer.calibration.ScoreCalibration`).

    Attributes
    ----------
    map_values : tuple of float
        Knots on the raw score axis, strictly increasing.
    probabilities : tuple of float
        Fraction of true nuclei at each knot, non-decreasing, in [0, 1].
    n_peaks : int
        Detections the fit saw; absent: 0.
    fitted_on : str
        What they came from; absent: "".
    """

    map_values: tuple[float, ...] = ()
    probabilities: tuple[float, ...] = ()
    n_peaks: int = 0
    fitted_on: str = ""
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    _absent: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Any, path: str | PathLike[str]) -> "Calibration":
        def bad(reason: str) -> WeightsError:
            return WeightsError(path, f"bad score calibration in the metadata: {reason}")

        if not isinstance(d, Mapping) or "map_values" not in d or "probabilities" not in d:
            raise bad("calibration: needs map_values and probabilities")
        try:
            check_calibration(d["map_values"], d["probabilities"])
        except ValueError as exc:
            raise bad(str(exc)) from None
        c = _Check(d, path, "calibration")
        return cls(
            map_values=tuple(d["map_values"]),
            probabilities=tuple(d["probabilities"]),
            n_peaks=c.get("n_peaks", 0, check=lambda v: _int(v) and v >= 0, what="a whole number >= 0"),
            fitted_on=c.get("fitted_on", "", check=lambda v: isinstance(v, str), what="a string"),
            extra={k: v for k, v in d.items() if k not in ("map_values", "probabilities", "n_peaks", "fitted_on")},
            _absent=c.absent,
        )


_FILE_KEYS = ("model", "model_kwargs", "format_version")


@dataclass(frozen=True, eq=False)
class WeightsMeta(_Record, Mapping):
    """The metadata of a weights file, typed and checked (module docstring: keys, legacy defaults).

    Build one with :meth:`from_dict` (what :func:`~nucleikit.models.weights.read_weights_meta`
    and :func:`~nucleikit.models.weights.load_weights` return). Compares equal to a dict holding
    the same JSON object.

    Attributes
    ----------
    model : str or None
        Registry name (:func:`~nucleikit.models.registry.list_models`); None only for metadata
        built in memory without one.
    model_kwargs : mapping
        Every builder keyword argument (read-only; arrays as tuples).
    format_version : int or None
        Version of the file layout, 1..:data:`FORMAT_VERSION`; None only in memory.
    num_params : int or None
        Parameter elements, checked against the rebuilt model by ``load_weights``.
    storage : {"float32", "float16"}
        Precision of the stored floating-point tensors.
    task : {"detection", "segmentation", "classification"} or None
        Registry task (legacy default: module docstring).
    target : str or None
        Training target (:data:`~nucleikit.models.registry.TARGETS`).
    target_params : mapping or None
        The target's parameters (e.g. ``d_microns``, ``alpha``; read-only).
    name : str or None
        Name of the weights (the bundled name, or the one given when shipping).
    mpp : float or None
        Resolution the network was trained at, µm/px; None: it runs at the input's.
    mean, std : tuple of float or None
        Per-channel standardisation of the [0, 1] input; ``load_weights`` refuses None.
    colour : {"rgb", "grey"}
    intensity : {"none", "percentile"}
        Per-image intensity normalisation of the input.
    halo : int or None
        Receptive-field radius in model pixels (the tiling halo); None: measured when run.
    bf16_ok : bool or None
        Whether the model's figures hold under bfloat16 autocast (``tools/bf16_verdict.py``:
        validation figures, fp32 against bf16); None: not measured.
    postprocess : DetectionPost, SegmentationPost or None
        The task's tuned post-processing (None for other tasks, whose ``postprocess`` if any
        stays in ``extra``).
    calibration : Calibration or None
        A detector's score calibration.
    classes : tuple of str or None
        A classifier's class names, in output order.
    patch : int or None
        A classifier's patch side in pixels.
    tta : {1, 2, 4, 8}
        A classifier's test-time augmentation views.
    lab_mean, lab_std : tuple of float or None
        A classifier's training stain (CIELAB moments) for Reinhard normalisation.
    extra : mapping
        Every other key (figures, provenance, commands), read-only, kept for :meth:`to_dict`.
    """

    model: str | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    format_version: int | None = None
    num_params: int | None = None
    storage: str = "float32"
    task: str | None = None
    target: str | None = None
    target_params: Mapping[str, Any] | None = None
    name: str | None = None
    mpp: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    colour: str = "rgb"
    intensity: str = "none"
    halo: int | None = None
    bf16_ok: bool | None = None
    postprocess: DetectionPost | SegmentationPost | None = None
    calibration: Calibration | None = None
    classes: tuple[str, ...] | None = None
    patch: int | None = None
    tta: int = 1
    lab_mean: tuple[float, ...] | None = None
    lab_std: tuple[float, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    _absent: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    # -- the JSON object, read-only (Mapping)

    def __getitem__(self, key: str) -> Any:
        return self._json(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    # -- reading

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], path: str | PathLike[str], *, partial: bool = False, task: str | None = None
    ) -> "WeightsMeta":
        """Check a metadata JSON object once and type it.

        Parameters
        ----------
        d : mapping
            The JSON object (not modified).
        path : str or PathLike
            The file it came from (or the weights' name), named in errors.
        partial : bool
            Metadata handed in with a model built in memory (``Detector(model, {...})``):
            ``model``, ``model_kwargs`` and ``format_version`` may be absent. A file's
            metadata (False, the default) must have them.
        task : str or None
            The task to take when ``d`` names none and the registry does not know its
            ``model`` (e.g. "detection" for a ``Detector``'s metadata).

        Raises
        ------
        WeightsError
            One line naming ``path`` and the first key whose value nucleikit cannot use.
        """
        if isinstance(d, WeightsMeta):
            d = d.to_dict()
        if not isinstance(d, Mapping):
            raise WeightsError(path, "metadata is not a JSON object")
        c = _Check(d, path)
        values = {**_file_keys(c, partial), **_input_keys(c)}
        values.update(_kind_keys(c, values["model"], task))
        values.update(_task_keys(c, values["task"]))
        values.update(_classifier_keys(c))
        typed = {f.name for f in fields(cls)} - {"extra", "_absent"}
        if values["postprocess"] is None:
            typed.discard("postprocess")
        return cls(**values, extra={k: v for k, v in d.items() if k not in typed}, _absent=c.absent)


def _file_keys(c: _Check, partial: bool) -> dict[str, Any]:
    """``model``, ``model_kwargs``, ``format_version``, ``num_params``, ``storage``."""
    d = c.d
    if (not partial or "model" in d) and not isinstance(d.get("model"), str):
        raise c.fail("metadata names no model")
    if (not partial or "model_kwargs" in d) and not isinstance(d.get("model_kwargs"), Mapping):
        raise c.fail("metadata has no model_kwargs object")
    version = d.get("format_version")
    if not partial or "format_version" in d:
        if not _int(version) or not 1 <= version <= FORMAT_VERSION:
            readable = f"1..{FORMAT_VERSION}"
            raise c.fail(f"format version {version!r} is not readable (this nucleikit reads {readable})")
    return {
        "model": c.get("model"),
        "model_kwargs": c.get("model_kwargs", _EMPTY),
        "format_version": c.get("format_version"),
        "num_params": c.get("num_params", check=lambda v: _int(v) and v >= 0, what="a whole number >= 0"),
        "storage": c.choice("storage", STORAGES, "float32"),
    }


def _input_keys(c: _Check) -> dict[str, Any]:
    """How the input is prepared and the network run: ``mpp``, ``mean``/``std``, ``colour`` ..."""
    d = c.d
    bf16_ok = c.get("bf16_ok", check=lambda v: isinstance(v, bool), what="true, false or absent", null=True)
    mean, std = d.get("mean"), d.get("std")
    if mean is not None or std is not None:
        if not (_numbers(mean) and _numbers(std) and len(mean) == len(std) >= 1):
            raise c.fail(f"metadata mean and std must be lists of numbers of one length, got {mean!r} and {std!r}")
        if min(std) <= 0:
            raise c.fail(f"metadata std must be positive, got {std!r}")
    mpp = c.get("mpp", check=lambda v: _real(v) and v > 0, what="a positive number of microns per pixel or null",
                null=True)
    return {
        "bf16_ok": bf16_ok,
        "mean": c.get("mean"),
        "std": c.get("std"),
        "mpp": mpp,
        "colour": c.choice("colour", COLOURS, "rgb", "unknown colour {value!r} in the metadata"),
        "intensity": c.choice("intensity", INTENSITY_MODES, "none", "unknown intensity normalisation {value!r}"),
        "halo": c.get("halo", check=lambda v: _int(v) and v >= 0, what="a whole number of pixels >= 0", null=True),
    }


def _kind_keys(c: _Check, model: str | None, task: str | None) -> dict[str, Any]:
    """What the network is: ``task`` (legacy default: module docstring), ``target``, ``name`` ..."""
    if "task" in c.d:
        task = c.choice("task", TASKS, None)
    else:
        try:
            task = get_spec(model).task if model is not None else task
        except ConfigError:  # an unknown model: load_weights says so
            pass
        c.absent["task"] = task
    target = c.get("target", "mask" if task == "segmentation" else None,
                   check=lambda v: v in TARGETS, what="one of " + ", ".join(TARGETS))
    return {
        "task": task,
        "target": target,
        "target_params": c.get("target_params", check=lambda v: isinstance(v, Mapping), what="an object"),
        "name": c.get("name", check=lambda v: isinstance(v, str), what="a string", null=True),
    }


def _task_keys(c: _Check, task: str | None) -> dict[str, Any]:
    """The task's ``postprocess`` and a detector's ``calibration``."""
    post_class = {"detection": DetectionPost, "segmentation": SegmentationPost}.get(task)
    post = None
    if post_class is not None:
        post = post_class.from_dict(c.d["postprocess"] if "postprocess" in c.d else None, c.path)
    if post_class is None or "postprocess" not in c.d:
        c.absent["postprocess"] = post  # another task's post-processing, if any, stays in extra
    calibration = c.get("calibration", null=True)
    return {
        "postprocess": post,
        "calibration": None if calibration is None else Calibration.from_dict(calibration, c.path),
    }


def _classifier_keys(c: _Check) -> dict[str, Any]:
    """A classifier's ``classes``, ``patch``, ``tta`` and training stain."""
    stain = {"check": lambda v: _numbers(v) and len(v) == 3, "what": "three numbers (L*, a*, b*)"}
    return {
        "classes": c.get("classes", check=_strings, what="a non-empty list of names"),
        "patch": c.get("patch", check=lambda v: _int(v) and v >= 1, what="a whole number of pixels >= 1"),
        "tta": c.choice("tta", TTA_SIZES, 1, "records tta = {value!r}; expected one of "
                        + ", ".join(map(str, TTA_SIZES))),
        "lab_mean": c.get("lab_mean", **stain),
        "lab_std": c.get("lab_std", **stain),
    }


def as_weights_meta(meta: Mapping[str, Any], source: str | PathLike[str] | None = None, *,
                    task: str | None = None) -> WeightsMeta:
    """``meta`` itself if it is a :class:`WeightsMeta`, else checked as metadata built in memory.

    ``source`` names the weights in errors (default: ``meta``'s ``name``, else "weights"); ``task``
    as for :meth:`WeightsMeta.from_dict`.
    """
    if isinstance(meta, WeightsMeta):
        return meta
    if source is None:
        name = meta.get("name") if isinstance(meta, Mapping) else None
        source = name if isinstance(name, str) else "weights"
    return WeightsMeta.from_dict(meta, source, partial=True, task=task)
