"""Baseline comparison (Xing et al. 2019, Table 1): MicroNet against other detectors on the same splits.

Each model of ``models`` is trained and tested on each data set with the
same budget, crops and resolution; the table gives precision, recall, F1 and
ED as mean +- standard deviation over the data sets. Every detector of Xing
et al.'s table is in the registry: MicroNet, FCRN-A/B, the U-Net regressor,
the FCN (``fcn``, a compact FCN-8s regressing the same proximity map) and
Faster R-CNN (``faster_rcnn``, compact, trained from scratch on boxes of a
fixed nucleus size around the points; its detections are the box centres).
All are trained and scored by the same cells (:mod:`nucleikit.experiments.cells`):
the box detector's network returns a detection map, which the same peak finder,
tuning and matching read.

Headline comparison: every model (each trained for every seed of the
configuration). With several seeds each data set's figures are first averaged
over the seeds; the table adds the seeds' range of each model's mean F1
(``f1_seed_range``), and a model's lead smaller than the seeds' range is
called within the noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError
from .cells import CellRunner, figures_row, scratch_cell
from .report import Figure, StudyResult, mean_std
from .seeds import combine, noise, per_seed_rows, seeds_note, verdict

__all__ = ["Params", "run", "TITLE"]

TITLE = "Baseline comparison (Xing et al. 2019, Table 1)"
PAPER = ("Xing et al. (Table 1) compare MicroNet with FCN, FCRN-A, FCRN-B, U-Net and Faster R-CNN and report "
         "that MicroNet has the best F1 on their data sets.")
#: Registry names of the paper's detectors (Table 1), in its order.
PAPER_MODELS = ("fcn", "fcrn_a", "fcrn_b", "unet_regressor", "faster_rcnn", "micronet")
#: How the report names them.
MODEL_NAMES = {"fcn": "FCN", "fcrn_a": "FCRN-A", "fcrn_b": "FCRN-B", "unet_regressor": "U-Net",
               "faster_rcnn": "Faster R-CNN", "micronet": "MicroNet"}


@dataclass(frozen=True)
class Params:
    """Options of the baseline study.

    Attributes
    ----------
    datasets : tuple of str
    models : tuple of str
        Registered detection models.
    model_kwargs : dict
        Per model, architecture arguments (default: the base configuration's
        for the base model, none for the others).
    """

    datasets: tuple[str, ...]
    models: tuple[str, ...] = ("micronet", "fcn", "fcrn_a", "fcrn_b", "unet_regressor", "faster_rcnn")
    model_kwargs: dict = field(default_factory=dict)

    def check(self) -> None:
        from ..models import get_spec

        if not self.datasets or not self.models:
            raise ConfigError("study: baselines needs datasets and models")
        for m in self.models:
            try:
                spec = get_spec(m)
            except Exception as exc:  # noqa: BLE001 - the registry's own message names the known models
                raise ConfigError(f"study: {exc}") from None
            if spec.task != "detection":
                raise ConfigError(f"study: {m!r} is a {spec.task} model, not a detector")
        unknown = set(self.model_kwargs) - set(self.models)
        if unknown:
            raise ConfigError(f"study: model_kwargs for models not in the study: {', '.join(sorted(unknown))}")

    def needs(self) -> dict[str, tuple[str, ...]]:
        return {d: ("train", "validation", "test") for d in self.datasets}


def run(config, collection, runner: CellRunner) -> StudyResult:
    p: Params = config.params
    seeds = config.seeds
    res = StudyResult(TITLE, PAPER)
    per, rows, cells, seed_f1 = [], [], [], {}
    per_by_seed: list[list[dict]] = [[] for _ in seeds]
    for m in p.models:
        kwargs = p.model_kwargs.get(m, dict(config.train.model_kwargs) if m == config.train.model else {})
        by_seed = []
        for k, seed in enumerate(seeds):
            cfg = dataclasses.replace(config.train_for(seed), model=m, model_kwargs=kwargs)
            rows_m = []
            for d in p.datasets:
                r = runner.run(scratch_cell(d, cfg), [d])
                rows_m.append({"model": m, "dataset": d, **figures_row(r["test"][d])})
                cells.append(r)
            per_by_seed[k] += rows_m
            by_seed.append(rows_m)
        seed_f1[m] = [mean_std([f["f1"] for f in rows_m])[0] for rows_m in by_seed]
        mean_rows = combine(by_seed, keys=("model", "dataset"), spread_cols=("f1",) if len(seeds) > 1 else ())
        per += mean_rows
        figs = mean_rows
        row = {"model": m}
        for k in ("precision", "recall", "f1", "ed"):
            mean, std = mean_std([f[k] for f in figs])
            row[k] = f"{mean:.3f} ± {std:.3f}"
            row[f"_{k}"] = mean
        if len(seeds) > 1:
            row["f1_seed_range"] = f"{min(seed_f1[m]):.3f}–{max(seed_f1[m]):.3f}"
        rows.append(row)
    res.tables = {"baselines": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                  "baselines_per_dataset": per}
    res.table_notes = {"baselines": f"Mean ± standard deviation over {len(p.datasets)} data set(s) "
                                    f"({', '.join(p.datasets)}); ED in pixels at {collection.mpp} um/px."}
    figure = {"x": list(p.datasets), "series": {m: [r["f1"] for r in per if r["model"] == m] for m in p.models},
              "xlabel": "data set", "ylabel": "test F1"}
    if len(seeds) > 1:
        res.table_notes["baselines"] += (f" Each data set's figures are the mean over {len(seeds)} seeds "
                                         f"({', '.join(map(str, seeds))}); `f1_seed_range`: the range over the "
                                         "seeds of the model's mean F1 over the data sets.")
        res.table_notes["baselines_per_dataset"] = seeds_note(seeds)
        res.tables["baselines_per_seed"] = per_seed_rows(seeds, per_by_seed)
        figure["spread"] = {m: [[r["f1_min"], r["f1_max"]] for r in per if r["model"] == m] for m in p.models}
    res.figures = [Figure("baselines_f1", "lines", figure,
                          f"Test F1 per model and data set, {config.steps} steps each"
                          + (f" (mean of {len(seeds)} seeds, bars: range)" if len(seeds) > 1 else ""))]
    best = max(rows, key=lambda r: r["_f1"])
    mic = next((r for r in rows if r["model"] == "micronet"), None)
    text = f"The best mean F1 is {best['model']}'s ({best['_f1']:.3f})"
    if mic is not None:
        if best["model"] == "micronet":
            runner_up = max((r for r in rows if r["model"] != "micronet"), key=lambda r: r["_f1"], default=None)
            diff = None if runner_up is None else mic["_f1"] - runner_up["_f1"]
            n = None if runner_up is None else noise(seed_f1["micronet"], seed_f1[runner_up["model"]])
        else:
            diff, n = best["_f1"] - mic["_f1"], noise(seed_f1[best["model"]], seed_f1["micronet"])
        text += (f"; MicroNet's is {mic['_f1']:.3f}, which "
                 f"{verdict(best['model'] == 'micronet', diff, n)} the paper's ranking.")
    res.findings = [text]
    missing = [MODEL_NAMES[m] for m in PAPER_MODELS if m not in p.models]
    if missing:
        res.notes = [f"{', '.join(missing)} of the paper's table {'was' if len(missing) == 1 else 'were'} not run "
                     "in this configuration."]
    if "faster_rcnn" in p.models:
        res.notes.append("Faster R-CNN is trained on boxes of one nucleus size centred on the points (model_kwargs "
                         "box_um, default 8 um); its detections are the box centres, thresholded and spaced by "
                         "the same tuned xi and peak distance as the maps of the other detectors.")
    res.cells = res.headline = cells
    return res
