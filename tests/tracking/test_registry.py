"""The registry gate and `convbench predict`, against a real (temporary) MLflow store."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from convbench.core.atomic import write_json
from convbench.reporting.compare import gather
from convbench.settings import Settings
from convbench.stages.evaluate import evaluate_run
from convbench.stages.train import train_run
from convbench.tracking.model_registry import decide, model_name
from tests.conftest import ROOT, prepared_tiny_digits, tiny_digits

FOREST, LENET = "mnist-random_forest", "mnist-lenet5"


@pytest.fixture
def trained(ci_settings: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    prepared_tiny_digits(tmp_path / "prepared" / "mnist", train=200, validation=40, test=60)
    runs = tmp_path / "runs"
    for key in (FOREST, LENET):
        model = tmp_path / "models" / key
        train_run(ci_settings, key, tmp_path / "prepared" / "mnist", model, runs / key / "train", 0)
        evaluate_run(
            ci_settings,
            key,
            tmp_path / "prepared" / "mnist",
            model,
            runs / key / "train",
            runs / key / "eval",
        )
    return ci_settings, tmp_path


def _accuracy(root: Path, key: str) -> float:
    return json.loads((root / "runs" / key / "eval" / "metrics.json").read_text())["test_accuracy"]


def _set_accuracy(root: Path, key: str, accuracy: float) -> None:
    path = root / "runs" / key / "eval" / "metrics.json"
    write_json(path, {**json.loads(path.read_text()), "test_accuracy": accuracy})


def _decide(settings: Settings, root: Path, only: str) -> dict:
    """The registry's decision when ``only`` is the one current run."""
    frame = gather(settings, root / "runs")
    frame.loc[frame["run"] != only, "status"] = "stale"
    decision = decide(settings, "mnist", frame, root / "prepared" / "mnist")
    assert decision.run == only
    return decision.__dict__


def _champion_run(settings: Settings) -> str:
    client = MlflowClient(settings.env.tracking_uri)
    return client.get_model_version_by_alias(model_name("mnist"), "champion").tags["convbench.run"]


def test_champion_moves_only_when_beaten_on_the_same_test_set(
    trained: tuple[Settings, Path],
) -> None:
    settings, root = trained
    forest = _accuracy(root, FOREST)
    assert forest > 0.9  # the bar's position is the label: the forest finds it

    first = _decide(settings, root, only=FOREST)
    assert first["promoted"] and first["reason"] == "first champion"
    assert _champion_run(settings) == FOREST
    again = _decide(settings, root, only=FOREST)
    assert not again["promoted"] and again["reason"] == "already champion"
    assert again["version"] == first["version"]  # the same run is registered once

    # The challenger's claim is checked against the champion scored anew on this test set.
    _set_accuracy(root, LENET, forest - 0.01)
    kept = _decide(settings, root, only=LENET)
    assert not kept["promoted"] and "does not beat champion" in kept["reason"]
    assert kept["champion_accuracy"] == pytest.approx(forest)
    assert _champion_run(settings) == FOREST

    registry = settings.params.registry.model_copy(update={"min_test_accuracy": {"mnist": 0.999}})
    gated = settings.params.model_copy(update={"registry": registry})
    _set_accuracy(root, LENET, 0.995)
    below = _decide(settings.model_copy(update={"params": gated}), root, only=LENET)
    assert not below["promoted"] and "below the minimum 0.999" in below["reason"]

    _set_accuracy(root, LENET, min(forest + 0.01, 1.0) if forest < 1 else 1.0)
    if forest < 1:
        beaten = _decide(settings, root, only=LENET)
        assert beaten["promoted"] and beaten["champion_before"] == first["version"]
        assert _champion_run(settings) == LENET


def test_predict_uses_the_champion_and_refuses_non_images(
    trained: tuple[Settings, Path], tmp_path: Path
) -> None:
    from convbench.cli import app

    settings, root = trained
    _decide(settings, root, only=FOREST)
    images, labels = tiny_digits(3, seed=5)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(image).resize((56, 56)).save(path)  # any size: resized to 28x28
        paths.append((path, label))
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    env = {"MLFLOW_TRACKING_URI": settings.env.tracking_uri, "COLUMNS": "200"}
    args = ["predict", "--dataset", "mnist", "--params", str(params)]
    result = CliRunner().invoke(app, [*args, *(str(p) for p, _ in paths)], env=env)
    assert result.exit_code == 0, result.output
    assert "convbench-mnist v1 (mnist-random_forest)" in result.output
    for path, label in paths:
        line = next(line for line in result.output.splitlines() if path.name in line)
        assert f": {label}. With a score of " in line

    text = tmp_path / "notes.jpg"
    text.write_text("not a picture at all\n")
    result = CliRunner().invoke(app, [*args, str(paths[0][0]), str(text)], env=env)
    assert result.exit_code == 2
    assert "notes.jpg" in result.output and "not an image" in result.output

    other = ["predict", "--dataset", "cats_and_dogs", "--params", str(params), str(paths[0][0])]
    result = CliRunner().invoke(app, other, env=env)
    assert result.exit_code == 2 and "has no 'champion' model yet" in result.output


def test_a_best_run_from_another_store_is_passed_over(trained: tuple[Settings, Path]) -> None:
    """Results committed from another machine name MLflow runs this store never saw: the
    best run that is here is registered, and the decision says what was passed over."""
    settings, root = trained
    frame = gather(settings, root / "runs")
    frame.loc[frame["run"] == LENET, ["test_accuracy", "mlflow_run_id"]] = [1.0, "0" * 32]
    decision = decide(settings, "mnist", frame, root / "prepared" / "mnist")
    assert decision.run == FOREST and decision.version is not None
    assert "better but not in this tracking store: mnist-lenet5" in decision.reason

    frame.loc[frame["run"] == FOREST, "mlflow_run_id"] = "1" * 32
    nothing = decide(settings, "mnist", frame, root / "prepared" / "mnist")
    assert nothing.run is None and not nothing.promoted
    assert nothing.reason.startswith("no current run in this tracking store")

    frame["status"] = "not run: mnist data unavailable"  # the flow's case: no row of it is ok
    none = decide(settings, "mnist", frame, root / "prepared" / "mnist")
    assert none.run is None and none.reason == "no current run"
