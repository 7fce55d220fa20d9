"""Each finding of Xing et al. (2019) against the committed study reports: one verdict per finding.

:func:`summary_rows` reads the ``results.json`` of every report under a folder
(``docs/experiments/``), finds the studies' tables and gives, per finding of
the paper (:data:`FINDINGS`: Figs. 4-9 and Table 1), our numbers and a
verdict; :func:`markdown` renders them as the README's summary table
(``tools/experiments_summary.py`` writes it between the README's markers).

A verdict is decided by rules, not by hand:

``not yet run``     no committed report holds the part of the study.
``inconclusive``    the report's numbers point one way (said in the cell) but
                    cannot settle it: fewer than :data:`MIN_SEEDS` seeds, the
                    difference is within the noise (smaller than the seeds'
                    range), or the budget was short (a headline training did
                    not reach its plateau: with a plateau table, any "no";
                    without one, its best validation was its last for most
                    trainings).
``reproduced`` /    :data:`MIN_SEEDS` seeds or more, a difference beyond the
``not reproduced``  noise, and plateaued headline trainings: the direction
                    decides.

The paper's side is its finding as we read it (the study modules' ``PAPER``
texts); its figures are plots, and Table 1's values are not transcribed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Finding", "FINDINGS", "MIN_SEEDS", "load_reports", "summary_rows", "markdown",
           "START_MARK", "END_MARK", "replace_block"]

#: Seeds a verdict other than "inconclusive" needs.
MIN_SEEDS = 3
#: README markers around the generated table.
START_MARK = "<!-- experiments-summary:start (tools/experiments_summary.py writes this table) -->"
END_MARK = "<!-- experiments-summary:end -->"


@dataclass(frozen=True)
class Finding:
    """One finding of the paper and how to read it from a study's results."""

    key: str
    where: str
    experiment: str
    paper: str
    read: Callable[[dict], "dict | None"]


def _range(rows: list[dict], col: str) -> str:
    lo, hi = rows[0].get(f"{col}_min"), rows[0].get(f"{col}_max")
    return "" if lo is None else f" (seeds {lo:.3f}-{hi:.3f})"


def _spread(values: list[float]) -> float | None:
    return (max(values) - min(values)) if len(values) >= 2 else None


def _cross_dataset(raw: dict) -> dict | None:
    rows = raw["tables"].get("same_vs_other")
    if not rows:
        return None
    same = np.array([r["same_f1"] for r in rows])
    other = np.array([r["mean_other_f1"] for r in rows])
    wins, gap = int(np.sum(same > other)), float(np.mean(same - other))
    seeds = _per_seed_gap(raw)
    text = (f"own-data F1 {same.mean():.3f} vs {other.mean():.3f} for the other models (gap {gap:+.3f}"
            + (f", seeds {min(seeds):+.3f} to {max(seeds):+.3f}" if len(seeds) > 1 else "")
            + f"); own model ahead on {wins} of {len(rows)} test sets")
    return {"agrees": wins > len(rows) / 2 and gap > 0, "diff": gap, "noise": _spread(seeds), "ours": text}


def _per_seed_gap(raw: dict) -> list[float]:
    rows = raw["tables"].get("cross_dataset_per_seed")
    if not rows:
        return []
    out = []
    for seed in dict.fromkeys(r["seed"] for r in rows):
        sub = [r for r in rows if r["seed"] == seed]
        names = list(dict.fromkeys(r["train"] for r in sub))
        f1 = {(r["train"], r["test"]): r["f1"] for r in sub}
        gaps = [f1[(t, t)] - np.mean([f1[(o, t)] for o in names if o != t]) for t in names]
        out.append(float(np.mean(gaps)))
    return out


