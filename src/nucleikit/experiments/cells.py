"""One training of a study ("cell"): its run folder, resume, and its test figures.

Every cell trains with :func:`nucleikit.train.loop.train_detector` in its own
folder ``OUTDIR/runs/<label>-<key>``, where ``key`` hashes everything that
defines the training (data sets, fractions, gammas, validation set, training
configuration, initial weights). So

* an interrupted cell resumes from the loop's checkpoint;
* a finished cell (``result.json`` present) is skipped;
* two studies written into the same OUTDIR share identical trainings (the
  cross-dataset model of a data set is the fine-tuning study's base model and
  its from-scratch reference).

A *staged* cell is trained in stages (``stages``: step counts, multiples of
``val_every``): the loop resumes bit-identically, so stage k is exactly the
uninterrupted run at that step. After each stage the weights chosen on
validation so far are scored on the test sets (curves against iterations) and,
if asked, the current network is saved as a snapshot for fine-tuning.

Test figures follow PROTOCOL.md: the model runs at the common resolution;
predictions and truth are matched in pixels of the common resolution with the
test data set's radius ``radius_um / mpp`` (the same pairs as matching in each
image's own pixels with its own radius in pixels); xi and the peak distance
are the values tuned on validation; the precision-recall curve sweeps xi. ED
is in pixels of the common resolution.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from ..train.config import TrainConfig
from .collection import Collection
from .subsets import fraction_of

__all__ = ["TrainSet", "Cell", "CellRunner", "validation_steps", "scratch_cell", "figures_row"]


@dataclass(frozen=True)
class TrainSet:
    """One training data set of a cell: its name, the fraction used and its loss weight (gamma)."""

    dataset: str
    fraction: float = 1.0
    weight: float = 1.0


@dataclass(frozen=True)
class Cell:
    """Everything that defines one training.

    Attributes
    ----------
    label : str
        Readable prefix of the run folder (e.g. ``"scratch-lung"``).
    train : tuple of TrainSet
    validation : str or tuple of str
        Data set(s) whose validation images choose the best step and xi. One
        name: its radius is the validation radius; several: their validation
        images are pooled and matched with the smallest of their radii (the
        strictest, so no data set is scored more leniently than its own).
    config : TrainConfig
        ``mpp`` and ``val_radius_um`` are set from the collection.
    init : Cell or None
        Fine-tune from this cell's weights (``init_file`` in its folder).
    init_file : str
        ``"best.safetensors"`` or a snapshot name.
    stages : tuple of int
        Train in stages (see the module docstring); empty: one go.
    snapshots : bool
        Save the network after each stage as ``snapshot_<step>.safetensors``.
    init_weights : str or None
        Warm start from these weights (a bundled name or a file) when ``init``
        is None; part of the key only when set, so earlier cells keep theirs.
    """

    label: str
    train: tuple
    validation: "str | tuple[str, ...]"
    config: TrainConfig
    init: "Cell | None" = None
    init_file: str = "best.safetensors"
    stages: tuple = ()
    snapshots: bool = False
    init_weights: str | None = None

    @property
    def validation_sets(self) -> tuple[str, ...]:
        """The validation data set names, as a tuple."""
        return (self.validation,) if isinstance(self.validation, str) else tuple(self.validation)

    def spec(self, fingerprint: Callable[[str], str] | None = None) -> dict:
        """JSON-ready definition (what the key hashes).

        ``fingerprint(name)`` describes a data set's content (images, points,
        resolution, radius), so that two configurations using one name for
        different data never share a run folder.
        """
        cfg = self.config.to_dict()
        cfg.pop("threads", None)  # the number of threads changes speed, not the result
        cfg.pop("init", None)
        # Early stopping decides where a run ends, not its path: a run stopped early is a prefix of the
        # same run without it, so both share a folder (and the keys of runs from before it stay).
        cfg.pop("stop_patience", None)
        cfg.pop("stop_min_delta", None)
        names = sorted({t.dataset for t in self.train} | set(self.validation_sets))
        spec = {
            "train": [dataclasses.asdict(t) for t in self.train],
            "validation": self.validation if isinstance(self.validation, str) else list(self.validation),
            "data": {n: fingerprint(n) for n in names} if fingerprint else None,
            "config": cfg,
            "init": None if self.init is None else [self.init.key(fingerprint), self.init_file],
            "stages": list(self.stages),
            "snapshots": self.snapshots,
        }
        if self.init_weights is not None:
            spec["init_weights"] = _weights_identity(self.init_weights)
        return spec

    def key(self, fingerprint: Callable[[str], str] | None = None) -> str:
        text = json.dumps(self.spec(fingerprint), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def folder_name(self, fingerprint: Callable[[str], str] | None = None) -> str:
        return f"{self.label}-{self.key(fingerprint)}"


@dataclass
class CellRunner:
    """Runs cells into ``runs_dir`` against one collection.

    Attributes
    ----------
    collection : Collection
    runs_dir : Path
    progress : bool
        Progress bars of the training loop.
    log : callable
        Receives one line per event (cell skipped, trained, scored).
    """

    collection: Collection
    runs_dir: Path
    progress: bool = False
    log: Any = print
    trained: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def fingerprint(self, name: str) -> str:
        """A data set's content: resolution, radius, and the ids and point counts of its images."""
        d = self.collection[name]
        parts = [f"{d.mpp:.6g}", f"{d.radius_um:.6g}"]
        for subset in ("train", "validation"):
            parts += [f"{s.id}:{len(s.points)}" for s in d.subsets.get(subset, [])]
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]

    def name(self, cell: Cell) -> str:
        return cell.folder_name(self.fingerprint)

    def folder(self, cell: Cell) -> Path:
        return Path(self.runs_dir) / self.name(cell)

    # --- training ---------------------------------------------------------------

    def _config(self, cell: Cell, steps: int | None = None) -> TrainConfig:
        radius_um = min(self.collection[n].radius_um for n in cell.validation_sets)
        init = cell.init_weights
        if cell.init is not None:
            init = str(self.folder(cell.init) / cell.init_file)
            if not Path(init).is_file():
                raise ConfigError(f"cell {cell.label}: initial weights {init} are missing (train the base first)")
        return dataclasses.replace(
            cell.config,
            mpp=self.collection.mpp,
            val_radius_um=radius_um,
            init=init,
            steps=steps if steps is not None else cell.config.steps,
        )

    def _train(self, cell: Cell, steps: int | None = None):
        from ..train.loop import train_detector

        sets = [fraction_of(self.collection[t.dataset].samples("train"), t.fraction) for t in cell.train]
        weights = [t.weight for t in cell.train]
        val = [s for n in cell.validation_sets for s in self.collection[n].samples("validation")]
        meta = {"dataset": "+".join(t.dataset for t in cell.train), "experiment_cell": cell.spec(self.fingerprint)}
        return train_detector(sets, val, self._config(cell, steps), self.folder(cell), set_weights=weights,
                              progress=self.progress, extra_meta=meta)

    # --- scoring -----------------------------------------------------------------

    def score(self, weights: Path, tests: Sequence[str], threads: int, bf16: bool) -> dict:
        """Test figures of a weights file on each named data set's test images."""
        from ..infer.evaluate import run_detector, score_run
        from ..infer.predict import Detector, InferenceConfig
        from ..models.weights import load_weights

        model, meta = load_weights(weights)
        detector = Detector(model, meta, config=InferenceConfig(threads=threads, bf16=bf16))
        out = {}
        common = self.collection.mpp
        for name in tests:
            ds = self.collection[name]
            samples = ds.samples("test")
            run = _to_common(run_detector(detector, samples), [s.mpp / common for s in samples])
            r = ds.radius_um / common
            scored = score_run(run, xi=detector.threshold_rel, radii=(r,))
            key = f"{r:g}"
            fig = scored["radius"][key]
            out[name] = {
                "precision": fig["precision"], "recall": fig["recall"], "f1": fig["f1"], "ed": fig.get("ed"),
                "mean_image_f1": fig["mean_image_f1"], "tp": fig["tp"], "fp": fig["fp"], "fn": fig["fn"],
                "radius_px": r, "radius_um": ds.radius_um, "images": scored["images"], "xi": scored["xi"],
                "pr_curve": scored["pr_curve"][key],
            }
        return out

    # --- cells -------------------------------------------------------------------

    def run(self, cell: Cell, tests: Sequence[str]) -> dict:
        """Train (or resume, or skip) a cell and score it on ``tests``; the ``result.json`` content."""
        if cell.stages:
            return self.run_staged(cell, tests)[-1]
        folder = self.folder(cell)
        done = _read_json(folder / "result.json")
        if done is not None and set(tests) <= set(done["test"]):
            self.skipped.append(self.name(cell))
            self.log(f"skip {self.name(cell)} (finished)")
            return done
        self.log(f"train {self.name(cell)} ({cell.config.steps} steps)")
        res = self._train(cell)
        result = self._result(cell, res, tests, res.steps_done)
        _write_json(folder / "result.json", result)
        self.trained.append(self.name(cell))
        return result

    def run_staged(self, cell: Cell, tests: Sequence[str]) -> list[dict]:
        """Train a cell stage by stage; one result per stage (see the module docstring)."""
        import torch

        from ..models.weights import read_weights_meta, save_weights

        folder = self.folder(cell)
        results = []
        trained = False
        for stage in cell.stages:
            path = folder / "stages" / f"{stage}.json"
            done = _read_json(path)
            if done is not None and set(tests) <= set(done["test"]):
                results.append(done)
                continue
            ckpt = folder / "checkpoint.pt"
            if ckpt.exists() and int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"]) > stage:
                raise ConfigError(f"{folder} is past stage {stage} but has no result for it: delete the folder")
            self.log(f"train {self.name(cell)} to step {stage}")
            res = self._train(cell, steps=stage)
            trained = True
            if cell.snapshots:
                meta = read_weights_meta(res.best_weights).to_dict()
                save_weights(folder / f"snapshot_{stage}.safetensors", res.model, {**meta, "step": stage})
            result = self._result(cell, res, tests, stage)
            _write_json(path, result)
            results.append(result)
        (self.trained if trained else self.skipped).append(self.name(cell))
        if not trained:
            self.log(f"skip {self.name(cell)} (finished)")
        return results

    def _result(self, cell: Cell, res, tests: Sequence[str], steps: int) -> dict:
        cfg = self._config(cell, steps)
        return {
            "key": cell.key(self.fingerprint),
            "label": cell.label,
            "cell": cell.spec(self.fingerprint),
            "steps": steps,
            "best_step": res.best_step,
            "validation": {k: v for k, v in res.best.items() if isinstance(v, (int, float, str))},
            "wall_time_s": res.wall_time_s,
            "test": self.score(res.best_weights, tests, cfg.threads, cfg.bf16) if tests else {},
        }


