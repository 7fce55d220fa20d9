"""Optional dependencies: one line naming the extra when one is missing (nucleikit.extras)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nucleikit.errors import ConfigError, NucleikitError
from nucleikit.extras import EXTRAS, MissingExtraError, available, extra_for, missing_extra_message, require


@pytest.fixture
def without(monkeypatch):
    """Make modules unimportable, as in an install without their extra."""

    # Modules that read the installed formats once, at import, are imported first: hiding
    # pyarrow must not leave them with the wrong default for later tests.
    import nucleikit.cli.main  # noqa: F401
    import nucleikit.cli.options  # noqa: F401
    import nucleikit.infer.wsi  # noqa: F401

    def hide(*names: str) -> None:
        for name in names:
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, loaded)
            monkeypatch.setitem(sys.modules, name, None)  # "import name" now raises ModuleNotFoundError

    return hide


def test_each_optional_module_names_its_extra():
    assert EXTRAS == {"pyarrow": "parquet", "pandas": "pandas", "matplotlib": "plots", "dask": "distributed",
                      "distributed": "distributed", "umap": "umap"}
    assert extra_for("pyarrow.parquet") == "parquet"
    assert extra_for("numpy") is None
    assert missing_extra_message("pyarrow", "Parquet tables") == (
        'Parquet tables: pyarrow is not installed; pip install "nucleikit[parquet]"')


def test_pyproject_declares_every_extra_and_the_test_extra_installs_them():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRAS.values()) | {"all", "test"} == set(extras)
    default = " ".join(project["dependencies"])
    for heavy in ("pandas", "pyarrow", "matplotlib"):
        assert heavy not in default
        assert any(req.startswith(heavy) for req in extras["test"]), heavy
        assert any(req.startswith(heavy) for req in extras["all"]), heavy
    assert "torch==2.13.0" in project["dependencies"]


def test_require_raises_one_line_naming_the_extra(without):
    without("pyarrow")
    assert not available("pyarrow")
    with pytest.raises(MissingExtraError) as info:
        require("pyarrow.parquet", "Parquet tables")
    assert isinstance(info.value, NucleikitError) and isinstance(info.value, ImportError)
    assert str(info.value) == 'Parquet tables: pyarrow is not installed; pip install "nucleikit[parquet]"'
    assert info.value.extra == "parquet"


def test_require_keeps_a_bug_inside_an_installed_package_a_traceback(monkeypatch):
    import importlib

    def broken(name):
        raise ModuleNotFoundError("No module named 'six'", name="six")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError) as info:
        require("pandas", "DataFrames")
    assert not isinstance(info.value, MissingExtraError)


def test_parquet_without_pyarrow(without, tmp_path):
    from nucleikit.export import check_slide_formats, slide_formats, write_points_parquet

    without("pyarrow")
    assert slide_formats() == ("csv", "geojson", "sqlite")  # the default leaves it out
    with pytest.raises(MissingExtraError, match=r'--formats parquet: pyarrow is not installed; pip install "nucleikit\[parquet\]"'):
        check_slide_formats("csv,parquet")
    with pytest.raises(ConfigError, match="got xlsx"):  # an unknown name is still a plain option error
        check_slide_formats("xlsx")
    with pytest.raises(MissingExtraError, match=r"nucleikit\[parquet\]"):
        write_points_parquet(tmp_path / "a.parquet", [(np.zeros((1, 2)), {})], columns={})
    assert not (tmp_path / "a.parquet").exists()


def test_cli_formats_parquet_without_pyarrow_is_one_line_exit_2(without, tmp_path, capsys):
    from nucleikit.cli.main import main

    without("pyarrow")
    assert main(["detect", str(tmp_path), "-o", str(tmp_path / "out"), "--formats", "parquet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['nucleikit: error: --formats parquet: pyarrow is not installed; pip install "nucleikit[parquet]"']


def test_cli_experiment_without_matplotlib_stops_before_any_work(without, tmp_path, capsys):
    from nucleikit.cli.main import main

    without("matplotlib")
    config = tmp_path / "no_such_config.json"  # never read: the check comes first
    assert main(["experiment", "lambda", "--config", str(config), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['nucleikit: error: nucleikit experiment reports (PNG figures): matplotlib is not installed; '
                   'pip install "nucleikit[plots]"']


def test_cli_maps_an_optional_module_missing_deep_in_a_command_to_its_extra(monkeypatch, capsys):
    from nucleikit.cli import main as cli_main
    from nucleikit.cli import models

    def run(args):
        raise ModuleNotFoundError("No module named 'pandas'", name="pandas")

    monkeypatch.setattr(models, "run", run)
    assert cli_main.main(["models"]) == 2
    assert capsys.readouterr().err.strip() == (
        'nucleikit: error: nucleikit models: pandas is not installed; pip install "nucleikit[pandas]"')


def test_to_dataframe_without_pandas(without):
    from nucleikit.frames import to_dataframe
    from nucleikit.infer.predict import Detections

    without("pandas")
    with pytest.raises(MissingExtraError, match=r'DataFrames: pandas is not installed; pip install "nucleikit\[pandas\]"'):
        to_dataframe(Detections(np.zeros((0, 2)), np.zeros(0, np.float32), 0.0))


def test_readme_no_deps_install_lists_every_dependency_but_torch():
    # "Into an environment that already has a torch": the second pip install must stay in step
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    readme = (root / "README.md").read_text()
    block = readme.split("**Into an environment that already has a torch**", 1)[1].split("```", 2)[1]
    listed = re.findall(r'"([^"]+)"', block)
    assert listed == [d for d in deps if not d.startswith("torch")]
