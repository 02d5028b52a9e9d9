"""The flows' plan, without Prefect: DAG order, selection and what an unavailable
download holds back, on the project's own dvc.yaml."""

import json
from pathlib import Path

import pytest

from convbench.ops import planning
from convbench.ops.planning import (
    REPORT_STAGE,
    UNAVAILABLE,
    download_dependents,
    select_stages,
    skip_reason,
    stage_order,
)
from convbench.settings import load_settings
from tests.conftest import ROOT

SETTINGS = load_settings(ROOT / "params.yaml")


def test_stage_order_puts_dependencies_first() -> None:
    order, graph = stage_order(ROOT)
    position = {name: i for i, name in enumerate(order)}
    for stage, dependency in graph.edges:
        assert position[dependency] < position[stage], (stage, dependency)
    assert (
        order.index("download@mnist") < order.index("validate@mnist") < order.index("prepare@mnist")
    )
    # The comparison, then each dataset's registry decision.
    assert order.index("compare") < min(i for i, n in enumerate(order) if n.startswith("register@"))
    # Each run's evaluation follows its training directly.
    assert position["evaluate@mnist-cnn"] == position["train@mnist-cnn"] + 1


def test_selection_by_variant_keeps_the_data_stages_and_compare() -> None:
    order, _ = stage_order(ROOT)
    selected = select_stages(SETTINGS, order, datasets=None, variants=["cnn"])
    assert selected == [
        "download@mnist",
        "validate@mnist",
        "prepare@mnist",
        "train@mnist-cnn",
        "evaluate@mnist-cnn",
        "compare",
        "register@mnist",
    ]


def test_selection_of_everything_and_of_nothing() -> None:
    order, _ = stage_order(ROOT)
    # Everything but the weights of bases no transfer entry uses: nothing would read them.
    used = {f"download_weights@{t.base}" for t in SETTINGS.params.transfer.values()}
    unused = {f"download_weights@{b}" for b in SETTINGS.params.pretrained} - used
    assert unused and "download_weights@vgg16_imagenet" in used
    assert select_stages(SETTINGS, order, None, None) == [s for s in order if s not in unused]
    with pytest.raises(ValueError, match=r"datasets: unknown \['svhn'\]; allowed: \[.*'mnist'\]"):
        select_stages(SETTINGS, order, datasets=["svhn"], variants=None)
    with pytest.raises(ValueError, match=r"variants: unknown \['vgg'\]; allowed: .*'cnn'"):
        select_stages(SETTINGS, order, datasets=None, variants=["vgg"])


def test_selecting_a_transfer_run_brings_its_whole_chain() -> None:
    order, _ = stage_order(ROOT)
    selected = select_stages(SETTINGS, order, datasets=None, variants=["vgg16_finetune"])
    assert selected == [name for name in order if name in set(selected)]  # DAG order kept
    assert set(selected) == {
        "download@cats_and_dogs",
        "download_weights@vgg16_imagenet",
        "validate@cats_and_dogs",
        "prepare@cats_and_dogs",
        "extract_features@cats_and_dogs-vgg16",
        "train_head@cats_and_dogs-vgg16",
        "evaluate_head@cats_and_dogs-vgg16",
        "finetune@cats_and_dogs-vgg16",
        "evaluate_finetune@cats_and_dogs-vgg16",
        "compare",
        "register@cats_and_dogs",
    }
    # A dataset's runs only: no other dataset's data, no weights.
    cifar = select_stages(SETTINGS, order, datasets=["cifar10"], variants=None)
    assert {s.partition("@")[2] for s in cifar if s != "compare"} == {
        "cifar10",
        "cifar10-cnn",
        "cifar10-deep_cnn",
        "cifar10-deep_cnn-aug",
        "cifar10-deep_cnn_bn",
    }


