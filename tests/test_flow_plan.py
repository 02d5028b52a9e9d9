"""The flow's plan: DAG order and selection, on the project's own dvc.yaml."""

import pytest

from flows.experiment import select_stages, stage_order

from .conftest import ROOT


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
    selected = select_stages(ROOT, order, datasets=None, variants=["cnn"])
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
    assert select_stages(ROOT, order, None, None) == order
    with pytest.raises(ValueError, match=r"datasets: unknown \['svhn'\]; allowed: \[.*'mnist'\]"):
        select_stages(ROOT, order, datasets=["svhn"], variants=None)
    with pytest.raises(ValueError, match=r"variants: unknown \['vgg'\]; allowed: .*'cnn'"):
        select_stages(ROOT, order, datasets=None, variants=["vgg"])


def test_selecting_a_transfer_run_brings_its_whole_chain() -> None:
    order, _ = stage_order(ROOT)
    selected = select_stages(ROOT, order, datasets=None, variants=["vgg16_finetune"])
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
    cifar = select_stages(ROOT, order, datasets=["cifar10"], variants=None)
    assert {s.partition("@")[2] for s in cifar if s != "compare"} == {
        "cifar10",
        "cifar10-cnn",
        "cifar10-deep_cnn",
        "cifar10-deep_cnn-aug",
        "cifar10-deep_cnn_bn",
    }
