from pathlib import Path

import pytest
import yaml

from convbench.models.variants import VARIANTS
from convbench.settings import SettingsError, find_project_root, load_params, parse_params
from convbench.stages.entry import known_names
from tests.conftest import ROOT


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.profile in params.profiles
    assert {run.variant for run in params.runs.values()} >= {
        "mlp",
        "cnn",
        "lenet5",
        "random_forest",
    }


def test_unknown_key_is_named() -> None:
    raw = raw_params()
    raw["runs"]["mnist-cnn"]["epoch"] = 3
    with pytest.raises(SettingsError, match=r"runs\.mnist-cnn\.epoch: unknown key"):
        parse_params(raw)


def test_wrong_type_is_named() -> None:
    raw = raw_params()
    raw["runs"]["mnist-cnn"]["batch_size"] = "big"
    with pytest.raises(SettingsError, match=r"runs\.mnist-cnn\.batch_size"):
        parse_params(raw)


def test_unknown_variant_lists_allowed() -> None:
    raw = raw_params()
    raw["runs"]["mnist-cnn"]["variant"] = "resnet"
    parse_params(raw)  # the schema alone does not know the variants: the catalogue does
    with pytest.raises(SettingsError) as error:
        parse_params(raw, known=known_names(VARIANTS))
    assert "runs.mnist-cnn.variant" in str(error.value)
    assert "'cnn'" in str(error.value) and "'lenet5'" in str(error.value)


def test_unknown_dataset_lists_allowed() -> None:
    raw = raw_params()
    raw["runs"]["mnist-cnn"]["dataset"] = "fashion"
    with pytest.raises(SettingsError, match=r"runs\.mnist-cnn\.dataset.*'fashion'.*'mnist'\]"):
        parse_params(raw)


def test_unknown_profile_lists_allowed() -> None:
    raw = raw_params()
    raw["profile"] = "huge"
    with pytest.raises(SettingsError, match=r"profile: got 'huge'.*'quick'.*'full'.*'ci'"):
        parse_params(raw)


def test_a_source_is_a_declaration_not_a_name() -> None:
    raw = raw_params()
    raw["datasets"]["mnist"]["source"] = "emnist"
    with pytest.raises(SettingsError, match=r"datasets\.mnist\.source: Input should be a valid"):
        parse_params(raw, known=known_names())


def test_forest_keys_are_checked_against_the_forest_schema() -> None:
    raw = raw_params()
    raw["runs"]["mnist-random_forest"]["epochs"] = 3
    with pytest.raises(SettingsError, match=r"runs\.mnist-random_forest\.epochs: unknown key"):
        parse_params(raw)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="file not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [quick\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_params(bad)


def test_project_root_from_a_dvc_temp_workspace(tmp_path: Path) -> None:
    workspace = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    (workspace / "params.yaml").write_text("")
    assert find_project_root(workspace) == tmp_path / "proj"
    (tmp_path / "proj" / "params.yaml").write_text("")
    assert find_project_root(tmp_path / "proj") == tmp_path / "proj"


