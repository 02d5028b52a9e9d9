"""Transfer learning wired end to end on tiny inputs, with an untrained VGG16-shaped base.

The ImageNet weights cannot be had on these machines; these tests check the wiring
(frozen layers, features stored once and reused, head weights carried into fine-tuning,
block 5 trainable) and that a missing or wrong weights file is never used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from dvc.repo import Repo

from convbench.data.download import ChecksumMismatchError, WeightsUnavailableError
from convbench.data.prepare import load_prepared
from convbench.models.bases import build_base, finetune_model
from convbench.models.saving import load_model
from convbench.reporting.compare import InputFolders, _notes, gather, to_markdown
from convbench.settings import Settings, SettingsError, parse_params
from convbench.stages.evaluate import evaluate_run
from convbench.stages.extract_features import extract, load_base
from convbench.stages.finetune import finetune
from convbench.stages.train_head import train_head
from convbench.training.transfer import pretrained_base
from tests.conftest import ROOT, prepared_tiny_cats, tiny_cats_settings

KEY = "cats_and_dogs-vgg16"
FEATURES_RUN, FINETUNE_RUN = f"{KEY}_features", f"{KEY}_finetune"


@pytest.fixture
def tiny(ci_settings: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    settings = tiny_cats_settings(ci_settings)
    return settings, prepared_tiny_cats(settings, tmp_path)


def with_head_epochs(settings: Settings, epochs: int) -> Settings:
    item = settings.params.transfer[KEY]
    head = item.head.model_copy(update={"epochs": epochs})
    transfer = {**settings.params.transfer, KEY: item.model_copy(update={"head": head})}
    params = settings.params.model_copy(update={"transfer": transfer})
    return settings.model_copy(update={"params": params})


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def test_features_once_head_then_finetune(tiny: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, prepared = tiny
    base = build_base("VGG16", (32, 32, 3), weights=None)
    features_dir = tmp_path / "features"
    info = extract(settings, KEY, prepared, tmp_path / "weights", features_dir, base=base)
    assert not base.trainable and base.count_params() == 14_714_688
    x, _ = load_prepared(features_dir, "train")
    assert x.shape == (16, 1, 1, 512) and x.dtype == np.float32  # block5_pool at 32x32
    assert info["feature_extraction"]["images"] == 16 + 8 + 8
    assert info["feature_extraction"]["seconds"] > 0
    stored = {p.name: p.read_bytes() for p in features_dir.iterdir()}

    # The head trains on the stored features: no base, no images, no weights needed.
    runs = tmp_path / "runs"
    head = train_head(
        settings, KEY, features_dir, tmp_path / "head", runs / FEATURES_RUN / "train", 0
    )
    assert head["parameters"] == 512 * 64 + 64 + 65  # (1, 1, 512) features at 32x32
    assert head["feature_extraction_seconds"] == info["feature_extraction"]["seconds"]
    longer = with_head_epochs(settings, 3)
    again = train_head(longer, KEY, features_dir, tmp_path / "head2", tmp_path / "h2", 0)
    assert again["feature_extraction_seconds"] == head["feature_extraction_seconds"]
    assert {p.name: p.read_bytes() for p in features_dir.iterdir()} == stored  # reused as is

    # Fine-tuning starts from the trained head, with only block 5 (and the head) trainable.
    trained_head = load_model(tmp_path / "head")
    fresh_base = build_base("VGG16", (32, 32, 3), weights=None)
    model = finetune_model(fresh_base, trained_head, "block5_conv1", "check")
    assert model.count_params() == 14_714_688 + head["parameters"]
    head_layer = model.layers[-1]
    for carried, trained in zip(weights_of(head_layer), weights_of(trained_head), strict=True):
        np.testing.assert_array_equal(carried, trained)
    trainable = {layer.name for layer in fresh_base.layers if layer.trainable}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"}
    assert not fresh_base.get_layer("block4_conv3").trainable

    base = build_base("VGG16", (32, 32, 3), weights=None)
    frozen_before = np.array(base.get_layer("block1_conv1").kernel)
    tuned_before = np.array(base.get_layer("block5_conv3").kernel)
    tuned = finetune(
        settings, KEY, prepared, tmp_path / "weights", tmp_path / "head", tmp_path / "tuned",
        runs / FINETUNE_RUN / "train", base=base, verbose=0,
    )  # fmt: skip
    assert tuned["parameters"] == 14_714_688 + head["parameters"]
    block5 = 3 * (3 * 3 * 512 * 512 + 512)
    assert tuned["trainable_parameters"] == block5 + head["parameters"]
    np.testing.assert_array_equal(np.array(base.get_layer("block1_conv1").kernel), frozen_before)
    assert not np.array_equal(np.array(base.get_layer("block5_conv3").kernel), tuned_before)

    # Both are evaluated like any run: the head on the test features, the whole on images.
    for run, inputs, model_dir in (
        (FEATURES_RUN, features_dir, tmp_path / "head"),
        (FINETUNE_RUN, prepared, tmp_path / "tuned"),
    ):
        metrics = evaluate_run(
            settings, run, inputs, model_dir, runs / run / "train", runs / run / "eval"
        )
        assert metrics["test_images"] == 8 and 0 <= metrics["test_accuracy"] <= 1
    rows = gather(settings, runs).set_index("run")
    assert rows.loc[FEATURES_RUN, "status"] == rows.loc[FINETUNE_RUN, "status"] == "ok"
    assert rows.loc[FEATURES_RUN, "feature_extraction_seconds"] > 0


def test_head_training_never_touches_the_base_or_the_images() -> None:
    """In the DAG, retraining the head depends on the stored features only."""
    with Repo(str(ROOT)) as repo:
        stages = {stage.addressing: stage for stage in repo.index.stages}

    def data_deps(name: str) -> set[str]:
        return {
            Path(dep.def_path).as_posix()
            for dep in stages[name].deps
            if Path(dep.def_path).as_posix().startswith(("data/", "models/"))
        }

    assert data_deps(f"train_head@{KEY}") == {f"data/features/{KEY}"}
    assert data_deps(f"extract_features@{KEY}") == {
        "data/prepared/cats_and_dogs",
        "data/weights/vgg16_imagenet",
    }
    assert f"models/{FEATURES_RUN}" in data_deps(f"finetune@{KEY}")


def test_missing_weights_are_reported_never_replaced(ci_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as missing:
        load_base(ci_settings, KEY, tmp_path / "weights")
    message = str(missing.value)
    assert message.startswith("ImageNet weights unavailable")
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "CONVBENCH_MIRROR" in message

    # Random weights in the right file name are refused by the pinned md5.
    (tmp_path / "weights").mkdir()
    fake = tmp_path / "weights" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    fake.write_bytes(b"not the ImageNet weights")
    pinned = r"md5 \w+, but 6d6bbae143d832006294945121d1f1fc is pinned"
    with pytest.raises(ChecksumMismatchError, match=pinned):
        load_base(ci_settings, KEY, tmp_path / "weights")

    rows = gather(ci_settings, tmp_path / "runs", InputFolders(tmp_path / "raw", tmp_path / "w"))
    rows = rows.set_index("run")
    for run in (FEATURES_RUN, FINETUNE_RUN):
        # The dataset is missing here too; with it present the weights are named instead.
        assert rows.loc[run, "status"] == "not run: cats_and_dogs data unavailable"
    (tmp_path / "raw" / "cats_and_dogs").mkdir(parents=True)
    (tmp_path / "raw" / "cats_and_dogs" / "cats_and_dogs_filtered.zip").write_bytes(b"")
    rows = gather(ci_settings, tmp_path / "runs", InputFolders(tmp_path / "raw", tmp_path / "w"))
    rows = rows.set_index("run")
    assert rows.loc[FINETUNE_RUN, "status"] == "not run: ImageNet weights unavailable"
    assert (
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
        in rows.loc[FINETUNE_RUN, "how_to_provide"]
    )
    # The report gives one note per missing file, naming every run it holds back.
    table = to_markdown(rows.reset_index())
    notes = _notes(ci_settings, rows.reset_index())
    weights_notes = [line for line in notes.splitlines() if "ImageNet weights" in line]
    assert len(weights_notes) == 1
    assert f"`{FEATURES_RUN}`, `{FINETUNE_RUN}` not run" in weights_notes[0]
    assert "nan" not in table


def test_a_base_without_a_pin_fails_validation_naming_it() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["pretrained"]["resnet50_imagenet"]["source"]["files"][0]["md5"]
    with pytest.raises(
        SettingsError, match=r"pretrained\.resnet50_imagenet\.source\.files\.0: .*no pin"
    ):
        parse_params(raw)


@pytest.mark.parametrize(
    "base",
    ["vgg16_imagenet", "vgg19_imagenet", "resnet50_imagenet", "inception_v3_imagenet",
     "efficientnet_b0_imagenet", "densenet121_imagenet"],
)  # fmt: skip
def test_weights_not_matching_their_pin_are_refused_with_both_hashes(
    ci_settings: Settings, base: str, tmp_path: Path
) -> None:
    pretrained = ci_settings.params.pretrained[base]
    [file] = pretrained.source.files
    with pytest.raises(
        WeightsUnavailableError, match=f"ImageNet weights unavailable: .*{file.name}"
    ):
        pretrained_base(pretrained, tmp_path, (75, 75, 3))
    random_weights = f"random weights, not {base}'s".encode()
    (tmp_path / file.name).write_bytes(random_weights)
    with pytest.raises(ChecksumMismatchError) as refused:
        pretrained_base(pretrained, tmp_path, (75, 75, 3))
    assert file.md5 in str(refused.value)
    assert hashlib.md5(random_weights).hexdigest() in str(refused.value)
