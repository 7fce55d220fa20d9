"""One detector for any H&E image: pooled training data and the threshold rule that transfers.

Xing et al. (2019) find that adding other organs' images to a target's
training data (weighted by gamma in the loss) helps the target. Taken to its
end, that is a default detector: train one model on every annotated H&E data
set at one resolution, validate it on all of their validation images, and test
it on each data set's test images with that data set's own matching radius.

The study also asks which **threshold rule** carries over to a data set the
rule was not tuned on (Xing et al. tune the relative threshold xi per data
set; a user's slide has no validation images). For each validation data set
in turn it tunes each rule on the *other* data sets' validation images and
scores the held-out one's validation images (leave one data set out; the test
images stay untouched):

* ``relative``: a peak must exceed ``xi * max(map)`` (xi and the peak
  distance tuned; no floor);
* ``absolute``: a peak must exceed a fixed map value (the floor and the peak
  distance tuned; xi = 0);
* ``both``: the rule the training loop ships (:mod:`nucleikit.train.tuning`):
  xi and the distance first, then the largest floor that costs at most the
  tolerance of F1 and of recall at the lowest xi.

``own`` is the best F1 of the grid on the held-out data set itself (what
tuning on it would reach), as a ceiling.

Headline comparison: the pooled model, trained for every seed of the
configuration (the references are fixed weights, scored once). With several
seeds the test table gives the pooled model's mean and spread per test set
(:mod:`.seeds`), and its difference from a reference smaller than the seeds'
range is called within the noise. The threshold-rule comparison uses the
first seed's model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..train.tuning import FLOOR_GRID, FLOOR_TOLERANCE, prf_from_counts, score_grid
from .cells import Cell, CellRunner, TrainSet, figures_row
from .report import Figure, StudyResult
from .seeds import combine, noise, per_seed_rows, seeds_note, within_noise

__all__ = ["Params", "run", "report", "check_sets", "needs_of", "TITLE", "RULES", "tune_rule", "pool_rows", "threshold_transfer",
           "validation_maps", "GridTables"]

TITLE = "A detector for any H&E image: pooled data sets, and the threshold rule that transfers"
PAPER = ("Xing et al. (Figs. 6-8) find that auxiliary data from other organs, mixed into the target's training "
         "data with a gamma-weighted loss, improves the target's F1; they tune the relative threshold xi on each "
         "data set. This study trains one model on every data set at once and asks which threshold rule holds on "
         "a data set it was not tuned on.")

#: Threshold rules compared (see the module docstring).
RULES = ("relative", "absolute", "both")


@dataclass(frozen=True)
class Params:
    """Options of the pooled study.

    Attributes
    ----------
    train : tuple of str
        Data sets whose training images are pooled.
    validation : tuple of str
        Data sets whose validation images choose the best step and the
        post-processing values (pooled), and between which the threshold rules
        are compared (leave one out; needs two at least for that table).
    tests : tuple of str
        Data sets whose test images score the model (each at its own radius).
    gammas : dict
        Loss weight per training data set (default 1).
    init : str or None
        Warm start: a bundled weights name (e.g. ``"micronet"``) or a file.
    references : tuple of str
        Other weights (bundled names or files) scored on the same test sets,
        for comparison (e.g. the CRCHisto-only MicroNet).
    label : str
        Run-folder prefix of the pooled model.
    """

    train: tuple[str, ...]
    validation: tuple[str, ...]
    tests: tuple[str, ...]
    gammas: dict = field(default_factory=dict)
    init: str | None = None
    references: tuple[str, ...] = ()
    label: str = "pooled"

    def check(self) -> None:
        check_sets(self, "pooled")

    def needs(self) -> dict[str, tuple[str, ...]]:
        return needs_of(self)


def check_sets(params, study: str) -> None:
    """Refuse ``train``/``validation``/``tests``/``gammas`` options a pooled training cannot use (one line)."""
    if not params.train or not params.validation or not params.tests:
        raise ConfigError(f"study: {study} needs train, validation and tests data sets")
    for name in ("train", "validation", "tests"):
        values = getattr(params, name)
        if len(set(values)) != len(values):
            raise ConfigError(f"study: a data set is listed twice in {name}")
    unknown = set(params.gammas) - set(params.train)
    if unknown:
        raise ConfigError(f"study: gammas for data sets not in train: {', '.join(sorted(unknown))}")
    bad = {k: v for k, v in params.gammas.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0}
    if bad:
        raise ConfigError(f"study: gammas must be positive numbers, got {bad}")


def needs_of(params) -> dict[str, tuple[str, ...]]:
    """Data set name -> the subsets a pooled training uses (train, validation, test)."""
    out: dict[str, list[str]] = {}
    for names, subset in ((params.train, "train"), (params.validation, "validation"), (params.tests, "test")):
        for n in names:
            out.setdefault(n, []).append(subset)
    return {n: tuple(s) for n, s in out.items()}


def pool_rows(tables: Sequence[list[dict]]) -> list[dict]:
    """Sum the counts of several :func:`~nucleikit.train.tuning.score_grid` tables row by row.

    Each table comes from one data set, matched with that data set's own
    radius; the tables must share their grids (same rows in the same order).
    Precision, recall and F1 are recomputed from the pooled counts.
    """
    if not tables:
        raise ValueError("no tables to pool")
    out = []
    for rows in zip(*tables, strict=True):
        keys = {(r["min_distance"], r["threshold_rel"], r["threshold_abs"]) for r in rows}
        if len(keys) != 1:
            raise ValueError("the tables do not share their grids")
        tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
        p, r_, f = prf_from_counts(tp, fp, fn)
        out.append({**rows[0], "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r_, "f1": f})
    return out


def tune_rule(rows: list[dict], rule: str, tolerance: float = FLOOR_TOLERANCE) -> dict:
    """The grid row a threshold rule picks from a full (distance x xi x floor) table.

    Parameters
    ----------
    rows : list of dict
        :func:`~nucleikit.train.tuning.score_grid` rows (pooled or not) over
        the full grid, which must contain xi = 0 and floor = 0.
    rule : {"relative", "absolute", "both"}
        See the module docstring. Ties go to the smaller xi, floor and
        distance (the first row of highest F1 in ascending order), as
        :func:`~nucleikit.train.tuning.tune_peaks` breaks them.
    tolerance : float
        ``both``: largest loss of F1 (at the chosen xi) and of recall (at the
        lowest xi of the grid) the floor may cost.

    Returns
    -------
    dict
        The chosen row (``min_distance``, ``threshold_rel``, ``threshold_abs``
        and its figures).
    """
    order = sorted(rows, key=lambda r: (r["min_distance"], r["threshold_rel"], r["threshold_abs"]))
    if rule == "relative":
        cand = [r for r in order if r["threshold_abs"] == 0.0]
    elif rule == "absolute":
        cand = [r for r in order if r["threshold_rel"] == 0.0]
    elif rule == "both":
        step1 = tune_rule(rows, "relative")
        md, xi = step1["min_distance"], step1["threshold_rel"]
        lowest = min(r["threshold_rel"] for r in rows)
        at = {r["threshold_abs"]: r for r in order if r["min_distance"] == md and r["threshold_rel"] == xi}
        low = {r["threshold_abs"]: r for r in order if r["min_distance"] == md and r["threshold_rel"] == lowest}
        chosen = at[0.0]
        for floor in sorted(at):
            if low[floor]["recall"] < low[0.0]["recall"] - tolerance:
                break  # recall at a fixed xi never rises with the floor
            if at[floor]["f1"] >= step1["f1"] - tolerance:
                chosen = at[floor]
        return chosen
    else:
        raise ValueError(f"unknown threshold rule {rule!r} (known: {', '.join(RULES)})")
    if not cand:
        raise ValueError(f"the grid has no rows for the {rule} rule")
    return max(cand, key=lambda r: r["f1"])  # max keeps the first of equal F1


def validation_maps(detector, collection, names: Sequence[str]) -> dict[str, tuple[list, list, float]]:
    """Per validation data set: the detector's maps, the true centres and the radius, in its pixels.

    Parameters
    ----------
    detector : nucleikit.infer.predict.Detector
        Its maps are computed at its own resolution (images resampled from theirs).
    collection : Collection
        Holds the named data sets (their ``"validation"`` samples and radii).
    names : sequence of str

    Returns
    -------
    dict
        Name -> (list of (H, W) maps, list of (M, 2) true centres (x, y), matching
        radius ``radius_um / detector.mpp``), all in the detector's pixels.
    """
    from ..transforms import scale_factor, scale_points

    out = {}
    for name in names:
        ds = collection[name]
        maps, truths = [], []
        for s in ds.samples("validation"):
            det = detector.detect(s.load_image(), mpp=s.mpp, keep_map=True)
            maps.append(det.prob)
            truths.append(scale_points(np.asarray(s.points, float).reshape(-1, 2), scale_factor(s.mpp, detector.mpp)))
        out[name] = (maps, truths, ds.radius_um / detector.mpp)
    return out


class GridTables:
    """Score-grid rows of each validation data set's maps, computed on demand and kept.

    A full (distance x xi x floor) grid costs one matching per image and
    combination; a rule needs only a slice of it (the relative rule: floor 0;
    the absolute rule: xi 0; ``both``: the relative slice, then the floors at
    the chosen xi and distance), so slices are computed when first asked for.

    Parameters
    ----------
    maps : dict
        :func:`validation_maps`'s result: name -> (maps, truths, radius in pixels).
    """

    def __init__(self, maps: dict[str, tuple[list, list, float]]) -> None:
        self.maps = maps
        self._cache: dict[tuple, list[dict]] = {}

    def rows(self, name: str, mds: Sequence[float], xis: Sequence[float], floors: Sequence[float]) -> list[dict]:
        """:func:`~nucleikit.train.tuning.score_grid` rows of one data set."""
        key = (name, tuple(float(v) for v in mds), tuple(float(v) for v in xis), tuple(float(v) for v in floors))
        if key not in self._cache:
            m, t, r = self.maps[name]
            self._cache[key] = score_grid(m, t, radius=r, min_distance_grid=key[1], xi_grid=key[2],
                                          threshold_abs_grid=key[3])
        return self._cache[key]

    def pooled(self, names: Sequence[str], mds, xis, floors) -> list[dict]:
        """Rows of several data sets pooled (each matched at its own radius)."""
        return pool_rows([self.rows(n, mds, xis, floors) for n in names])

    def choose(self, names: Sequence[str], rule: str, *, xi_grid: Sequence[float], md_grid: Sequence[float],
               floors: Sequence[float] = FLOOR_GRID, tolerance: float = FLOOR_TOLERANCE) -> dict:
        """The row ``rule`` picks on the pooled validation images of ``names`` (:func:`tune_rule`)."""
        if rule not in RULES:
            raise ValueError(f"unknown threshold rule {rule!r} (known: {', '.join(RULES)})")
        if rule == "absolute":
            return tune_rule(self.pooled(names, md_grid, (0.0,), floors), "absolute")
        relative = self.pooled(names, md_grid, sorted(xi_grid), (0.0,))
        step1 = tune_rule(relative, "relative")
        if rule == "relative":
            return step1
        xis = sorted({min(xi_grid), step1["threshold_rel"]})
        return tune_rule(relative + self.pooled(names, (step1["min_distance"],), xis, floors), "both", tolerance)

    def score(self, name: str, chosen: Mapping[str, float]) -> dict:
        """The figures of one data set at a chosen row's values."""
        (row,) = self.rows(name, (chosen["min_distance"],), (chosen["threshold_rel"],), (chosen["threshold_abs"],))
        return row


