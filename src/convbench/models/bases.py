"""Pretrained convolutional bases by name: any ``keras.applications`` model as the frozen
feature extractor, the decks' head on its stored features, and the two put together for
fine-tuning.

A base is configuration (params.yaml ``pretrained``): the application, its weights file,
its input preprocessing and the layer fine-tuning starts at. Bases are built here without
weights; ``convbench.training.transfer`` loads the verified ImageNet file into them, so
nothing here can pass random weights off as pretrained. Every application gets the
variants ``<application>_features`` and ``<application>_finetune`` (lower case), the
names its runs carry. Keras is imported inside the functions: the catalogue costs no
TensorFlow import.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from convbench.models.catalog import register
from convbench.models.networks import _head, _sequential

# Every base in keras.applications (Keras 3); tests/models/test_bases.py checks the list
# against the installed Keras.
APPLICATIONS = (
    *("ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtSmall", "ConvNeXtTiny", "ConvNeXtXLarge"),
    *("DenseNet121", "DenseNet169", "DenseNet201"),
    *(f"EfficientNetB{size}" for size in range(8)),
    *(f"EfficientNetV2{size}" for size in ("B0", "B1", "B2", "B3", "L", "M", "S")),
    *("InceptionResNetV2", "InceptionV3", "Xception"),
    *("MobileNet", "MobileNetV2", "MobileNetV3Large", "MobileNetV3Small"),
    *("NASNetLarge", "NASNetMobile"),
    *("ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2"),
    *("VGG16", "VGG19"),
)
# The smallest image side each takes (imagenet_utils.obtain_input_shape's min_size).
MIN_SIDE = {"InceptionResNetV2": 75, "InceptionV3": 75, "Xception": 71}
DEFAULT_MIN_SIDE = 32

# keras.applications.imagenet_utils.preprocess_input's constants.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch", "none")


def min_side(application: str) -> int:
    return MIN_SIDE.get(application, DEFAULT_MIN_SIDE)


def build_base(application: str, input_shape: tuple[int, ...], weights: Path | None) -> Any:
    """``keras.applications.<application>`` without its top; ``weights``: its no-top file."""
    import keras

    if application not in APPLICATIONS:
        raise ValueError(f"unknown application {application!r}; allowed: {list(APPLICATIONS)}")
    build = getattr(keras.applications, application)
    base = build(include_top=False, weights=None, input_shape=input_shape)
    if weights is not None:
        base.load_weights(weights)
        _as_keras_builds_it_for_imagenet(application, base)
    return base


def _as_keras_builds_it_for_imagenet(application: str, base: Any) -> None:
    """EfficientNet B0-B7 divide the normalised input once more by sqrt(ImageNet std), a
    Rescaling Keras adds only when it loads weights="imagenet" itself (efficientnet.py,
    TensorFlow issue 49930). Built without it, fold it into the Normalization's variance:
    (x - mean) / sqrt(variance * std) is the same number."""
    import keras
    import numpy as np

    if not application.startswith("EfficientNetB"):
        return
    norm = next(layer for layer in base.layers if isinstance(layer, keras.layers.Normalization))
    std = np.array(IMAGENET_STD_RGB, dtype=np.float32)
    variance = keras.ops.convert_to_numpy(norm.adapt_variance) * std
    norm.adapt_variance.assign(variance)
    norm.finalize_state()


@functools.cache
def preprocessing_layer_class() -> type:
    """The preprocessing layer's class, registered with Keras on first use.

    Defined lazily (Keras is imported here): a process that loads a saved model holding
    the layer must call this first, or Keras cannot find the class by its name.
    """
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="convbench")
    class ImagenetPreprocessing(keras.layers.Layer):
        """``imagenet_utils.preprocess_input(x, mode)`` on 0-255 RGB pixels, in Keras ops
        (any backend). Float32 whatever the policy: the ImageNet means are not bf16 numbers."""

        def __init__(self, mode: str, **kwargs: Any) -> None:
            kwargs.setdefault("dtype", "float32")
            super().__init__(**kwargs)
            if mode not in MODES:
                raise ValueError(f"preprocess mode {mode!r}; allowed: {list(MODES)}")
            self.mode = mode

        def call(self, inputs: Any) -> Any:
            x = ops.cast(inputs, self.compute_dtype)
            if self.mode == "tf":  # to [-1, 1]
                return x / 127.5 - 1.0
            if self.mode == "torch":  # to [0, 1], then the ImageNet mean and std
                return (x / 255.0 - ops.array(IMAGENET_MEAN_RGB)) / ops.array(IMAGENET_STD_RGB)
            if self.mode == "caffe":  # RGB to BGR, the ImageNet mean subtracted
                return ops.flip(x, axis=-1) - ops.array(CAFFE_MEAN_BGR)
            return x

        def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "mode": self.mode}

    return ImagenetPreprocessing


def preprocessing(mode: str | None) -> Any:
    """The layer applying ``mode`` to 0-255 pixels; None where nothing is to be done."""
    if mode is None or mode == "none":
        return None
    return preprocessing_layer_class()(mode, name=f"preprocess_{mode}")


def _with_preprocessing(base: Any, mode: str | None, name: str) -> tuple[Any, Any]:
    """(inputs, base's output) with the preprocessing in front of the nested base."""
    import keras

    inputs = keras.Input(shape=tuple(base.inputs[0].shape[1:]), name=f"{name}_images")
    layer = preprocessing(mode)
    return inputs, base(inputs if layer is None else layer(inputs))


def feature_extractor(base: Any, mode: str | None) -> Any:
    """What turns 0-255 images (or /255 ones, ``mode`` None) into the base's features."""
    import keras

    if mode is None or mode == "none":
        return base
    inputs, features = _with_preprocessing(base, mode, base.name)
    return keras.Model(inputs, features, name=base.name)


def unfreeze_from(base: Any, layer_name: str) -> list[str]:
    """Freeze the base's layers before ``layer_name``; train it and those after it.

    ``layer_name`` is a layer's name or the start of a block's names (``conv5_``): the
    first layer whose name starts with it. BatchNormalization layers stay frozen, in
    inference mode with their ImageNet statistics (Keras' fine-tuning advice: small
    batches' statistics would wreck them). Returns the names of the layers from there.
    """
    import keras

    names = [layer.name for layer in base.layers]
    if layer_name in names:
        start = names.index(layer_name)
    else:
        start = next((i for i, name in enumerate(names) if name.startswith(layer_name)), -1)
    if start < 0:
        raise ValueError(
            f"{base.name} has no layer named {layer_name!r} or starting with it; "
            f"its last layers: {names[-12:]} ({len(names)} in all)"
        )
    base.trainable = True
    for index, layer in enumerate(base.layers):
        normalization = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and not normalization
    return names[start:]


def attach_head(base: Any, head: Any, name: str, mode: str | None = None) -> Any:
    """Preprocessing (``mode``), the base, then the head: one model of 0-255 images."""
    import keras

    inputs, features = _with_preprocessing(base, mode, name)
    return keras.Model(inputs, head(features), name=name)


def finetune_model(
    base: Any, head: Any, trainable_from: str, name: str, mode: str | None = None
) -> Any:
    """The base with the trained head on top, trainable from ``trainable_from`` on."""
    unfreeze_from(base, trainable_from)
    return attach_head(base, head, name, mode)


def features_head(input_shape: tuple[int, int, int], num_classes: int, name: str) -> Any:
    """The decks' classifier on stored features: Flatten → Dense 64 → Dropout .5 → head."""
    from keras import layers

    stack = [layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return _sequential(name, input_shape, [*stack, _head(num_classes)])


def _register(application: str) -> None:
    """Register ``<application>_features`` and ``<application>_finetune`` (lower case)."""
    architecture = application.lower()

    def features(input_shape: tuple[int, int, int], num_classes: int) -> Any:
        return features_head(input_shape, num_classes, f"{architecture}_features")

    def finetune(input_shape: tuple[int, int, int], num_classes: int) -> Any:
        base = build_base(application, input_shape, weights=None)
        head = features(tuple(base.output.shape[1:]), num_classes)
        return attach_head(base, head, f"{architecture}_finetune")

    features.__doc__ = (
        f"The classifier on stored {application} features: Flatten → Dense 64 → Dropout "
        ".5 → classifier. The base runs once, in the extract_features stage."
    )
    finetune.__doc__ = (
        f"keras.applications.{application} (no top) with the {architecture}_features head; "
        "fine-tuning trains it from its trainable_from layer on. Built here without weights."
    )
    register(f"{architecture}_features")(features)
    register(f"{architecture}_finetune", min_side=min_side(application))(finetune)


for _application in APPLICATIONS:
    _register(_application)
