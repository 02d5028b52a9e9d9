"""The decks' Keras networks: MLP, CNN, LeNet-5, the small Cats vs Dogs and CIFAR-10
convnets, each with a batch-normalised twin where the decks have one.

Keras is imported inside the builders: the catalogue (which the settings' name check and
the report read) costs no TensorFlow import. Builders use plain Keras 3 layers only, so
any Keras backend (TensorFlow, JAX) runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from convbench.models.catalog import register


def _head(num_classes: int) -> Any:
    """Softmax over the classes; two classes get the decks' single sigmoid unit.

    Always float32: under a mixed-precision policy the probabilities and the loss stay
    numerically stable (Keras' advice); under float32 it changes nothing.
    """
    from keras import layers

    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="predictions", dtype="float32")
    return layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")


# Keras' default (0.99) leaves the moving statistics mostly at their initial values after
# the 150 steps of the decks' Cats vs Dogs budget (15 epochs of 10 batches), so inference
# sees the wrong normalisation; 0.9 settles within about 20 steps.
BN_MOMENTUM = 0.9


def _conv(filters: int, batch_norm: bool, padding: str = "valid") -> list[Any]:
    """Conv 3x3 relu; with batch norm, Conv (no bias: BN's shift replaces it) → BN → relu."""
    from keras import layers

    if not batch_norm:
        return [layers.Conv2D(filters, 3, padding=padding, activation="relu")]
    return [
        layers.Conv2D(filters, 3, padding=padding, use_bias=False),
        layers.BatchNormalization(momentum=BN_MOMENTUM),
        layers.Activation("relu"),
    ]


def _dense(units: int, batch_norm: bool) -> list[Any]:
    from keras import layers

    if not batch_norm:
        return [layers.Dense(units, activation="relu")]
    return [
        layers.Dense(units, use_bias=False),
        layers.BatchNormalization(momentum=BN_MOMENTUM),
        layers.Activation("relu"),
    ]


def _sequential(name: str, input_shape: tuple[int, int, int], stack: list[Any]) -> Any:
    import keras

    return keras.Sequential([keras.Input(shape=input_shape), *stack], name=name)


def _register_with_batch_norm(name: str, build: Callable[..., Any], min_side: int) -> None:
    """Register ``name`` and ``name_bn``: the same network with batch normalisation (deck 003)."""
    doc = (build.__doc__ or "").strip()

    def plain(input_shape: tuple[int, int, int], num_classes: int) -> Any:
        return build(input_shape, num_classes, batch_norm=False)

    def normalised(input_shape: tuple[int, int, int], num_classes: int) -> Any:
        return build(input_shape, num_classes, batch_norm=True)

    plain.__doc__ = doc
    normalised.__doc__ = f"{doc} With batch normalisation after each conv and hidden dense."
    register(name, min_side=min_side)(plain)
    register(f"{name}_bn", min_side=min_side)(normalised)


@register("mlp")
def mlp(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Flatten → Dense 512 relu → Dropout .2 → Dense 512 relu → Dropout .2 → softmax."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.2),
            _head(num_classes),
        ],
        name="mlp",
    )


def cnn(input_shape: tuple[int, int, int], num_classes: int, batch_norm: bool) -> Any:
    """Conv 32 → Conv 64 → MaxPool → Dropout .25 → Dense 128 → Dropout .5 → softmax."""
    from keras import layers

    stack = [
        *_conv(32, batch_norm),
        *_conv(64, batch_norm),
        layers.MaxPooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        *_dense(128, batch_norm),
        layers.Dropout(0.5),
        _head(num_classes),
    ]
    return _sequential("cnn_bn" if batch_norm else "cnn", input_shape, stack)


def small_cnn(input_shape: tuple[int, int, int], num_classes: int, batch_norm: bool) -> Any:
    """The Keras blog's Cats vs Dogs convnet: 3 x [Conv 32/32/64 → MaxPool] → Dense 64 →
    Dropout .5 → sigmoid."""
    from keras import layers

    stack = []
    for filters in (32, 32, 64):
        stack += [*_conv(filters, batch_norm), layers.MaxPooling2D(2)]
    stack += [
        layers.Flatten(),
        *_dense(64, batch_norm),
        layers.Dropout(0.5),
        _head(num_classes),
    ]
    return _sequential("small_cnn_bn" if batch_norm else "small_cnn", input_shape, stack)


@register("cifar_cnn", min_side=2)
def cifar_cnn(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """The CIFAR-10 deck's `cnn`: Conv 32 same → MaxPool → Dropout .25 → Dense 512 →
    Dropout .5 → softmax."""
    from keras import layers

    stack = [
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(512, activation="relu"),
        layers.Dropout(0.5),
        _head(num_classes),
    ]
    return _sequential("cifar_cnn", input_shape, stack)


def deep_cnn(input_shape: tuple[int, int, int], num_classes: int, batch_norm: bool) -> Any:
    """2 x [Conv same → Conv → MaxPool → Dropout .25] (32, then 64 filters) → Dense 512 →
    Dropout .5 → softmax."""
    from keras import layers

    stack = []
    for filters in (32, 64):
        stack += [
            *_conv(filters, batch_norm, padding="same"),
            *_conv(filters, batch_norm),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
        ]
    stack += [layers.Flatten(), *_dense(512, batch_norm), layers.Dropout(0.5), _head(num_classes)]
    return _sequential("deep_cnn_bn" if batch_norm else "deep_cnn", input_shape, stack)


# The smallest side each stack of 3x3 convolutions and 2x2 poolings leaves a pixel of.
for _name, _build, _min_side in (
    ("cnn", cnn, 6),
    ("small_cnn", small_cnn, 22),
    ("deep_cnn", deep_cnn, 10),
):
    _register_with_batch_norm(_name, _build, _min_side)


@register("lenet5", max_side=32)
def lenet5(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """LeNet-5 (tanh): 28x28 inputs are zero-padded by 2 to the 32x32 it was designed for."""
    import keras
    from keras import layers

    pad = max(0, (32 - input_shape[0]) // 2)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.ZeroPadding2D(pad),
            layers.Conv2D(6, 5, activation="tanh"),
            layers.MaxPooling2D(2, strides=2),
            layers.Conv2D(16, 5, activation="tanh"),
            layers.MaxPooling2D(2, strides=2),
            layers.Flatten(),
            layers.Dense(120, activation="tanh"),
            layers.Dense(84, activation="tanh"),
            _head(num_classes),
        ],
        name="lenet5",
    )
