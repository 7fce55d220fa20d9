"""Named point data sets with their splits, resolutions and matching radii.

A transfer study works on a *collection*: several data sets, each with its own
resolution (um/px) and train / validation / test images, mixed at one common
resolution (0.5 um/px by default, PROTOCOL.md section 3). Every model of a
study is trained at the common resolution; every figure is scored in each test
data set's own pixels with its matching radius converted from microns.

Matching radius (the choice)
----------------------------
PROTOCOL.md gives r = 6 px at 0.55 um/px for CRCHisto (3.3 um, the radius its
figures are comparable at), r = 16 px at 0.25 um/px for MoNuSeg (4 um) and
4 um otherwise. So each data set carries ``radius_um``: 3.3 for ``crchisto``,
4.0 for every other kind unless the configuration says otherwise. At
0.5 um/px that is 6.6 px and 8 px.

Kinds of data set (:data:`LOADERS`)
-----------------------------------
``crchisto``  ``{"kind": "crchisto", "split": "fixed"}`` (the fixed split, or a fold 0-4)
``monuseg``   ``{"kind": "monuseg", "organ": "lung"}`` (per-organ split; auxiliary
              organs have training images only)
``folder``    ``{"kind": "folder", "train": DIR, "validation": DIR, "test": DIR,
              "mpp": 0.5}``: images with point files beside them
              (:func:`nucleikit.io.datasets.folder.point_folder`); ``mpp`` may be
              left out when every image records its resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, NucleikitError
from ..transforms import MPP_TOLERANCE

__all__ = ["DatasetSpec", "Dataset", "Collection", "LOADERS", "load_collection", "DEFAULT_RADIUS_UM"]

#: Matching radius in microns by kind (PROTOCOL.md: CRCHisto 6 px at 0.55 um/px; 4 um otherwise).
DEFAULT_RADIUS_UM = {"crchisto": 6 * 0.55}
OTHER_RADIUS_UM = 4.0
SUBSETS = ("train", "validation", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """A data set as a configuration names it.

    Attributes
    ----------
    name : str
        The name studies use for it (e.g. ``"lung"``).
    kind : str
        A key of :data:`LOADERS`.
    options : dict
        Kind-specific options (see the module docstring).
    mpp : float or None
        Declared resolution (um/px); None takes the reader's. A declared value
        that disagrees with the data is an error.
    radius_um : float or None
        Matching radius in microns; None takes :data:`DEFAULT_RADIUS_UM`.
    """

    name: str
    kind: str
    options: dict = field(default_factory=dict)
    mpp: float | None = None
    radius_um: float | None = None

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> "DatasetSpec":
        if not isinstance(d, Mapping) or "kind" not in d:
            raise ConfigError(f"dataset {name!r}: needs a \"kind\" ({', '.join(sorted(LOADERS))})")
        d = dict(d)
        kind = d.pop("kind")
        if kind not in LOADERS:
            raise ConfigError(f"dataset {name!r}: unknown kind {kind!r} (known: {', '.join(sorted(LOADERS))})")
        mpp = d.pop("mpp", None)
        radius = d.pop("radius_um", None)
        for label, value in (("mpp", mpp), ("radius_um", radius)):
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"dataset {name!r}: {label} must be a positive number, got {value!r}")
        return cls(name, kind, d, None if mpp is None else float(mpp), None if radius is None else float(radius))


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: its samples by subset, resolution and radius.

    Attributes
    ----------
    name : str
    mpp : float
        Typical (median) resolution of its images (um/px); each sample keeps its own.
    radius_um : float
        Matching radius in microns.
    subsets : dict of str to list of PointSample
        ``"train"``, ``"validation"``, ``"test"`` (auxiliary data sets may
        have training images only).
    notes : tuple of str
        Caveats of the data worth a line in a report.
    """

    name: str
    mpp: float
    radius_um: float
    subsets: dict
    notes: tuple = ()

    def samples(self, subset: str) -> list:
        if not self.subsets.get(subset):
            raise ConfigError(f"dataset {self.name!r} has no {subset} images")
        return self.subsets[subset]