def _iterations(raw: dict) -> dict | None:
    table = raw["tables"].get("vs_iterations")
    if not table:
        return None
    rows = table[1:]
    ahead = sum(r["finetune_f1"] > r["scratch_f1"] for r in rows)
    diff = float(np.mean([r["finetune_f1"] - r["scratch_f1"] for r in rows]))
    per = raw["tables"].get("vs_iterations_per_seed") or []
    seeds = []
    for seed in dict.fromkeys(r["seed"] for r in per):
        sub = [r for r in per if r["seed"] == seed and r.get("scratch_f1") is not None]
        seeds.append(float(np.mean([r["finetune_f1"] - r["scratch_f1"] for r in sub])))
    last = rows[-1]
    regime = raw["config"]["study"].get("finetune_train") or {}
    text = (f"after {last['steps']} steps fine-tuned {last['finetune_f1']:.3f}{_range([last], 'finetune_f1')} vs "
            f"scratch {last['scratch_f1']:.3f}{_range([last], 'scratch_f1')}; fine-tuning ahead at {ahead} of "
            f"{len(rows)} points (base alone {table[0]['finetune_f1']:.3f})"
            + (f"; fine-tuning with {', '.join(f'{k} {v}' for k, v in regime.items())}" if regime else ""))
    return {"agrees": ahead > len(rows) / 2, "diff": diff, "noise": _spread(seeds), "ours": text}


def _fraction(raw: dict) -> dict | None:
    rows = raw["tables"].get("vs_fraction")
    if not rows or len(rows) < 2:
        return None
    small = rows[0]["finetune_f1"] - rows[0]["scratch_f1"]
    large = rows[-1]["finetune_f1"] - rows[-1]["scratch_f1"]
    text = (f"fine-tuned minus scratch: {small:+.3f} F1 with {100 * rows[0]['fraction']:g}% of the target data, "
            f"{large:+.3f} with {100 * rows[-1]['fraction']:g}%")
    return {"agrees": small > 0 and small >= large, "diff": small - large, "noise": None, "ours": text}


def _snapshots(raw: dict) -> dict | None:
    rows = raw["tables"].get("vs_snapshot")
    if not rows:
        return None
    f1 = [r["finetune_f1"] for r in rows]
    text = (f"fine-tuned F1 {min(f1):.3f}-{max(f1):.3f} from snapshots at "
            f"{', '.join(str(r['base_steps']) for r in rows)} base steps")
    # the paper: fine-tuning works from any snapshot; read as all within 0.05 of the best
    return {"agrees": max(f1) - min(f1) <= 0.05, "diff": max(f1) - min(f1), "noise": None, "ours": text}


def _freeze(raw: dict) -> dict | None:
    rows = raw["tables"].get("vs_frozen_blocks")
    if not rows or len(rows) < 2:
        return None
    change = rows[-1]["f1"] - rows[0]["f1"]
    text = (f"F1 {rows[0]['f1']:.3f} with {rows[0]['frozen_blocks']} frozen blocks, {rows[-1]['f1']:.3f} with "
            f"{rows[-1]['frozen_blocks']} ({change:+.3f})")
    return {"agrees": change < 0, "diff": change, "noise": None, "ours": text}


def _auxiliary(raw: dict) -> dict | None:
    rows = raw["tables"].get("vs_aux_fraction")
    if not rows or len(rows) < 2:
        return None
    best = max(rows[1:], key=lambda r: r["f1"])
    diff = best["f1"] - rows[0]["f1"]
    noise = None
    if "f1_min" in rows[0] and rows[0]["f1_min"] is not None:
        noise = max(rows[0]["f1_max"] - rows[0]["f1_min"], best["f1_max"] - best["f1_min"])
    text = (f"target alone F1 {rows[0]['f1']:.3f}{_range([rows[0]], 'f1')}, best mix {best['aux_percent']:g}% "
            f"auxiliary {best['f1']:.3f}{_range([best], 'f1')}")
    return {"agrees": diff > 0, "diff": diff, "noise": noise, "ours": text}


def _gamma(raw: dict) -> dict | None:
    rows = raw["tables"].get("vs_gamma")
    if not rows:
        return None
    best = max(rows, key=lambda r: r["f1"])
    one = next((r for r in rows if r["gamma"] == 1.0), None)
    diff = None if one is None else best["f1"] - one["f1"]
    noise = None
    if one is not None and "f1_min" in one and one["f1_min"] is not None:
        noise = max(one["f1_max"] - one["f1_min"], best["f1_max"] - best["f1_min"])
    text = (f"best gamma {best['gamma']:g} (F1 {best['f1']:.3f}{_range([best], 'f1')})"
            + (f" vs gamma 1 {one['f1']:.3f}{_range([one], 'f1')}" if one else ""))
    return {"agrees": best["gamma"] > 1, "diff": diff, "noise": noise, "ours": text}


