"""Experiment configuration: one JSON file per study, checked before any training.

A configuration file looks like::

    {
      "experiment": "cross_dataset",           # a key of nucleikit.experiments.registry.STUDIES
      "comment": "free text, copied into the report",
      "seed": 0,                               # or "seeds": [0, 1, 2] (see below)
      "all_seeds": false,
      "mpp": 0.5,                              # common resolution, um/px
      "steps": 600,                            # budget: optimisation steps per training
      "train": {"model": "micronet", "crop": 128, "batch_size": 8, "bf16": true, ...},
      "datasets": {"lung": {"kind": "monuseg", "organ": "lung"},
                   "crchisto": {"kind": "crchisto"}},
      "study": {...}                           # the study's own parameters (its Params dataclass)
    }

``seeds`` lists the seeds of the study's headline comparison (each study
module's docstring says what that is): it is trained once per seed and the
report gives the mean and the spread; the study's secondary parts are trained
for the first seed only, or for every seed with ``"all_seeds": true``.
Without ``seeds``, the one ``seed`` (default 0); with both, ``seed`` must be
the first of ``seeds``. A one-seed configuration trains and reports exactly
as before seeds existed (same run folders, same tables).

``train`` holds :class:`~nucleikit.train.config.TrainConfig` fields; ``mpp``,
``steps``, ``seed``, ``init`` and ``val_radius_um`` are set by the experiment
and may not appear there. :func:`load_config` parses the file and
:func:`prepare` loads the data sets; every error a user can make (unknown
experiment, unknown option, a study naming a data set the file does not
define, a data set without points, mismatched resolutions) is a
:class:`~nucleikit.errors.ConfigError` raised by one of them, i.e. before any
training starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError, InputError
from ..train.config import MAX_CROP, MIN_CROP, TrainConfig
from .collection import Collection, DatasetSpec, load_collection

__all__ = ["ExperimentConfig", "check_train_options", "load_config", "parse_config", "parse_params", "prepare"]

TOP_LEVEL = {"experiment", "comment", "seed", "seeds", "all_seeds", "mpp", "steps", "train", "datasets", "study"}
#: TrainConfig fields the experiment owns.
RESERVED_TRAIN = {"mpp", "steps", "seed", "init", "val_radius_um"}


@dataclass(frozen=True)
class ExperimentConfig:
    """A parsed experiment configuration.

    Attributes
    ----------
    experiment : str
    datasets : dict of str to DatasetSpec
    params : dataclass
        The study's parameters (its ``Params`` class).
    train : TrainConfig
        Base training configuration: ``steps`` is the budget per training,
        ``seed`` the experiment's seed.
    mpp : float
        Common resolution (um/px).
    comment : str
    source : str or None
        The file it was read from.
    seeds : tuple of int
        Seeds of the headline comparison; the first is ``train.seed``.
    all_seeds : bool
        Train the secondary parts for every seed too.
    """

    experiment: str
    datasets: dict
    params: Any
    train: TrainConfig
    mpp: float = 0.5
    comment: str = ""
    source: str | None = None
    seeds: tuple[int, ...] = ()
    all_seeds: bool = False

    def __post_init__(self) -> None:
        if not self.seeds:
            object.__setattr__(self, "seeds", (self.train.seed,))
        if self.seeds[0] != self.train.seed:
            raise ConfigError(f"the first seed ({self.seeds[0]}) must be the training seed ({self.train.seed})")

    @property
    def seed(self) -> int:
        return self.train.seed

    def train_for(self, seed: int) -> TrainConfig:
        """The base training configuration with another seed (the same object for the first seed)."""
        return self.train if seed == self.train.seed else dataclasses.replace(self.train, seed=seed)

    def seeds_for(self, headline: bool) -> tuple[int, ...]:
        """The seeds a part of the study trains: all for the headline (or with ``all_seeds``), else the first."""
        return self.seeds if headline or self.all_seeds else self.seeds[:1]

    @property
    def steps(self) -> int:
        return self.train.steps

    def with_overrides(self, *, steps: int | None = None, threads: int | None = None) -> "ExperimentConfig":
        """A copy with the budget and/or the number of threads replaced (CLI options)."""
        changes = {k: v for k, v in (("steps", steps), ("threads", threads)) if v is not None}
        if not changes:
            return self
        train = dataclasses.replace(self.train, **changes)
        params = self.params
        if steps is not None and hasattr(params, "rescale"):
            params = params.rescale(steps)
        return dataclasses.replace(self, train=train, params=params)

    def to_dict(self) -> dict:
        seeds = {"seeds": list(self.seeds), "all_seeds": self.all_seeds} if len(self.seeds) > 1 else {}
        return {
            "experiment": self.experiment,
            "comment": self.comment,
            "seed": self.seed,
            **seeds,
            "mpp": self.mpp,
            "steps": self.steps,
            "train": self.train.to_dict(),
            "datasets": {n: {"kind": s.kind, **s.options, "mpp": s.mpp, "radius_um": s.radius_um}
                         for n, s in self.datasets.items()},
            "study": dataclasses.asdict(self.params),
        }


def _coerce(name: str, value: Any, annotation: Any, where: str) -> Any:
    """Check a JSON value against a dataclass field's annotation (tuples from lists)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is typing.Any:
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {name} must be a list, got {value!r}")
        item = args[0] if args else typing.Any
        return tuple(_coerce(name, v, item, where) for v in value)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be an object, got {value!r}")
        return dict(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    return value


#: Training options that must be at least 1 (a batch of 0 "trains" on nothing, silently).
_AT_LEAST_ONE = ("batch_size", "crop", "steps", "val_every", "threads", "plateau_patience", "dilation",
                 "seg_min_distance", "stop_patience")
#: Training options that must be positive and finite.
_POSITIVE = ("lr", "d_microns", "alpha", "sigma_px", "val_radius_um", "mpp")
#: Training options that must be at least 0 and finite.
_NON_NEGATIVE = ("lam", "momentum", "weight_decay", "freeze_blocks", "seg_min_size", "seed", "stop_min_delta")


def check_train_options(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Type- and range-check a JSON object of training options before any data is read.

    Each value is checked against its :class:`~nucleikit.train.config.TrainConfig` field
    (``lr: "fast"``, ``xi_grid: "0.5"``, ``seed: null`` are refused naming the field), and the
    ranges a run needs: counts at least 1, rates positive, ``xi_grid`` a non-empty list of
    fractions in [0, 1), ``min_distance_grid`` a non-empty list of whole numbers >= 1.

    Parameters
    ----------
    d : mapping
        Field name -> JSON value; unknown names are left to ``TrainConfig.from_dict``.
    where : str
        Prefix of the messages (the file, and the section).

    Returns
    -------
    dict
        The values, lists turned into tuples.

    Raises
    ------
    ConfigError
        Naming the first bad field and its value.
    """
    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, Any] = {}
    for name, value in d.items():
        if name not in hints or name == "augment":
            out[name] = value
            continue
        value = _coerce(name, value, hints[name], where)
        if value is None and type(None) not in typing.get_args(hints[name]):
            raise ConfigError(f"{where}: {name} must not be null")
        out[name] = value
        if value is None:
            continue
        if name in _AT_LEAST_ONE and value < 1:
            raise ConfigError(f"{where}: {name} must be at least 1, got {value!r}")
        if name in _POSITIVE and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{where}: {name} must be a positive number, got {value!r}")
        if name in _NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}: {name} must be 0 or more, got {value!r}")
        if name == "crop" and not MIN_CROP <= value <= MAX_CROP:
            raise ConfigError(f"{where}: crop must be between {MIN_CROP} and {MAX_CROP} pixels, got {value!r}")
        if name == "xi_grid" and (not value or not all(math.isfinite(v) and 0 <= v < 1 for v in value)):
            raise ConfigError(f"{where}: xi_grid must be a non-empty list of fractions in [0, 1), got {d[name]!r}")
        if name == "min_distance_grid" and (not value or not all(math.isfinite(v) and v >= 1 and float(v).is_integer()
                                                                  for v in value)):
            raise ConfigError(f"{where}: min_distance_grid must be a non-empty list of whole numbers >= 1, "
                              f"got {d[name]!r}")
    return out


def parse_params(cls: type, d: Mapping[str, Any] | None, where: str) -> Any:
    """Build a study's parameter dataclass from a JSON object; unknown or ill-typed keys are errors."""
    d = dict(d or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(k, v, hints[k], where) for k, v in d.items()}
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing option(s) {', '.join(missing)}")
    params = cls(**values)
    check = getattr(params, "check", None)
    if check is not None:
        check()
    return params


def parse_config(doc: Mapping[str, Any], *, experiment: str | None = None, source: str | None = None) -> ExperimentConfig:
    """Parse a configuration object (see the module docstring).

    Parameters
    ----------
    doc : mapping
    experiment : str or None
        The experiment asked for on the command line; must agree with the
        file's ``"experiment"`` when both are given.
    source : str or None
        File name, for messages.
    """
    from ..models import get_spec
    from .registry import STUDIES

    where = source or "config"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: must hold a JSON object")
    unknown = set(doc) - TOP_LEVEL
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(TOP_LEVEL))})")
    name = experiment or doc.get("experiment")
    if name is None:
        raise ConfigError(f"{where}: no experiment named (give \"experiment\")")
    # the study's name first: "unknown study" is the useful message when either side has a typo
    for given in dict.fromkeys((name, doc.get("experiment"))):
        if given is not None and given not in STUDIES:
            raise ConfigError(f"{where}: unknown experiment {given!r} (known: {', '.join(sorted(STUDIES))})")
    if doc.get("experiment") not in (None, name):
        raise ConfigError(f"{where} is a {doc['experiment']!r} configuration, not {name!r}")
    study = STUDIES[name]

    raw_sets = doc.get("datasets") or {}
    if not isinstance(raw_sets, Mapping) or not raw_sets:
        raise ConfigError(f"{where}: \"datasets\" must name at least one dataset")
    datasets = {n: DatasetSpec.from_dict(n, d) for n, d in raw_sets.items()}

    if not isinstance(doc.get("train") or {}, Mapping):
        raise ConfigError(f"{where}: \"train\" must be an object of training options")
    train = dict(doc.get("train") or {})
    reserved = RESERVED_TRAIN & set(train)
    if reserved:
        raise ConfigError(f"{where}: \"train\" may not set {', '.join(sorted(reserved))} "
                          f"(the experiment sets them: use top-level \"steps\", \"seed\", \"mpp\")")
    if doc.get("steps") is None:
        raise ConfigError(f"{where}: give the budget \"steps\" (optimisation steps per training)")
    for key, default in (("steps", None), ("seed", 0)):
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {json.dumps(value)}")
        if key == "steps" and value < 1:
            raise ConfigError(f"{where}: steps must be at least 1, got {value}")
        train[key] = value
    seeds = _parse_seeds(doc, where)
    if seeds:
        if "seed" in doc and doc["seed"] != seeds[0]:
            raise ConfigError(f"{where}: seed {doc['seed']} must be the first of seeds {list(seeds)} (or leave it out)")
        train["seed"] = seeds[0]
    all_seeds = doc.get("all_seeds", False)
    if not isinstance(all_seeds, bool):
        raise ConfigError(f"{where}: all_seeds must be true or false, got {json.dumps(all_seeds)}")
    train = check_train_options(train, f"{where}: train")
    try:
        train_cfg = TrainConfig.from_dict(train)
        spec = get_spec(train_cfg.model)  # an unknown model fails here, not mid-study
    except TypeError as exc:
        raise ConfigError(f"{where}: bad training option: {exc}") from None
    if spec.task != "detection":
        raise ConfigError(f"{where}: model {train_cfg.model!r} is a {spec.task} model; the studies need a detector")
    mpp = doc.get("mpp", 0.5)
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float)) or mpp <= 0:
        raise ConfigError(f"{where}: mpp must be a positive number, got {mpp!r}")
    params = parse_params(study.params, doc.get("study"), f"{where}: study")
    for ds_name in study.needs(params):
        if ds_name not in datasets:
            raise ConfigError(f"{where}: the study uses dataset {ds_name!r}, which \"datasets\" does not define "
                              f"(defined: {', '.join(datasets)})")
    return ExperimentConfig(name, datasets, params, train_cfg, float(mpp), str(doc.get("comment", "")), source,
                            seeds=seeds, all_seeds=all_seeds)


def _parse_seeds(doc: Mapping[str, Any], where: str) -> tuple[int, ...]:
    """``"seeds"``: a non-empty list of distinct integers (empty tuple when absent)."""
    if "seeds" not in doc:
        return ()
    seeds = doc["seeds"]
    if (not isinstance(seeds, list) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers, got {json.dumps(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: a seed is listed twice in {seeds}")
    return tuple(seeds)


def load_config(path: str | Path, *, experiment: str | None = None) -> ExperimentConfig:
    """Read and parse a JSON configuration file (see :func:`parse_config`)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_config(doc, experiment=experiment, source=str(path))


def prepare(config: ExperimentConfig) -> Collection:
    """Load and check the data sets the study needs (points, resolutions, subsets)."""
    from .registry import STUDIES

    needs = STUDIES[config.experiment].needs(config.params)
    return load_collection(config.datasets, needs, config.mpp)
