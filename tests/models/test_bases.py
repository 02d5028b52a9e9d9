"""Pretrained bases by name: the application list, the preprocessing layer, the layer a
fine-tuning starts at, and each base as Keras itself builds it for its ImageNet weights.

No ImageNet file can be had here: a file of random weights in the published format,
handed to Keras in place of the download, stands in for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from convbench.models.bases import (
    APPLICATIONS,
    build_base,
    min_side,
    preprocessing,
    unfreeze_from,
)
from convbench.models.saving import KERAS_MODEL, load_keras_model
from convbench.models.variants import VARIANTS
from convbench.settings import load_settings
from tests.conftest import ROOT

# The seven bases the course compares, at the smallest images each takes.
SEVEN = {
    "VGG16": 32,
    "VGG19": 32,
    "ResNet50": 32,
    "InceptionV3": 75,
    "MobileNetV2": 32,
    "EfficientNetB0": 32,
    "DenseNet121": 32,
}
PRETRAINED = {
    p.application: p for p in load_settings(ROOT / "params.yaml").params.pretrained.values()
}


def test_the_list_is_keras_applications() -> None:
    assert set(APPLICATIONS) == {name for name in dir(keras.applications) if name[0].isupper()}


def test_every_application_has_its_two_variants() -> None:
    for application in APPLICATIONS:
        features, finetune = (
            VARIANTS[f"{application.lower()}_{k}"] for k in ("features", "finetune")
        )
        assert features.min_side == 1  # it takes stored features, any size
        assert finetune.min_side == min_side(application)
    assert min_side("InceptionV3") == 75 and min_side("ResNet50") == 32


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocessing_is_keras_preprocess_input(mode: str) -> None:
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 5, 4, 3)).astype(np.float32)
    expected = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
    got = keras.ops.convert_to_numpy(preprocessing(mode)(images))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)
    assert preprocessing("none") is None and preprocessing(None) is None


def test_preprocessing_layer_saves_and_loads_in_safe_mode(tmp_path: Path) -> None:
    inputs = keras.Input(shape=(4, 4, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(preprocessing("caffe")(inputs)))
    model.save(tmp_path / KERAS_MODEL)
    loaded = load_keras_model(tmp_path / KERAS_MODEL)
    images = np.full((1, 4, 4, 3), 128.0, dtype=np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images))
    assert loaded.layers[1].get_config()["mode"] == "caffe"


def test_trainable_from_a_layer_or_a_block() -> None:
    base = build_base("VGG16", (32, 32, 3), weights=None)
    assert unfreeze_from(base, "block5_conv1") == unfreeze_from(base, "block5")
    assert unfreeze_from(base, "block5")[:2] == ["block5_conv1", "block5_conv2"]
    assert [layer.trainable for layer in base.layers].count(True) == 4
    with pytest.raises(ValueError, match=r"no layer named 'block9'.*block5_pool"):
        unfreeze_from(base, "block9")


def test_unknown_application() -> None:
    with pytest.raises(ValueError, match=r"unknown application 'vgg16'.*VGG16"):
        build_base("vgg16", (32, 32, 3), weights=None)  # the module, not the model


def legacy_weights_file(model: Any, path: Path) -> Path:
    """The model's weights in the format of Keras' published .h5 files."""
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)
    return path


# DenseNet121's 427 layers take half a minute to write and read.
HEAVY = {"DenseNet121"}


@pytest.mark.parametrize(
    "application",
    [pytest.param(a, marks=[pytest.mark.slow] if a in HEAVY else []) for a in SEVEN],
)
# MobileNetV2 warns that it loads its 224x224 file for other sizes: the same weights.
@pytest.mark.filterwarnings("ignore:`input_shape` is undefined:UserWarning")
def test_a_base_is_the_network_keras_builds_for_its_imagenet_file(
    application: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file params.yaml pins is the one Keras asks for, with Keras' hash; loaded into
    the base built without weights, it gives Keras' own ImageNet network's features."""
    shape = (SEVEN[application], SEVEN[application], 3)
    source = build_base(application, shape, weights=None)
    for layer in source.layers:  # a Normalization (EfficientNet) that does something
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt_mean.assign([0.485, 0.456, 0.406])
            layer.adapt_variance.assign([0.229**2, 0.224**2, 0.225**2])
    weights = legacy_weights_file(source, tmp_path / "published.h5")
    asked: list[dict[str, Any]] = []

    def get_file(fname: str, origin: str, **kwargs: Any) -> str:
        asked.append({"fname": fname, "origin": origin, "file_hash": kwargs.get("file_hash")})
        return str(weights)

    monkeypatch.setattr(file_utils, "get_file", get_file)
    keras_built = getattr(keras.applications, application)(
        include_top=False, weights="imagenet", input_shape=shape
    )
    ours = build_base(application, shape, weights)
    images = np.random.default_rng(1).uniform(-1, 1, size=(2, *shape)).astype(np.float32)
    np.testing.assert_allclose(
        ours.predict_on_batch(images), keras_built.predict_on_batch(images), rtol=1e-4, atol=1e-5
    )

    [request] = asked
    if application not in PRETRAINED:  # MobileNetV2: Keras gives no hash to pin
        assert request["file_hash"] is None
        return
    [file] = PRETRAINED[application].source.files
    assert (file.name, file.urls, file.md5) == (
        request["fname"],
        [request["origin"]],
        request["file_hash"],
    )