def _to_common(run, factors: Sequence[float]):
    """A detection run with predictions and truth mapped from each image's pixels to the common resolution.

    Distances scale by the factor, so matching with ``radius_um / common mpp``
    here pairs exactly as matching in each image's own pixels with
    ``radius_um / image mpp`` would, also for data sets mixing resolutions;
    ED comes out in pixels of the common resolution.
    """
    from ..infer.evaluate import DetectionRun
    from ..transforms import scale_points

    return DetectionRun(run.ids, [scale_points(p, f) for p, f in zip(run.xy, factors)], run.rel_scores,
                        [scale_points(t, f) for t, f in zip(run.truths, factors)], run.seconds)


def _weights_identity(weights: str) -> str:
    """What a warm start's key records: the file's tensors (not where it is stored), else the name as given.

    Keying the path made one run of the same weights two runs when it was started from
    another checkout, and kept one key when bundled weights of the same name changed.
    """
    from ..models.weights import tensor_fingerprint

    return f"tensors:{tensor_fingerprint(weights)[:16]}" if Path(weights).is_file() else weights


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    from ..export import atomic_write

    with atomic_write(path) as f:
        json.dump(data, f, indent=1)


def validation_steps(steps: int, every: int) -> tuple[int, ...]:
    """The steps at which the loop validates: multiples of ``every`` below ``steps``, then ``steps``."""
    return tuple(range(every, steps, every)) + (steps,)


def scratch_cell(dataset: str, config: TrainConfig, *, fraction: float = 1.0, stages: tuple = ()) -> Cell:
    """A model trained from scratch on one data set's training images, validated on its own."""
    label = f"train-{dataset}" if fraction == 1 else f"train-{dataset}-{fraction:g}"
    return Cell(label, (TrainSet(dataset, fraction),), dataset, config, stages=stages)


def figures_row(test: dict) -> dict:
    """P, R, F1, ED, mean per-image F1 of one test result, for a table row."""
    return {k: test.get(k) for k in ("precision", "recall", "f1", "ed", "mean_image_f1")}