def test_a_stage_that_needs_an_unavailable_download_is_skipped_the_report_is_not() -> None:
    order, graph = stage_order(ROOT)
    selected = select_stages(SETTINGS, order, datasets=None, variants=["vgg16_finetune", "cnn"])
    dependents = download_dependents(selected, graph)
    weights = "download_weights@vgg16_imagenet"
    outcome: dict[str, str] = {}
    for stage in selected:  # as the flows walk the plan: each download's outcome first
        reason = skip_reason(stage, dependents, outcome)
        if reason:
            outcome[stage] = reason
        elif stage == weights:
            outcome[stage] = f"{UNAVAILABLE}: vgg16 weights not downloaded; set CONVBENCH_MIRROR"
        else:
            outcome[stage] = "ran"
    skipped = {stage for stage, result in outcome.items() if result.startswith("skipped")}
    assert skipped == {
        "extract_features@cats_and_dogs-vgg16",
        "train_head@cats_and_dogs-vgg16",
        "evaluate_head@cats_and_dogs-vgg16",
        "finetune@cats_and_dogs-vgg16",
        "evaluate_finetune@cats_and_dogs-vgg16",
    }
    assert outcome["finetune@cats_and_dogs-vgg16"] == f"skipped: {weights} is unavailable"
    # The report runs whatever is missing (it says what and how to provide it); the data
    # of the same dataset, the other runs and the registry decisions run too.
    assert outcome[REPORT_STAGE] == "ran"
    for stage in ("prepare@cats_and_dogs", "train@mnist-cnn", "register@cats_and_dogs"):
        assert outcome[stage] == "ran", stage
    assert skip_reason(REPORT_STAGE, dependents, {weights: UNAVAILABLE}) is None


def test_nothing_is_skipped_while_every_download_is_here() -> None:
    order, graph = stage_order(ROOT)
    dependents = download_dependents(order, graph)
    assert set(dependents) == {s for s in order if s.startswith(("download@", "download_weights@"))}
    here = dict.fromkeys(dependents, "up to date")
    assert all(skip_reason(stage, dependents, here) is None for stage in order)
    # A dataset's download holds back its own dataset's stages only.
    missing = {**here, "download@cifar10": f"{UNAVAILABLE}: not in the mirror"}
    blocked = {s for s in order if skip_reason(s, dependents, missing)}
    assert blocked and all(s.partition("@")[2].startswith("cifar10") for s in blocked)
    assert "register@cifar10" in blocked and "download@cifar10" not in blocked


def test_training_stages_name_the_run_they_train() -> None:
    assert planning.trained_run_key("train@mnist-cnn") == "mnist-cnn"
    assert planning.trained_run_key("train_head@cats_and_dogs-vgg16") == (
        "cats_and_dogs-vgg16_features"
    )
    assert planning.trained_run_key("finetune@cats_and_dogs-vgg16") == (
        "cats_and_dogs-vgg16_finetune"
    )
    assert planning.trained_run_key("evaluate@mnist-cnn") is None
    assert planning.trained_run_key("compare") is None


def test_a_training_restored_from_the_run_cache_ends_what_killed_trainings_left(
    tmp_path: Path,
) -> None:
    """`dvc repro` took train@mnist-mlp from its run cache: the stage never ran, so the
    flow ends the MLflow run a killed training under other settings left RUNNING."""
    from mlflow.tracking import MlflowClient

    from convbench.training.checkpoints import CHECKPOINTS
    from flows.stage_task import end_abandoned

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("convbench/mnist")).info.run_id
    folder = tmp_path / CHECKPOINTS / f"mnist-mlp-{'d' * 12}"
    folder.mkdir(parents=True)
    progress = {"fingerprint": "d" * 64, "epochs_done": 1, "mlflow_run_id": run_id}
    (folder / "progress.json").write_text(json.dumps(progress))

    end_abandoned(tmp_path, "evaluate@mnist-mlp", "is up to date", {"MLFLOW_TRACKING_URI": uri})
    assert folder.exists()  # not a training stage: nothing to do
    end_abandoned(
        tmp_path,
        "train@mnist-mlp",
        "was restored from DVC's run cache",
        {"MLFLOW_TRACKING_URI": uri},
    )
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert "train@mnist-mlp was restored from DVC's run cache" in run.data.tags["convbench.failure"]
    assert not folder.exists()