def _lambda(raw: dict) -> dict | None:
    rows = raw["tables"].get("vs_lambda_summary")
    if not rows:
        return None
    mid = [r["f1_mean"] for r in rows if 0 < r["lambda"] < 50]
    spread = (max(mid) - min(mid)) if mid else float("nan")
    best = max(rows, key=lambda r: r["f1_mean"])
    noise = None
    if rows[0].get("f1_mean_min") is not None:
        noise = max(r["f1_mean_max"] - r["f1_mean_min"] for r in rows)
    text = f"best lambda {best['lambda']:g} (mean F1 {best['f1_mean']:.3f}); F1 varies by {spread:.3f} for 0 < lambda < 50"
    # robustness is a claim of no difference: it holds when the spread is small, whatever the noise
    return {"agrees": spread <= 0.05, "diff": None, "noise": noise, "ours": text}


def _baselines(raw: dict) -> dict | None:
    rows = raw["tables"].get("baselines")
    if not rows:
        return None
    f1 = {r["model"]: float(str(r["f1"]).split(" ")[0]) for r in rows}
    best = max(f1, key=f1.get)
    text = "; ".join(f"{m} {v:.3f}" for m, v in sorted(f1.items(), key=lambda kv: -kv[1]))
    if "micronet" not in f1:
        return {"agrees": None, "diff": None, "noise": None, "ours": text + " (MicroNet not run)"}
    ranges = {r["model"]: r.get("f1_seed_range") for r in rows}
    other = max((m for m in f1 if m != "micronet"), key=f1.get, default=None)
    diff = None if other is None else f1["micronet"] - f1[other]
    noise = None
    if other is not None and ranges.get("micronet") and ranges.get(other):
        spans = [float(b) - float(a) for a, b in (ranges[m].split("–") for m in ("micronet", other))]
        noise = max(spans)
    return {"agrees": best == "micronet", "diff": diff, "noise": noise, "ours": "mean F1: " + text}


#: The paper's findings, in its order.
FINDINGS: tuple[Finding, ...] = (
    Finding("cross_dataset", "Fig. 4", "cross_dataset",
            "a model does best on its own data set's test images; other organs' models lose accuracy",
            _cross_dataset),
    Finding("finetune_iterations", "Fig. 5, row 1", "finetune",
            "fine-tuning reaches a given F1 in fewer iterations than training from scratch", _iterations),
    Finding("finetune_fraction", "Fig. 5, row 2", "finetune",
            "fine-tuning helps most when little target data is available", _fraction),
    Finding("finetune_snapshots", "Fig. 5, row 3", "finetune",
            "fine-tuning works from base models taken at various training iterations", _snapshots),
    Finding("finetune_freeze", "Fig. 5, row 4", "finetune",
            "freezing the first blocks is tolerated; freezing most of the network hurts", _freeze),
    Finding("auxiliary", "Fig. 6", "auxiliary",
            "adding other organs' data to the target's improves the target's F1 (not always)", _auxiliary),
    Finding("gamma", "Figs. 7-8", "auxiliary",
            "weighting the target's loss more than the auxiliary data's (gamma > 1) helps", _gamma),
    Finding("lambda", "Fig. 9", "lambda", "F1 is robust to lambda over a wide middle range (lambda = 5 used)",
            _lambda),
    Finding("baselines", "Table 1", "baselines",
            "MicroNet has the best F1 against FCN, FCRN-A, FCRN-B, U-Net and Faster R-CNN", _baselines),
)


