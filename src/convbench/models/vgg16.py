"""VGG16 for transfer learning: the convolutional base, the decks' head on its features,
and the two put together for fine-tuning.

The base is built here without weights; ``convbench.training.transfer`` loads the
verified ImageNet weights file into it, so nothing here can pass random weights off as
pretrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.models.catalog import register
from convbench.models.networks import _head, _sequential


def vgg16_base(input_shape: tuple[int, ...], weights: Path | None) -> Any:
    """VGG16's convolutional base (no top); ``weights``: a Keras VGG16 notop weights file."""
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    if weights is not None:
        base.load_weights(weights)
    return base


# The pretrained bases params.yaml's `pretrained.<name>.architecture` may name.
BASES = {"vgg16": vgg16_base}


def attach_head(base: Any, head: Any, name: str) -> Any:
    """The base with the head on its output, as one model (the decks' construction)."""
    import keras

    return keras.Model(base.inputs, head(base.outputs[0]), name=name)


def unfreeze_from(base: Any, layer_name: str) -> list[str]:
    """Freeze the base's layers before ``layer_name``; train it and the ones after it."""
    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise ValueError(f"trainable_from: the base has no layer {layer_name!r}; layers: {names}")
    start = names.index(layer_name)
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= start
    return names[start:]


def finetune_model(base: Any, head: Any, trainable_from: str, name: str) -> Any:
    """The base with the trained head on top, trainable from ``trainable_from`` on."""
    unfreeze_from(base, trainable_from)
    return attach_head(base, head, name)


@register("vgg16_features")
def vgg16_features(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """The classifier on stored VGG16 features (4x4x512 at 150x150): Flatten → Dense 64 →
    Dropout .5 → sigmoid. The base runs once, in the extract_features stage."""
    from keras import layers

    stack = [layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return _sequential("vgg16_features", input_shape, [*stack, _head(num_classes)])


@register("vgg16_finetune")
def vgg16_finetune(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """The VGG16 base with the vgg16_features head on top; fine-tuning trains its last
    block and the head (see convbench.training.transfer). Built here without weights."""

    base = vgg16_base(input_shape, weights=None)
    head = vgg16_features(tuple(base.output.shape[1:]), num_classes)
    return attach_head(base, head, name="vgg16_finetune")