def test_check_command_lists_every_run_with_its_budget(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from convbench.cli import app

    raw = raw_params()
    raw["profile"] = "ci"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["check", "--params", str(params)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "cats_and_dogs-vgg16_finetune" in rows
    assert "64x64" in rows["cats_and_dogs-small_cnn"]  # the ci profile's image cap
    assert "1 epochs" in rows["cats_and_dogs-vgg16_features"]
    assert "10 trees" in rows["mnist-random_forest"]


def test_run_fingerprint_follows_params_not_schema_defaults() -> None:
    from convbench.settings import Environment, Settings

    def fingerprint_of(raw: dict) -> str:
        env = Environment(project_root=ROOT, tracking_uri="sqlite:///unused.db")
        settings = Settings(params=parse_params(raw), env=env)
        return settings.run_spec("cats_and_dogs-small_cnn").fingerprint

    base = fingerprint_of(raw_params())
    raw = raw_params()
    raw["runs"]["cats_and_dogs-small_cnn"]["ema_momentum"] = None  # the default, spelt out
    assert fingerprint_of(raw) == base
    raw["runs"]["cats_and_dogs-small_cnn"]["ema_momentum"] = 0.99
    assert fingerprint_of(raw) != base
    raw = raw_params()
    raw["datasets"]["cats_and_dogs"]["image"]["height"] = 128
    assert fingerprint_of(raw) != base
    # Where it runs does not change a result; the numerics do.
    raw = raw_params()
    raw["runtime"] |= {"device": "cpu", "memory_growth": False}
    assert fingerprint_of(raw) == base
    raw["runtime"]["mixed_precision"] = "bf16"
    assert fingerprint_of(raw) != base
    raw = raw_params()
    raw["runtime"]["deterministic"] = False  # other kernels: other numbers on CPU too
    assert fingerprint_of(raw) != base


def test_runtime_and_registry_sections_are_checked() -> None:
    raw = raw_params()
    raw["runtime"]["mixed_precision"] = "fp8"
    with pytest.raises(SettingsError, match=r"runtime.mixed_precision: got 'fp8'"):
        parse_params(raw)
    raw = raw_params()
    raw["runtime"]["xla"] = True  # Keras would quietly drop it under op determinism
    with pytest.raises(SettingsError, match=r"runtime: xla: true needs deterministic: false"):
        parse_params(raw)
    raw = raw_params()
    raw["registry"]["min_test_accuracy"]["svhn"] = 0.9
    with pytest.raises(SettingsError, match=r"registry.min_test_accuracy.svhn: unknown dataset"):
        parse_params(raw)
    raw = raw_params()
    raw["registry"]["min_test_accuracy"]["mnist"] = 97
    with pytest.raises(SettingsError, match=r"mnist: 97.0 not in \[0, 1\]"):
        parse_params(raw)


def test_a_declaration_that_cannot_work_is_named() -> None:
    cases = {
        # no pin at all
        ("datasets", "mnist", "source", "files", 0, "sha256"): (
            None,
            r"datasets\.mnist\.source\.files\.0: .*no pin",
        ),
        ("datasets", "mnist", "format"): ("tiff", r"datasets\.mnist\.format: got 'tiff'"),
        ("datasets", "mnist", "classes"): ([0], r"datasets\.mnist\.classes: .*at least 2"),
        ("datasets", "mnist", "image", "height"): (0, r"datasets\.mnist\.image\.height"),
        ("datasets", "mnist", "source", "files", 1, "holds"): (None, r"idx file needs split"),
    }
    for path, (value, message) in cases.items():
        raw = raw_params()
        node = raw
        for part in path[:-1]:
            node = node[part]
        if path[-1] == "sha256":
            node.pop("md5")
        node[path[-1]] = value
        with pytest.raises(SettingsError, match=message):
            parse_params(raw)


def test_a_variant_that_cannot_take_the_images_is_refused_with_the_reason() -> None:
    raw = raw_params()
    raw["runs"]["cats_and_dogs-lenet5"] = {
        "dataset": "cats_and_dogs",
        "variant": "lenet5",
        "epochs": 1,
        "batch_size": 8,
    }
    parse_params(raw)  # the schema alone does not know the variants
    with pytest.raises(
        SettingsError,
        match=r"runs\.cats_and_dogs-lenet5: variant 'lenet5' cannot take the cats_and_dogs "
        r"images \(150x150x3 under profile quick\): it takes images of at most 32x32",
    ):
        parse_params(raw, known=known_names(VARIANTS))
    raw["profile"] = "ci"  # 64x64: still too large
    with pytest.raises(SettingsError, match=r"64x64x3 under profile ci"):
        parse_params(raw, known=known_names(VARIANTS))
    del raw["runs"]["cats_and_dogs-lenet5"]
    raw["datasets"]["mnist"]["image"] = {"height": 16, "width": 16, "channels": 1}
    raw["runs"]["mnist-small_cnn"] = {
        "dataset": "mnist",
        "variant": "small_cnn",
        "epochs": 1,
        "batch_size": 8,
    }
    with pytest.raises(SettingsError, match=r"at least 22x22"):
        parse_params(raw, known=known_names(VARIANTS))
