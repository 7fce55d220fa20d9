"""Baseline comparison (Xing et al. 2019, Table 1): MicroNet against other detectors on the same splits.

Each model of ``models`` is trained and tested on each data set with the
same budget, crops and resolution; the table gives precision, recall, F1 and
ED as mean +- standard deviation over the data sets. Xing et al.'s table also
has an FCN and Faster R-CNN ("FRCN"): neither is in nucleikit's model
registry, so they are not run (the report says so rather than inventing them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError
from .cells import CellRunner, figures_row, scratch_cell
from .report import Figure, StudyResult, mean_std

__all__ = ["Params", "run", "TITLE"]

TITLE = "Baseline comparison (Xing et al. 2019, Table 1)"
PAPER = ("Xing et al. (Table 1) compare MicroNet with FCN, FCRN-A, FCRN-B, U-Net and Faster R-CNN and report "
         "that MicroNet has the best F1 on their data sets.")
NOT_IN_REGISTRY = ("FCN", "Faster R-CNN (FRCN)")


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
    models: tuple[str, ...] = ("micronet", "fcrn_a", "fcrn_b", "unet_regressor")
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
    res = StudyResult(TITLE, PAPER)
    per, rows, cells = [], [], []
    for m in p.models:
        kwargs = p.model_kwargs.get(m, dict(config.train.model_kwargs) if m == config.train.model else {})
        cfg = dataclasses.replace(config.train, model=m, model_kwargs=kwargs)
        figs = []
        for d in p.datasets:
            r = runner.run(scratch_cell(d, cfg), [d])
            f = figures_row(r["test"][d])
            per.append({"model": m, "dataset": d, **f})
            figs.append(f)
            cells.append(r)
        row = {"model": m}
        for k in ("precision", "recall", "f1", "ed"):
            mean, std = mean_std([f[k] for f in figs])
            row[k] = f"{mean:.3f} ± {std:.3f}"
            row[f"_{k}"] = mean
        rows.append(row)
    res.tables = {"baselines": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                  "baselines_per_dataset": per}
    res.table_notes = {"baselines": f"Mean ± standard deviation over {len(p.datasets)} data set(s) "
                                    f"({', '.join(p.datasets)}); ED in pixels at {collection.mpp} um/px."}
    res.figures = [Figure("baselines_f1", "lines",
                          {"x": list(p.datasets),
                           "series": {m: [r["f1"] for r in per if r["model"] == m] for m in p.models},
                           "xlabel": "data set", "ylabel": "test F1"},
                          f"Test F1 per model and data set, {config.steps} steps each")]
    best = max(rows, key=lambda r: r["_f1"])
    mic = next((r for r in rows if r["model"] == "micronet"), None)
    text = f"The best mean F1 is {best['model']}'s ({best['_f1']:.3f})"
    if mic is not None:
        text += (f"; MicroNet's is {mic['_f1']:.3f}, which "
                 f"{'agrees with' if best['model'] == 'micronet' else 'does not agree with'} the paper's ranking.")
    res.findings = [text]
    res.notes = [f"{', '.join(NOT_IN_REGISTRY)} of the paper's table are not in nucleikit's model registry and were "
                 "not run."]
    res.cells = cells
    return res
