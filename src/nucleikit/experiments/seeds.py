"""Several seeds of one comparison: mean, spread, and when a difference is within the noise.

A study trains its headline comparison once per seed of the configuration
(:attr:`~nucleikit.experiments.config.ExperimentConfig.seeds`) and builds one
table per seed with the code it always had; :func:`combine` turns those into
the table it reports:

* one seed: the seed's table, unchanged (a one-seed configuration reports
  exactly what it did before seeds existed);
* several: the row-wise **mean** of every numeric column, and for each column
  named in ``spread`` its population standard deviation (``<col>_sd``) and
  its range over the seeds (``<col>_min``, ``<col>_max``), placed after it.

The **noise** of a comparison is the largest seed-to-seed range (max - min)
of the quantities compared; a difference whose magnitude is smaller than it
is called *within the noise* (:func:`verdict`), whatever its sign. With one
seed there is no noise estimate and no such call.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["SPREAD_SUFFIXES", "combine", "per_seed_rows", "spread", "noise", "within_noise", "verdict",
           "seeds_note"]

#: Columns :func:`combine` adds after each spread column.
SPREAD_SUFFIXES = ("_sd", "_min", "_max")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def spread(values: Sequence[float | None]) -> dict:
    """Mean, population standard deviation, minimum and maximum of the values that are not None.

    Returns ``{"mean", "sd", "min", "max", "n"}``; the figures are None when no value is given.
    """
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std()), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def combine(tables: Sequence[list[dict]], *, keys: Sequence[str] = (), spread_cols: Sequence[str] = ()) -> list[dict]:
    """One table from the same table of several seeds (see the module docstring).

    Parameters
    ----------
    tables : sequence of list of dict
        One table per seed, rows in the same order.
    keys : sequence of str
        Columns that identify a row (copied from the first seed; they must agree).
    spread_cols : sequence of str
        Numeric columns that get ``_sd``, ``_min`` and ``_max`` columns.

    Returns
    -------
    list of dict
        ``tables[0]`` itself for one seed.
    """
    if not tables:
        raise ValueError("no tables to combine")
    if len(tables) == 1:
        return tables[0]
    out = []
    for rows in zip(*tables, strict=True):
        first = rows[0]
        for k in keys:
            if any(r.get(k) != first.get(k) for r in rows):
                raise ValueError(f"the seeds' tables do not share their rows (column {k!r})")
        row: dict = {}
        for col, v in first.items():
            values = [r.get(col) for r in rows]
            if col in spread_cols:  # the spread columns on every row, None where no seed has a value
                s = spread(values)
                row[col] = s["mean"]
                row[f"{col}_sd"], row[f"{col}_min"], row[f"{col}_max"] = s["sd"], s["min"], s["max"]
            elif col in keys or not any(_number(x) for x in values):
                row[col] = v
            else:
                row[col] = spread(values)["mean"]
        out.append(row)
    return out


def per_seed_rows(seeds: Sequence[int], tables: Sequence[list[dict]]) -> list[dict]:
    """The seeds' tables stacked, with a leading ``seed`` column."""
    return [{"seed": s, **r} for s, rows in zip(seeds, tables, strict=True) for r in rows]


def noise(*groups: Sequence[float | None]) -> float | None:
    """The largest seed-to-seed range (max - min) of the groups; None unless every group has two values or more."""
    ranges = []
    for g in groups:
        v = [x for x in g if x is not None]
        if len(v) < 2:
            return None
        ranges.append(max(v) - min(v))
    return max(ranges) if ranges else None


def within_noise(diff: float, noise_: float | None) -> bool:
    """True when ``|diff|`` is smaller than the noise (never with one seed)."""
    return noise_ is not None and abs(diff) < noise_


def verdict(agrees: bool, diff: float | None = None, noise_: float | None = None) -> str:
    """The verb phrase of a finding: "agrees with", "does not agree with", or the within-the-noise call.

    Used as ``f"this {verdict(...)} the paper's finding"``. With one seed
    (``noise_`` None) it is exactly the phrase the studies wrote before.
    """
    if diff is not None and within_noise(diff, noise_):
        return (f"is within the noise (difference {diff:+.3f}, smaller than the seed-to-seed range "
                f"{noise_:.3f}), so it neither agrees nor disagrees with")
    return "agrees with" if agrees else "does not agree with"


def seeds_note(seeds: Sequence[int], part: str = "") -> str:
    """A table note's sentence on the seeds (empty for one seed)."""
    if len(seeds) < 2:
        return ""
    what = f"{part}: " if part else ""
    return (f"{what}mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}); `_sd` population standard "
            "deviation, `_min`/`_max` the range over the seeds.")