def threshold_transfer(grid: GridTables, *, xi_grid: Sequence[float], md_grid: Sequence[float]) -> list[dict]:
    """Leave one data set out: each rule tuned on the others, scored on the held-out one.

    Parameters
    ----------
    grid : GridTables
        The validation data sets' maps.
    xi_grid, md_grid : sequences of float
        The grids the rules are tuned over (floors: :data:`~nucleikit.train.tuning.FLOOR_GRID`).

    Returns
    -------
    list of dict
        One row per held-out data set: F1 of each rule, the values it chose,
        and ``own_f1``, the best F1 of the relative and absolute grids on the
        held-out set itself (what tuning on it would reach).
    """
    names = list(grid.maps)
    out = []
    for held in names:
        others = [n for n in names if n != held]
        row: dict = {"held_out": held}
        for rule in RULES:
            chosen = grid.choose(others, rule, xi_grid=xi_grid, md_grid=md_grid)
            row[f"{rule}_f1"] = grid.score(held, chosen)["f1"]
            row[f"{rule}_values"] = (f"xi {chosen['threshold_rel']:g}, floor {chosen['threshold_abs']:g}, "
                                     f"d {chosen['min_distance']:g}")
        own = [grid.choose([held], r, xi_grid=xi_grid, md_grid=md_grid)["f1"] for r in ("relative", "absolute")]
        row["own_f1"] = max(own)
        out.append(row)
    return out