def load_reports(folder: str | Path) -> list[tuple[Path, dict]]:
    """(path, content) of every study ``results.json`` under ``folder`` (other JSON files are skipped)."""
    out = []
    for path in sorted(Path(folder).glob("*/results.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw.get("config"), dict) and "experiment" in raw["config"] and "tables" in raw:
            out.append((path, raw))
    return out


def _budget(raw: dict) -> tuple[bool, str]:
    """(short, description) of a report's budget."""
    steps = raw["config"].get("steps")
    plateau = raw.get("plateau")
    if plateau:
        logged = [r for r in plateau if r.get("plateaued") is not None]
        short = [r for r in logged if r["plateaued"] == "no"]
        return bool(short) or not logged, (f"{len(logged) - len(short)} of {len(logged)} headline trainings "
                                            f"plateaued")
    cells = list({c.get("key"): c for c in raw.get("cells", [])}.values())
    at_end = [c for c in cells if c.get("best_step") == c.get("steps")]
    budgets = sorted({c.get("steps") for c in cells if c.get("steps")}) or [steps]
    text = (f"{'/'.join(map(str, budgets))} steps; best validation at the last step for {len(at_end)} of "
            f"{len(cells)} trainings")
    return len(at_end) > len(cells) / 2, text


def _seeds(raw: dict) -> int:
    return len(raw["config"].get("seeds") or [raw["config"].get("seed", 0)])


def summary_rows(folder: str | Path, root: str | Path | None = None) -> list[dict]:
    """One row per finding and report that holds it (a finding no report holds: one "not yet run" row).

    Parameters
    ----------
    folder : path
        Holds one sub-folder per report (``docs/experiments``).
    root : path or None
        Report paths are given relative to it (default: ``folder``'s parent's parent).
    """
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent.parent
    reports = load_reports(folder)
    rows = []
    for f in FINDINGS:
        found = False
        for path, raw in reports:
            if raw["config"]["experiment"] != f.experiment:
                continue
            read = f.read(raw)
            if read is None:
                continue
            found = True
            n = _seeds(raw)
            short, budget = _budget(raw)
            agrees = read["agrees"]
            direction = {True: "agrees", False: "disagrees", None: "no direction"}[agrees]
            noisy = (read["noise"] is not None and read["diff"] is not None and abs(read["diff"]) < read["noise"])
            reasons = []
            if n < MIN_SEEDS:
                reasons.append(f"{n} seed{'s' if n > 1 else ''}")
            if noisy:
                reasons.append(f"within the noise ({read['diff']:+.3f} < seed range {read['noise']:.3f})")
            if short:
                reasons.append("budget short of the plateau")
            if agrees is None or reasons:
                verdict = f"inconclusive ({direction} in direction; {', '.join(reasons) or 'no comparison'})"
            else:
                verdict = "reproduced" if agrees else "not reproduced"
            rel = path.parent.relative_to(root) if path.is_relative_to(root) else path.parent
            rows.append({"finding": f.key, "where": f.where, "paper": f.paper, "ours": read["ours"],
                         "verdict": verdict, "report": f"{rel.as_posix()}/report.md", "budget": budget, "seeds": n})
        if not found:
            rows.append({"finding": f.key, "where": f.where, "paper": f.paper, "ours": "–", "verdict": "not yet run",
                         "report": "", "budget": "", "seeds": 0})
    return rows


def markdown(rows: list[dict]) -> str:
    """The README table (Markdown) of :func:`summary_rows`."""
    lines = ["| paper | finding (as we read the paper) | ours | verdict | report, budget |",
             "|---|---|---|---|---|"]
    for r in rows:
        source = f"[{r['report'].rsplit('/', 1)[0]}]({r['report']}): {r['budget']}" if r["report"] else "–"
        lines.append(f"| {r['where']} | {r['paper']} | {r['ours']} | **{r['verdict']}** | {source} |")
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between :data:`START_MARK` and :data:`END_MARK` replaced by ``block``."""
    try:
        a = text.index(START_MARK) + len(START_MARK)
        b = text.index(END_MARK, a)
    except ValueError:
        raise ValueError(f"the markers {START_MARK!r} ... {END_MARK!r} are not in the file") from None
    return text[:a] + "\n" + block + text[b:]