@dataclass(frozen=True)
class Collection:
    """Data sets trained at one common resolution ``mpp`` (um/px)."""

    datasets: dict
    mpp: float = 0.5

    def __getitem__(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise ConfigError(f"no dataset named {name!r} (configured: {', '.join(self.datasets)})") from None

    def notes(self) -> list[str]:
        """Every data set's caveats, prefixed with its name."""
        return [f"{d.name}: {n}" for d in self.datasets.values() for n in d.notes]

    def describe(self) -> list[dict]:
        """One row per data set: images per subset, points, mpp, radius (um, px at the common mpp)."""
        rows = []
        for d in self.datasets.values():
            mpps = sorted({s.mpp for samples in d.subsets.values() for s in samples})
            row = {"dataset": d.name, "mpp": d.mpp if len(mpps) == 1 else f"{mpps[0]:g}-{mpps[-1]:g}",
                   "radius_um": d.radius_um,
                   "radius_px_common": round(d.radius_um / self.mpp, 3)}
            for s in SUBSETS:
                row[f"{s}_images"] = len(d.subsets.get(s, []))
                row[f"{s}_points"] = int(sum(len(x.points) for x in d.subsets.get(s, [])))
            rows.append(row)
        return rows


# --- loaders --------------------------------------------------------------------------


def _data_folder(options: Mapping[str, Any], folder: str) -> Path:
    """``options["root"]`` (the data set's own folder), else ``shared/data/<folder>``."""
    from ..io.datasets.base import find_shared_dir

    if options.get("root"):
        return Path(options["root"])
    shared = find_shared_dir()
    if shared is None:
        raise ConfigError("the shared data folder was not found: set NUCLEIKIT_SHARED or give \"root\"")
    return shared / "data" / folder


def _load_crchisto(spec: DatasetSpec) -> dict:
    from ..io.datasets.crchisto import CRCHisto

    root = _data_folder(spec.options, "crchisto")
    split = spec.options.get("split", "fixed")
    return {s: list(CRCHisto(root, split=split, subset=s)) for s in SUBSETS}


def _load_monuseg(spec: DatasetSpec) -> dict:
    from ..io.datasets.monuseg import AUXILIARY, MoNuSeg

    if "organ" not in spec.options:
        raise ConfigError(f"dataset {spec.name!r}: a monuseg dataset needs an \"organ\"")
    root = _data_folder(spec.options, "monuseg")
    organ = spec.options["organ"]
    overrides = spec.options.get("mpp_overrides")
    if organ in AUXILIARY:
        return {"train": list(MoNuSeg(root, organ=organ, subset="train", mpp_overrides=overrides))}
    return {s: list(MoNuSeg(root, organ=organ, subset=s, mpp_overrides=overrides)) for s in SUBSETS}


def _load_folder(spec: DatasetSpec) -> dict:
    from ..io.datasets.folder import point_folder

    if "train" not in spec.options:
        raise ConfigError(f"dataset {spec.name!r}: a folder dataset needs at least a \"train\" folder")
    out = {}
    for s in SUBSETS:
        if spec.options.get(s):
            # without a declared mpp every image must record its own (point_folder checks)
            out[s] = point_folder(spec.options[s]) if spec.mpp is None else \
                _folder_with_declared_mpp(spec.options[s], spec.mpp, spec.name)
    return out


def _folder_with_declared_mpp(folder: str, mpp: float, name: str) -> list:
    """Samples of a folder at the declared ``mpp``; images whose metadata says otherwise are an error."""
    from ..io.datasets.folder import point_folder
    from ..io.images import read_image

    samples = point_folder(folder, mpp=mpp)
    for s in samples:
        recorded = read_image(s.image_path).mpp
        if recorded is not None and abs(recorded / mpp - 1.0) > MPP_TOLERANCE:
            raise ConfigError(f"dataset {name!r}: mismatched resolution: {s.image_path} records "
                              f"{recorded:.4g} um/px but the dataset is declared at {mpp:.4g} um/px")
    return samples


#: kind -> loader(spec) -> {subset: [PointSample, ...]}
LOADERS: dict[str, Callable[[DatasetSpec], dict]] = {
    "crchisto": _load_crchisto,
    "monuseg": _load_monuseg,
    "folder": _load_folder,
}


def _resolution(name: str, subsets: Mapping[str, list], declared: float | None) -> float:
    """The typical (median) resolution of a data set's samples; a declared one must agree with it.

    Images of one data set may differ in resolution (each is resampled to the
    common resolution on its own, e.g. MoNuSeg with ``mpp_overrides``); a
    declared ``mpp`` that the images' own resolution contradicts is an error.
    """
    value = float(np.median([s.mpp for samples in subsets.values() for s in samples]))
    if declared is not None and abs(value / declared - 1.0) > MPP_TOLERANCE:
        raise ConfigError(f"dataset {name!r}: mismatched resolution: declared {declared:.4g} um/px "
                          f"but its images are at {value:.4g} um/px")
    return value if declared is None else declared


def load_dataset(spec: DatasetSpec, *, needs: tuple[str, ...] = ("train",)) -> Dataset:
    """Read one data set and check it can be used (points, resolution, subsets).

    Parameters
    ----------
    spec : DatasetSpec
    needs : tuple of str
        Subsets the studies using it need (e.g. validation and test for a
        target data set).

    Raises
    ------
    ConfigError
        A missing subset, a data set without any annotated point, or images
        whose resolution disagrees with each other or with ``spec.mpp``.
    """
    try:
        subsets = LOADERS[spec.kind](spec)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(f"dataset {spec.name!r}") else f"dataset {spec.name!r}: {msg}") from None
    except NucleikitError as exc:
        raise ConfigError(f"dataset {spec.name!r}: {exc}") from None
    subsets = {k: v for k, v in subsets.items() if v}
    for s in needs:
        if s not in subsets:
            raise ConfigError(f"dataset {spec.name!r} has no {s} images, which this experiment needs")
    if not any(len(x.points) for samples in subsets.values() for x in samples):
        raise ConfigError(f"dataset {spec.name!r} has no annotated points (a detector cannot learn or be scored on it)")
    if "train" in subsets and not any(len(x.points) for x in subsets["train"]):
        raise ConfigError(f"dataset {spec.name!r}: its training images have no annotated points")
    mpp = _resolution(spec.name, subsets, spec.mpp)
    radius = spec.radius_um if spec.radius_um is not None else DEFAULT_RADIUS_UM.get(spec.kind, OTHER_RADIUS_UM)
    return Dataset(spec.name, mpp, radius, subsets, _notes(spec, subsets))


