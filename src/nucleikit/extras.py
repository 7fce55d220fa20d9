"""Optional dependencies: which extra installs what, and one line when it is missing.

The default install (``pip install nucleikit``) reads images and slides, runs every model and
writes CSV, QuPath GeoJSON, SQLite, label TIFFs and overlays. A few features need more, and
each names the extra that brings it:

========================  ============  ===============================================
module                    extra         needed for
========================  ============  ===============================================
``pyarrow``               ``parquet``   slide tables as Parquet (``--formats parquet``)
``pandas``                ``pandas``    results as DataFrames (:func:`nucleikit.to_dataframe`)
``matplotlib``            ``plots``     ``nucleikit experiment`` reports (PNG figures)
``distributed``/``dask``  ``distributed``  ``--scheduler`` (slides on Dask workers)
``umap``                  ``umap``      the classification benchmark's UMAP figure
========================  ============  ===============================================

``pip install "nucleikit[all]"`` installs them all; ``nucleikit[test]`` installs what the
test suite needs.

>>> missing_extra_message("pyarrow", "Parquet tables")
'Parquet tables: pyarrow is not installed; pip install "nucleikit[parquet]"'
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import NucleikitError

__all__ = ["EXTRAS", "MissingExtraError", "available", "extra_for", "missing_extra_message", "require"]

#: Top-level module -> the extra of ``pyproject.toml`` that installs it.
EXTRAS: dict[str, str] = {
    "pyarrow": "parquet",
    "pandas": "pandas",
    "matplotlib": "plots",
    "dask": "distributed",
    "distributed": "distributed",
    "umap": "umap",
}


class MissingExtraError(NucleikitError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it.

    Also an :class:`ImportError`, so code that tolerates a missing module keeps working.
    """

    def __init__(self, module: str, purpose: str) -> None:
        self.module = module
        self.extra = extra_for(module)
        super().__init__(missing_extra_message(module, purpose))


def extra_for(module: str) -> str | None:
    """The extra installing ``module`` (a dotted name is looked up by its top level), or None."""
    return EXTRAS.get(str(module).partition(".")[0])


def missing_extra_message(module: str, purpose: str) -> str:
    """One line: what needs ``module``, and the ``pip install`` that brings it."""
    top = str(module).partition(".")[0]
    extra = extra_for(top)
    fix = f'pip install "nucleikit[{extra}]"' if extra else f"pip install {top}"
    return f"{purpose}: {top} is not installed; {fix}"


def available(module: str) -> bool:
    """True when ``module`` can be imported (looked up without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that installs it.

    Parameters
    ----------
    module : str
        Dotted module name (``"pyarrow.parquet"``).
    purpose : str
        What needs it, the start of the message (``"Parquet tables"``).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only the optional module itself (or its top level) missing is the user's to fix;
        # a dependency missing inside an installed package stays a bug with its traceback.
        if exc.name is None or exc.name.partition(".")[0] != module.partition(".")[0]:
            raise
        raise MissingExtraError(module, purpose) from None
