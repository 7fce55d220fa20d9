"""The studies, by name: ``nucleikit experiment NAME`` looks NAME up here.

Each study module defines a frozen ``Params`` dataclass (its ``"study"``
options, with ``needs()``: data set name -> subsets it uses) and
``run(config, collection, runner) -> StudyResult``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import auxiliary, baselines, cross_dataset, distill, finetune, lam, pooled

__all__ = ["Study", "STUDIES"]


@dataclass(frozen=True)
class Study:
    """A registered study: its options, what it needs and how it runs."""

    name: str
    title: str
    params: type
    run: Callable[..., Any]

    def needs(self, params: Any) -> dict[str, tuple[str, ...]]:
        return params.needs()


#: name -> Study
STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study("cross_dataset", cross_dataset.TITLE, cross_dataset.Params, cross_dataset.run),
        Study("finetune", finetune.TITLE, finetune.Params, finetune.run),
        Study("auxiliary", auxiliary.TITLE, auxiliary.Params, auxiliary.run),
        Study("lambda", lam.TITLE, lam.Params, lam.run),
        Study("baselines", baselines.TITLE, baselines.Params, baselines.run),
        Study("pooled", pooled.TITLE, pooled.Params, pooled.run),
        Study("distill", distill.TITLE, distill.Params, distill.run),
    )
}
