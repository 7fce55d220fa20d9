"""Bad configurations fail with a clear ConfigError before any training starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nucleikit.errors import ConfigError, InputError
from nucleikit.experiments.config import load_config, prepare
from nucleikit.experiments.runner import run_experiment


def _fails(path, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        run_experiment(load_config(path), tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out" / "runs").exists()  # nothing was trained


def test_unknown_experiment(make_config, tmp_path):
    path = make_config("nonsense", {})
    with pytest.raises(ConfigError, match="unknown experiment 'nonsense'.*cross_dataset"):
        load_config(path)


def test_command_line_name_must_match_the_file(make_config):
    path = make_config("lambda", {"datasets": ["a"]})
    with pytest.raises(ConfigError, match="is a 'lambda' configuration, not 'finetune'"):
        load_config(path, experiment="finetune")


def test_study_names_a_missing_dataset(make_config):
    path = make_config("cross_dataset", {"datasets": ["a", "zebra"]})
    with pytest.raises(ConfigError, match="dataset 'zebra', which \"datasets\" does not define"):
        load_config(path)


def test_unknown_study_option_and_bad_type(make_config):
    with pytest.raises(ConfigError, match="unknown option.*gama"):
        load_config(make_config("auxiliary", {"target": "a", "auxiliary": ["b"], "gama": [1]}))
    with pytest.raises(ConfigError, match="lams must be a list"):
        load_config(make_config("lambda", {"datasets": ["a"], "lams": 5}))
    with pytest.raises(ConfigError, match="missing option.*source"):
        load_config(make_config("finetune", {"target": "a"}))


def test_train_section_may_not_set_the_budget(make_config):
    with pytest.raises(ConfigError, match="may not set steps"):
        load_config(make_config("lambda", {"datasets": ["a"]}, train={"steps": 5}))
    with pytest.raises(ConfigError, match="unknown training option"):
        load_config(make_config("lambda", {"datasets": ["a"]}, train={"stepz": 5}))
    with pytest.raises(ConfigError, match="unknown model 'micronett'"):
        load_config(make_config("lambda", {"datasets": ["a"]}, train={"model": "micronett"}))
    with pytest.raises(ConfigError, match="segmentation model; the studies need a detector"):
        load_config(make_config("lambda", {"datasets": ["a"]}, train={"model": "unet", "model_kwargs": {}}))


def test_dataset_without_points(make_config, datasets, tmp_path):
    for sub in ("train", "validation", "test"):
        for csv in (tmp_path / "data" / "a" / sub).glob("*.csv"):
            csv.write_text("x,y\n")
    _fails(make_config("lambda", {"datasets": ["a"]}), "dataset 'a' has no annotated points", tmp_path)


def test_dataset_missing_a_needed_split(make_config, datasets, tmp_path):
    datasets["a"].pop("test")
    _fails(make_config("cross_dataset", {"datasets": ["a", "b"]}), "dataset 'a' has no test images", tmp_path)


def test_mismatched_resolution(make_config, datasets, tmp_path):
    # one training image records 0.25 um/px (pHYs) while the data set is declared at 0.5
    img = next((tmp_path / "data" / "b" / "train").glob("*.png"))
    px = np.asarray(Image.open(img))
    Image.fromarray(px).save(img, dpi=(25400 / 0.25, 25400 / 0.25))
    _fails(make_config("lambda", {"datasets": ["b"]}), "dataset 'b': mismatched resolution.*0.25", tmp_path)


def test_mixed_resolutions_without_a_declared_one_keep_each_images_own(make_config, datasets, tmp_path):
    datasets["c"].pop("mpp")
    for i, img in enumerate(sorted((tmp_path / "data" / "c").rglob("*.png"))):
        mpp = 0.25 if i == 0 else 0.5
        Image.fromarray(np.asarray(Image.open(img))).save(img, dpi=(25400 / mpp, 25400 / mpp))
    col = prepare(load_config(make_config("lambda", {"datasets": ["c"]})))
    assert sorted(s.mpp for s in col["c"].samples("test") + col["c"].samples("train")) == pytest.approx([0.25, 0.5, 0.5])
    assert col.describe()[0]["mpp"] == "0.25-0.5"


def test_unknown_dataset_kind_and_bad_study_values(make_config, tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"experiment": "lambda", "steps": 2, "datasets": {"x": {"kind": "zip"}},
                                "study": {"datasets": ["x"]}}))
    with pytest.raises(ConfigError, match="unknown kind 'zip'"):
        load_config(path)
    with pytest.raises(ConfigError, match="source and target"):
        load_config(make_config("finetune", {"source": "a", "target": "a"}))
    with pytest.raises(ConfigError, match="not a detector|segmentation"):
        load_config(make_config("baselines", {"datasets": ["a"], "models": ["unet"]}))


def test_no_budget_and_unreadable_files(tmp_path):
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"experiment": "lambda", "datasets": {"a": {"kind": "crchisto"}},
                                "study": {"datasets": ["a"]}}))
    with pytest.raises(ConfigError, match="budget"):
        load_config(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_config(path)
    with pytest.raises(InputError, match="no such file"):
        load_config(tmp_path / "absent.json")


def test_radius_defaults_follow_the_protocol(make_config):
    col = prepare(load_config(make_config("lambda", {"datasets": ["a"]})))
    assert col["a"].radius_um == 4.0 and col.describe()[0]["radius_px_common"] == 8.0
    from nucleikit.experiments.collection import DEFAULT_RADIUS_UM

    assert DEFAULT_RADIUS_UM["crchisto"] == pytest.approx(3.3)


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "experiments").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_example_configurations_parse(path):
    config = load_config(path)
    # bf16 is the config's own choice (fp32 where the CPU has no AMX)
    assert config.mpp == 0.5 and isinstance(config.train.bf16, bool) and config.steps >= 100
    assert config.experiment in path.stem


def test_committed_configurations_share_the_base_training():
    from nucleikit.experiments.cells import scratch_cell

    root = CONFIGS[0].parent
    matrix = load_config(root / "committed_cross_dataset.json")
    ft = load_config(root / "committed_finetune.json")
    assert ft.params.source in matrix.params.datasets
    assert scratch_cell(ft.params.source, ft.train).key() == scratch_cell(ft.params.source, matrix.train).key()
    assert matrix.datasets[ft.params.source] == ft.datasets[ft.params.source]


@pytest.mark.parametrize("train, message", [
    ({"lr": "fast"}, r"train: lr must be a number, got 'fast'"),
    ({"xi_grid": []}, r"train: xi_grid must be a non-empty list"),
    ({"xi_grid": "0.5"}, r"train: xi_grid must be a list, got '0.5'"),
    ({"xi_grid": [0.5, 1.5]}, r"train: xi_grid must be a non-empty list of fractions"),
    ({"min_distance_grid": [0]}, r"train: min_distance_grid must be a non-empty list of whole numbers"),
    ({"batch_size": 0}, r"train: batch_size must be at least 1, got 0"),
    ({"crop": -8}, r"train: crop must be at least 1"),
    ({"lr": -0.1}, r"train: lr must be a positive number"),
    ({"lam": -1}, r"train: lam must be 0 or more"),
    ({"bf16": "yes"}, r"train: bf16 must be true or false"),
])
def test_bad_training_values_are_refused_when_parsing(make_config, train, message):
    # each of these used to pass parsing and fail mid-study (or, batch_size 0, run a whole study)
    with pytest.raises(ConfigError, match=message):
        load_config(make_config("lambda", {"datasets": ["a"]}, train=train))


@pytest.mark.parametrize("key, value, message", [
    ("seed", None, "seed must be an integer, got null"),
    ("seed", "0", "seed must be an integer"),
    ("steps", 0, "steps must be at least 1"),
])
def test_top_level_numbers_name_their_own_field(tmp_path, make_config, key, value, message):
    path = make_config("lambda", {"datasets": ["a"]})
    doc = json.loads(path.read_text())
    doc[key] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_unknown_study_is_named_even_when_the_command_line_differs(make_config):
    path = make_config("nonsense", {})
    with pytest.raises(ConfigError, match="unknown experiment 'nonsense'"):
        load_config(path, experiment="lambda")