def run(config, collection, runner: CellRunner) -> StudyResult:
    from ..models.weights import resolve_weights

    p = config.params
    sets = tuple(TrainSet(d, 1.0, float(p.gammas.get(d, 1.0))) for d in p.train)
    init = None if p.init is None else str(resolve_weights(p.init))
    cells = [Cell(p.label, sets, tuple(p.validation), config.train_for(s), init_weights=init) for s in config.seeds]
    return report(config, collection, runner, cells)


def report(config, collection, runner: CellRunner, cells: Sequence[Cell], *, title: str = TITLE,
           paper: str = PAPER, references: Sequence[str] | None = None, what: str = "pooled") -> StudyResult:
    """Train the cells (one per seed) and score them as the pooled study does.

    The test table (each test set at its own radius, the references scored on the
    same images), with several seeds the per-seed table and the noise findings, and
    with two validation sets or more the threshold-rule transfer of the first seed's
    model. Other studies training one detector on several data sets (the distillation
    study) reuse it.

    Parameters
    ----------
    config : ExperimentConfig
        Its ``params`` have ``tests``, ``validation``, ``label`` and ``references``.
    cells : sequence of Cell
        One per seed of ``config.seeds``, in order.
    title, paper : str
        The report's title and its reading of the paper.
    references : sequence of str or None
        Weights scored beside the cells (default ``params.references``).
    what : str
        What the findings call the trained model (``"the pooled model"``).
    """
    from ..models.weights import resolve_weights

    p = config.params
    seeds = config.seeds
    results = [runner.run(c, p.tests) for c in cells]
    cell = cells[0]
    weights = runner.folder(cell) / "best.safetensors"

    own = [[{"model": f"{p.label} (this study)", "test": t, **figures_row(r["test"][t])} for t in p.tests]
           for r in results]
    rows = combine(own, keys=("model", "test"), spread_cols=("f1",) if len(seeds) > 1 else ())
    for ref in (p.references if references is None else references):
        scored = runner.score(resolve_weights(ref), p.tests, config.train.threads, config.train.bf16)
        rows += [{"model": ref, "test": t, **figures_row(scored[t])} for t in p.tests]

    res = StudyResult(title, paper)
    res.tables["test"] = rows
    res.table_notes["test"] = ("Test images of each data set, matched at its own radius (PROTOCOL.md), with the "
                               "post-processing values each model carries.")
    if len(seeds) > 1:
        res.table_notes["test"] += f" {p.label}: " + seeds_note(seeds) + " The references are scored once."
        res.tables["test_per_seed"] = per_seed_rows(seeds, own)
    if len(p.validation) >= 2:
        from ..infer.predict import Detector, InferenceConfig

        cfg = config.train
        detector = Detector.from_weights(weights, config=InferenceConfig(threads=cfg.threads, bf16=cfg.bf16))
        grid = GridTables(validation_maps(detector, collection, p.validation))
        transfer = threshold_transfer(grid, xi_grid=cfg.xi_grid, md_grid=cfg.min_distance_grid)
        res.tables["threshold_transfer"] = transfer
        res.table_notes["threshold_transfer"] = (
            "Validation images only: each rule tuned on the other data sets' validation images, scored on the "
            "held-out data set's; own = the better of the relative and absolute rules tuned on the held-out set itself.")
        means = {r: float(np.mean([t[f"{r}_f1"] for t in transfer])) for r in RULES}
        best = max(RULES, key=lambda r: means[r])
        res.findings.append(
            "Leave one data set out, mean validation F1: "
            + ", ".join(f"{r} {means[r]:.3f}" for r in RULES)
            + f" (own-data ceiling {np.mean([t['own_f1'] for t in transfer]):.3f}); the {best} rule transfers best.")
        res.figures.append(Figure(
            "threshold_transfer", "lines",
            {"x": [t["held_out"] for t in transfer],
             "series": {**{r: [t[f"{r}_f1"] for t in transfer] for r in RULES},
                        "own (ceiling)": [t["own_f1"] for t in transfer]},
             "xlabel": "held-out data set", "ylabel": "validation F1"},
            "Threshold rule tuned on the other data sets, scored on the held-out one"))
    by_model: dict[str, list[float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r["f1"])
    res.findings.append("Mean test F1 over " + ", ".join(p.tests) + ": "
                        + "; ".join(f"{m} {np.mean(v):.3f}" for m, v in by_model.items()) + ".")
    figure = {"x": list(p.tests), "series": {m: v for m, v in by_model.items()}, "xlabel": "test set", "ylabel": "F1"}
    if len(seeds) > 1:
        label = f"{p.label} (this study)"
        figure["spread"] = {label: [[r["f1_min"], r["f1_max"]] for r in rows if r["model"] == label]}
        seed_means = [float(np.mean([r["f1"] for r in t])) for t in own]
        n = noise(seed_means)
        ours = float(np.mean(by_model[label]))
        parts = []
        for m, v in by_model.items():
            if m == label:
                continue
            d = ours - float(np.mean(v))
            parts.append(f"{d:+.3f} against {m} ({'within the noise' if within_noise(d, n) else 'beyond the noise'})")
        res.findings.append(f"Over {len(seeds)} seeds the {what} model's mean test F1 ranges {min(seed_means):.3f}"
                            f"-{max(seed_means):.3f}" + (": " + "; ".join(parts) if parts else "") + ".")
    res.figures.append(Figure("test_f1", "lines", figure, "Test F1 per data set"))
    res.cells = results
    res.headline = results
    return res
