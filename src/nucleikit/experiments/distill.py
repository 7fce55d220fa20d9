"""A fast detector: a narrower student distilled from a teacher detector on every image available.

Issue 15 item 2. The teacher (the default H&E detector ``micronet_he``) computes its
raw map of every training image once (:mod:`nucleikit.train.distill`); a narrower
network (MicroNet at width 8 instead of 16 by default) learns those maps with the
teacher's loss (weighted MSE). The student's training pool is every image it may
see:

* the **labelled training images** of the pooled study's data sets (each data set's
  ``train`` subset only, weighted by its gamma as in the pooled study); their points
  may be mixed into the target (``point_weight``, default 0: teacher only);
* **unlabelled images**: tissue tiles sampled from slides (``slides``: a grid of
  ``slide_tile`` px windows at the common resolution, those with at least
  ``slide_min_tissue`` tissue by the slide's tissue mask, ``slide_tiles`` of them
  drawn with ``tile_seed``) and folders of images (``folders``), weighted by
  ``unlabelled_gamma``. A folder image that is a validation or test image of a
  configured data set is refused.

Validation and test are the pooled study's (:func:`nucleikit.experiments.pooled.report`):
the best step and the post-processing values are chosen on the pooled validation
images' points, every test set is scored once at its own radius, and the teacher is
scored on the same test images as a reference. The report adds what distillation is
for: the student's F1 minus the teacher's on each test set (the issue's bound is
0.01), the FLOPs per megapixel of both networks (torch's FLOP counter), and the
training pool (images and megapixels per source, the teacher maps' cost).

Each seed's training runs in ``runs/<label>-<key>`` (the key hashes the data, the
training configuration, the teacher's SHA-256 and the unlabelled sources); the teacher
maps are kept in ``runs/teacher_maps/<teacher>-<sha>/`` (shared by the seeds), so running
the command again resumes the training without running the teacher again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import ConfigError, NucleikitError
from .cells import Cell, CellRunner, TrainSet
from .pooled import check_sets, needs_of, report
from .report import StudyResult
from .subsets import fraction_of

if TYPE_CHECKING:
    from ..models.weights_meta import WeightsMeta

__all__ = ["Params", "run", "TITLE", "DistillCell", "DistillRunner", "SlideSource", "FolderSource", "BOUND",
           "resolve_data_path"]

TITLE = "A fast detector: a narrower student distilled from the default H&E detector"
PAPER = ("Not in Xing et al.: issue 15 item 2. The student learns the teacher's proximity maps (Xing et al.'s "
         "regression target, as the teacher predicts it) on the labelled training images and on unlabelled "
         "slide tiles; it should cost at least 4x fewer FLOPs and stay within 0.01 F1 of the teacher on every "
         "test set.")

#: Largest loss of test F1 against the teacher the issue allows.
BOUND = 0.01


@dataclass(frozen=True)
class Params:
    """Options of the distillation study.

    Attributes
    ----------
    teacher : str
        Bundled weights name or file of the teacher detector (e.g. ``"micronet_he"``).
    train, validation, tests, gammas
        As the pooled study's: labelled training data sets (their ``train`` images), the
        validation sets choosing the best step, the test sets, the loss weight per data set.
    point_weight : float
        In [0, 1]: share of the point target on labelled images (0: the teacher's map only).
    slides : tuple of str
        Slide files: absolute, relative to the working folder, or to the shared data folder
        (``"slides/CMU-1-Small-Region.svs"``).
    slide_mpp : dict
        Level-0 um/px of slides that record none (file name as given in ``slides`` -> value).
    slide_tiles : int
        Tiles drawn per slide at most (all qualifying ones when fewer).
    slide_tile : int
        Tile side in pixels at the common resolution.
    slide_min_tissue : float
        Least tissue fraction of a tile, in (0, 1].
    slide_tissue : {"otsu", "fixed"}
        Tissue mask method (:func:`nucleikit.infer.tissue.tissue_mask`).
    tile_seed : int
        Draws the tiles (the same for every training seed).
    folders : tuple of str
        Folders of unlabelled images (same path rules as ``slides``).
    folder_mpp : float or None
        Their resolution; None: each image's own metadata.
    unlabelled_gamma : float
        Loss weight of the unlabelled images.
    references : tuple of str
        Weights scored on the test sets besides the teacher (which always is).
    label : str
        Run-folder prefix of the student.
    """

    teacher: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    tests: tuple[str, ...]
    gammas: dict = field(default_factory=dict)
    point_weight: float = 0.0
    slides: tuple[str, ...] = ()
    slide_mpp: dict = field(default_factory=dict)
    slide_tiles: int = 32
    slide_tile: int = 256
    slide_min_tissue: float = 0.5
    slide_tissue: str = "otsu"
    tile_seed: int = 0
    folders: tuple[str, ...] = ()
    folder_mpp: float | None = None
    unlabelled_gamma: float = 1.0
    references: tuple[str, ...] = ()
    label: str = "distill"

    def check(self) -> None:
        """Every option, the teacher and the unlabelled sources' files; one line per refusal."""
        from ..infer.tissue import METHODS

        check_sets(self, "distill")
        _check_weights(self.teacher, "teacher", detector=True)
        for ref in self.references:
            _check_weights(ref, "reference", detector=True)
        if not 0.0 <= self.point_weight <= 1.0:
            raise ConfigError(f"study: point_weight must be in [0, 1], got {self.point_weight!r}")
        if not self.unlabelled_gamma > 0:
            raise ConfigError(f"study: unlabelled_gamma must be a positive number, got {self.unlabelled_gamma!r}")
        if self.slide_tiles < 1 or self.slide_tile < 16:
            raise ConfigError(f"study: slide_tiles must be at least 1 and slide_tile at least 16 px, got "
                              f"{self.slide_tiles} and {self.slide_tile}")
        if not 0.0 < self.slide_min_tissue <= 1.0:
            raise ConfigError(f"study: slide_min_tissue must be in (0, 1], got {self.slide_min_tissue!r}")
        if self.slide_tissue not in METHODS:
            raise ConfigError(f"study: slide_tissue must be one of {', '.join(METHODS)}, got {self.slide_tissue!r}")
        if len(set(self.slides)) != len(self.slides) or len(set(self.folders)) != len(self.folders):
            raise ConfigError("study: a slide or folder is listed twice")
        unknown = set(self.slide_mpp) - set(self.slides)
        if unknown:
            raise ConfigError(f"study: slide_mpp for slides not in slides: {', '.join(sorted(unknown))}")
        bad = {k: v for k, v in self.slide_mpp.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0}
        if bad:
            raise ConfigError(f"study: slide_mpp values must be positive numbers, got {bad}")
        if self.folder_mpp is not None and not self.folder_mpp > 0:
            raise ConfigError(f"study: folder_mpp must be a positive number, got {self.folder_mpp!r}")
        for s in self.slides:
            if not resolve_data_path(s).is_file():
                raise ConfigError(f"study: slide {s!r} not found (absolute, relative to here, or to shared/data)")
        for f in self.folders:
            if not resolve_data_path(f).is_dir():
                raise ConfigError(f"study: folder {f!r} not found (absolute, relative to here, or to shared/data)")
        if not self.label:
            raise ConfigError("study: label must not be empty")

    def needs(self) -> dict[str, tuple[str, ...]]:
        return needs_of(self)

    def sources(self) -> tuple:
        """The unlabelled sources as :class:`SlideSource` and :class:`FolderSource` (what the cell key hashes)."""
        slides = tuple(SlideSource(s, self.slide_tiles, self.slide_tile, self.slide_min_tissue, self.slide_tissue,
                                   self.tile_seed, self.slide_mpp.get(s)) for s in self.slides)
        return slides + tuple(FolderSource(f, self.folder_mpp) for f in self.folders)


def _check_weights(name: str, what: str, *, detector: bool) -> None:
    from ..models.weights import read_weights_meta, resolve_weights

    try:
        meta = read_weights_meta(resolve_weights(name))
    except NucleikitError as exc:
        raise ConfigError(f"study: {what} {name!r}: {exc}".splitlines()[0]) from None
    if detector and meta.task not in (None, "detection"):
        raise ConfigError(f"study: {what} {name!r} is a {meta.task} model, not a detector")


def resolve_data_path(path: str) -> Path:
    """``path`` if absolute or present relative to the working folder, else under the shared data folder."""
    from ..io.datasets.base import find_shared_dir

    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    shared = find_shared_dir()
    return shared / "data" / p if shared is not None else p


@dataclass(frozen=True)
class SlideSource:
    """Tissue tiles of one slide (:func:`nucleikit.train.distill.slide_tiles`)."""

    slide: str
    tiles: int
    tile: int
    min_tissue: float
    tissue: str
    seed: int
    mpp: float | None = None

    def samples(self, mpp: float) -> list:
        from ..train.distill import slide_tiles

        return slide_tiles(resolve_data_path(self.slide), count=self.tiles, tile=self.tile, mpp=mpp,
                           min_tissue=self.min_tissue, method=self.tissue, seed=self.seed, slide_mpp=self.mpp)


@dataclass(frozen=True)
class FolderSource:
    """Every image of a folder (:func:`nucleikit.train.distill.image_folder`)."""

    folder: str
    mpp: float | None = None

    def samples(self, mpp: float) -> list:
        from ..train.distill import image_folder

        return image_folder(resolve_data_path(self.folder), mpp=self.mpp)


@dataclass(frozen=True)
class DistillCell(Cell):
    """A student's training: a :class:`~nucleikit.experiments.cells.Cell` plus its teacher and unlabelled images.

    Attributes
    ----------
    teacher : str
        Bundled name or file of the teacher.
    teacher_sha256 : str
        Its content (part of the key: another teacher is another training).
    unlabelled : tuple of SlideSource / FolderSource
    unlabelled_weight : float
    point_weight : float
    """

    teacher: str = ""
    teacher_sha256: str = ""
    unlabelled: tuple = ()
    unlabelled_weight: float = 1.0
    point_weight: float = 0.0

    def spec(self, fingerprint=None) -> dict:
        spec = super().spec(fingerprint)
        spec["distill"] = {
            "teacher": self.teacher, "teacher_sha256": self.teacher_sha256,
            "unlabelled": [{"kind": type(s).__name__, **dataclasses.asdict(s)} for s in self.unlabelled],
            "unlabelled_weight": self.unlabelled_weight, "point_weight": self.point_weight,
        }
        return spec


@dataclass
class DistillRunner(CellRunner):
    """A :class:`CellRunner` that trains :class:`DistillCell` students (other cells as before)."""

    _unlabelled: dict = field(default_factory=dict, repr=False)

    @classmethod
    def around(cls, runner: CellRunner) -> "DistillRunner":
        """A runner on the same collection and folders, sharing the trained/skipped lists."""
        return cls(runner.collection, runner.runs_dir, runner.progress, runner.log, runner.trained, runner.skipped)

    def unlabelled(self, sources: Sequence[Any]) -> list[list]:
        """The unlabelled samples of each source at the collection's resolution (read once, checked)."""
        out = []
        for src in sources:
            if src not in self._unlabelled:
                samples = src.samples(self.collection.mpp)
                name = getattr(src, "slide", None) or getattr(src, "folder", "")
                if not samples:
                    raise ConfigError(f"study: {name} gives no unlabelled image (no tile with enough tissue?)")
                if isinstance(src, FolderSource):
                    self._refuse_held_out(src.folder, samples)
                self.log(f"unlabelled: {len(samples)} images from {name}")
                self._unlabelled[src] = samples
            out.append(self._unlabelled[src])
        return out

    def _refuse_held_out(self, folder: str, samples: Sequence[Any]) -> None:
        """A folder image that is a validation or test image of any data set is refused.

        The same image: the same file, the same id (file stem), or a file with the same bytes.
        """
        from ..train.distill import file_sha256

        held = {}
        for ds in self.collection.datasets.values():
            for subset in ("validation", "test"):
                for s in ds.subsets.get(subset, []):
                    what = f"{subset} image of {ds.name}"
                    held[str(Path(s.image_path).resolve())] = held[str(s.id)] = what
                    held[file_sha256(s.image_path)] = what
        for s in samples:
            hit = held.get(s.source) or held.get(s.id) or held.get(file_sha256(s.source))
            if hit:
                raise ConfigError(f"study: folder {folder!r} holds {s.id}, a {hit}: never train on it")

    def teacher_cache(self, cell: "DistillCell") -> Path:
        """Where a teacher's maps are kept: ``<runs>/teacher_maps/<teacher>-<sha>``, shared by every seed's run."""
        return Path(self.runs_dir) / "teacher_maps" / f"{Path(cell.teacher).stem}-{cell.teacher_sha256[:12]}"

    def _train(self, cell: Cell, steps: int | None = None):
        if not isinstance(cell, DistillCell):
            return super()._train(cell, steps)
        from ..models import get_spec
        from ..train.distill import DistillationTask
        from ..train.loop import train_dense

        sets = [fraction_of(self.collection[t.dataset].samples("train"), t.fraction) for t in cell.train]
        weights = [t.weight for t in cell.train]
        for samples in self.unlabelled(cell.unlabelled):
            sets.append(samples)
            weights.append(cell.unlabelled_weight)
        val = [s for n in cell.validation_sets for s in self.collection[n].samples("validation")]
        cfg = self._config(cell, steps)
        folder = self.folder(cell)
        adapter = DistillationTask(get_spec(cfg.model).target, cfg.resolved(), teacher=cell.teacher,
                                   cache_dir=self.teacher_cache(cell), point_weight=cell.point_weight,
                                   threads=cfg.threads)
        if adapter.teacher.sha256 != cell.teacher_sha256:
            raise ConfigError(f"teacher {cell.teacher!r} changed while the study ran")
        meta = {"dataset": "+".join(t.dataset for t in cell.train) + "+unlabelled",
                "experiment_cell": cell.spec(self.fingerprint)}
        return train_dense(sets, val, cfg, folder, set_weights=weights, progress=self.progress, extra_meta=meta,
                           task="detection", adapter=adapter)


def _check_student(config, teacher_meta: WeightsMeta) -> None:
    """Before any work: a dense student at the teacher's resolution."""
    from ..models import get_spec
    from ..transforms import MPP_TOLERANCE

    spec = get_spec(config.train.model)
    if spec.target == "boxes":
        raise ConfigError(f"study: the student {config.train.model!r} is a box detector; a student regresses maps")
    if teacher_meta.mpp is None:
        raise ConfigError("study: the teacher records no mpp (the resolution its maps are at)")
    if abs(float(teacher_meta.mpp) / config.mpp - 1.0) > MPP_TOLERANCE:
        raise ConfigError(f"study: the teacher works at {teacher_meta.mpp:g} um/px, the study at {config.mpp:g}: "
                          "set the top-level mpp to the teacher's")


def cost_rows(config, teacher_path: Path) -> list[dict]:
    """GFLOP per megapixel and parameters of the teacher and the student (torch's FLOP counter)."""
    from ..models import build_model
    from ..models.weights import load_weights
    from ..train.distill import flops_per_megapixel

    teacher, meta = load_weights(teacher_path)
    student = build_model(config.train.model, **config.train.model_kwargs)
    rows = []
    for name, model, kwargs, model_name in ((config.params.teacher, teacher, meta.model_kwargs, meta.model),
                                            (f"{config.params.label} (this study)", student,
                                             config.train.model_kwargs, config.train.model)):
        rows.append({"model": name, "architecture": model_name, "width": kwargs.get("width"),
                     "parameters": int(sum(p.numel() for p in model.parameters())),
                     "gflop_per_mp": round(flops_per_megapixel(model), 3)})
    for r in rows:
        r["teacher_over_model"] = round(rows[0]["gflop_per_mp"] / r["gflop_per_mp"], 3)
    return rows


def pool_rows(config, collection, runner, cells: Sequence[DistillCell]) -> list[dict]:
    """Images and megapixels (at the common resolution) per source of the training pool, and in all."""
    p = config.params
    rows = []
    for d in p.train:
        samples = collection[d].samples("train")
        mp = sum(_megapixels(s, collection.mpp) for s in samples)
        rows.append({"source": d, "kind": "labelled (train split)", "images": len(samples), "megapixels": round(mp, 3),
                     "gamma": float(p.gammas.get(d, 1.0))})
    if isinstance(runner, DistillRunner):
        for src, samples in zip(p.sources(), runner.unlabelled(p.sources())):
            name = getattr(src, "slide", None) or getattr(src, "folder", "")
            mp = sum(_megapixels(s, collection.mpp) for s in samples)
            rows.append({"source": name, "kind": "unlabelled", "images": len(samples), "megapixels": round(mp, 3),
                         "gamma": p.unlabelled_gamma})
    rows.append({"source": "all", "kind": "training pool", "images": sum(r["images"] for r in rows),
                 "megapixels": round(sum(r["megapixels"] for r in rows), 3), "gamma": None})
    return rows


def _megapixels(sample, mpp: float) -> float:
    """Megapixels of a sample resampled to ``mpp`` (from the image header when it can)."""
    if hasattr(sample, "pixels"):
        h, w = sample.pixels.shape[:2]
    else:
        from PIL import Image

        try:
            with Image.open(sample.image_path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - any file the loader reads but Pillow does not
            h, w = sample.load_image().shape[:2]
    f = sample.mpp / mpp
    return h * w * f * f / 1e6


def _teacher_cost(folder: Path) -> tuple[float, int]:
    """Seconds and count of the teacher maps first computed in a run's cache (``index.jsonl``)."""
    try:
        lines = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return 0.0, 0
    return float(sum(r["seconds"] for r in lines)), len(lines)


def gap_rows(rows: Sequence[dict], student: str, teacher: str, tests: Sequence[str]) -> list[dict]:
    """Per test set: the student's F1, the teacher's, the difference and whether it is within :data:`BOUND`."""
    by = {(r["model"], r["test"]): r for r in rows}
    out = []
    for t in tests:
        s, te = by[(student, t)]["f1"], by[(teacher, t)]["f1"]
        d = s - te
        out.append({"test": t, "student_f1": s, "teacher_f1": te, "difference": d, "within_bound": d >= -BOUND})
    return out


def run(config, collection, runner: CellRunner) -> StudyResult:
    from ..models.weights import read_weights_meta, resolve_weights
    from ..train.distill import file_sha256

    p = config.params
    teacher_path = resolve_weights(p.teacher)
    _check_student(config, read_weights_meta(teacher_path))
    if isinstance(runner, CellRunner) and not isinstance(runner, DistillRunner):
        runner = DistillRunner.around(runner)
    sha = file_sha256(teacher_path)
    sets = tuple(TrainSet(d, 1.0, float(p.gammas.get(d, 1.0))) for d in p.train)
    cells = [DistillCell(p.label, sets, tuple(p.validation), config.train_for(s), teacher=p.teacher,
                         teacher_sha256=sha, unlabelled=p.sources(), unlabelled_weight=p.unlabelled_gamma,
                         point_weight=p.point_weight) for s in config.seeds]
    refs = (p.teacher,) + tuple(r for r in p.references if r != p.teacher)
    res = report(config, collection, runner, cells, title=TITLE, paper=PAPER, references=refs, what="student")
    student = f"{p.label} (this study)"
    gaps = gap_rows(res.tables["test"], student, p.teacher, p.tests)
    res.tables["teacher_gap"] = gaps
    res.table_notes["teacher_gap"] = (f"Test F1 of the student minus the teacher's, each test set at its own radius; "
                                      f"within_bound: no worse than {BOUND} below the teacher (issue 15)."
                                      + (" Student: the mean over seeds." if len(config.seeds) > 1 else ""))
    held = sum(g["within_bound"] for g in gaps)
    res.findings.append("Student minus teacher test F1: " + ", ".join(f"{g['test']} {g['difference']:+.3f}"
                                                                     for g in gaps)
                        + f"; within {BOUND} of the teacher on {held} of {len(gaps)} test sets.")
    costs = cost_rows(config, teacher_path)
    res.tables["cost"] = costs
    res.table_notes["cost"] = ("Forward-pass GFLOP per megapixel of input (torch.utils.flop_counter, 2 FLOPs per "
                               "multiply-add, eval mode, 256 px input) and parameters.")
    ratio = costs[0]["gflop_per_mp"] / costs[1]["gflop_per_mp"]
    res.findings.append(f"The student costs {costs[1]['gflop_per_mp']:.1f} GFLOP per megapixel, the teacher "
                        f"{costs[0]['gflop_per_mp']:.1f}: {ratio:.2f}x fewer (goal: at least 4x).")
    res.tables["pool"] = pool_rows(config, collection, runner, cells)
    res.table_notes["pool"] = ("The student's training pool at the common resolution: labelled training images "
                               "(teacher maps as targets" + (f", points mixed in at {p.point_weight:g}"
                                                            if p.point_weight else "")
                               + ") and unlabelled images; no validation or test image.")
    if isinstance(runner, DistillRunner):
        seconds, maps = _teacher_cost(runner.teacher_cache(cells[0]))
        if maps:
            res.findings.append(f"The teacher's maps of the {maps} training images took {seconds:.0f} s, once "
                                f"({config.train.threads} thread(s), fp32); every seed's run and every resumed run "
                                "reads them from the runs folder's teacher_maps/.")
    return res
