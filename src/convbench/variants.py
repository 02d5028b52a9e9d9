"""Model variants: one small builder per variant, registered by name.

Adding a variant is one function here plus one entry under ``runs`` in params.yaml.
Keras is imported inside the builders so that reading the settings (which checks
variant names against this registry) does not pay for importing TensorFlow.
Builders use plain Keras 3 layers only, so any Keras backend (TensorFlow, JAX) runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Builder = Callable[[tuple[int, int, int], int], Any]


@dataclass(frozen=True)
class Variant:
    name: str
    kind: Literal["keras", "sklearn"]
    build: Builder
    description: str


VARIANTS: dict[str, Variant] = {}


def register(
    name: str, kind: Literal["keras", "sklearn"] = "keras"
) -> Callable[[Builder], Builder]:
    def decorator(build: Builder) -> Builder:
        if name in VARIANTS:
            raise ValueError(f"variant {name!r} is registered twice")
        VARIANTS[name] = Variant(name, kind, build, (build.__doc__ or "").strip())
        return build

    return decorator


def build_variant(name: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; allowed: {sorted(VARIANTS)}")
    return VARIANTS[name].build(input_shape, num_classes)


def _head(num_classes: int) -> Any:
    from keras import layers

    return layers.Dense(num_classes, activation="softmax", name="predictions")


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


@register("cnn")
def cnn(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Conv 32 → Conv 64 → MaxPool → Dropout .25 → Dense 128 → Dropout .5 → softmax."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            _head(num_classes),
        ],
        name="cnn",
    )


@register("lenet5")
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


@register("random_forest", kind="sklearn")
def random_forest(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """scikit-learn RandomForest on flattened pixels: the baseline the decks compare with."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier()