def _notes(spec: DatasetSpec, subsets: Mapping[str, list]) -> tuple[str, ...]:
    """Caveats from the data READMEs that bear on a study's figures."""
    if spec.kind != "monuseg":
        return ()
    from ..io.datasets.monuseg import MPP

    # TCGA-HE-7128/-7129/-7130 look scanned at 20x (data README) but are read at 0.25 um/px
    looks_20x = [f"{s.id} ({subset})" for subset, samples in subsets.items() for s in samples
                 if s.id.startswith("TCGA-HE-") and s.mpp == MPP]
    if not looks_20x:
        return ()
    return (f"{', '.join(looks_20x)} look scanned at 20x (nuclei about half the usual size in pixels) but are "
            f"read at {MPP} um/px as the data says; their nuclei are therefore smaller at the common resolution "
            "than the other images'.",)


def load_collection(specs: Mapping[str, DatasetSpec], needs: Mapping[str, tuple[str, ...]], mpp: float) -> Collection:
    """Load the data sets ``needs`` names (name -> subsets needed); see :func:`load_dataset`."""
    if mpp <= 0:
        raise ConfigError(f"the common resolution must be positive, got {mpp}")
    datasets = {}
    for name, subsets in needs.items():
        if name not in specs:
            raise ConfigError(f"the experiment uses dataset {name!r}, which the config does not define "
                              f"(defined: {', '.join(specs) or 'none'})")
        datasets[name] = load_dataset(specs[name], needs=subsets)
    return Collection(datasets, float(mpp))
