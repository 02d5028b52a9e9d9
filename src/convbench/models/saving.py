"""Trained models on disk: one way to save them and one way to load them.

A ``.keras`` file can hold Python code (a ``Lambda`` layer's function, marshalled
bytecode). Keras' safe mode refuses to rebuild it; convbench always loads with it on and
turns Keras' refusal into an :class:`UnsafeModelError` naming the file. A forest is
saved with skops, never pickle: only the listed types may be rebuilt from the file.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convbench.core.errors import ConvbenchError

KERAS_MODEL = "model.keras"
FOREST_MODEL = "model.skops"
# The one non-builtin type a fitted forest holds; trusted because we wrote the file.
FOREST_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


class UnsafeModelError(ConvbenchError, ValueError):
    """A saved model holds code that safe mode will not run; it is not loaded."""


@contextlib.contextmanager
def refusing_unsafe(origin: str) -> Iterator[None]:
    """Turn Keras' safe-mode refusal (a ValueError that names ``safe_mode``) into ours."""
    try:
        yield
    except ValueError as error:
        if "safe_mode" not in str(error):
            raise
        # Keras' first sentence says what it found; the rest suggests turning safe mode off.
        found = str(error).split(". ")[0]
        raise UnsafeModelError(
            f"{origin}: not loaded: Keras safe mode refused code in it ({found}). "
            "convbench loads saved models only in safe mode; rebuild the model from "
            "layers without Python code (no Lambda layers) and save it again"
        ) from None


def load_keras_model(path: Path) -> Any:
    """The model saved at ``path`` (a ``.keras`` file), loaded in safe mode."""
    import keras

    register_custom_layers()
    with refusing_unsafe(str(path)):
        return keras.saving.load_model(path, safe_mode=True)


def register_custom_layers() -> None:
    """Make convbench's own layers known to Keras, which finds a saved layer's class by
    its registered name (a fine-tuned base's preprocessing, say)."""
    from convbench.models.bases import preprocessing_layer_class

    preprocessing_layer_class()


def is_keras(model: Any) -> bool:
    # No Keras loaded, no Keras model: a forest's process never imports its backend.
    if "keras" not in sys.modules:
        return False
    import keras

    return isinstance(model, keras.Model)


def save_model(model: Any, model_dir: Path) -> None:
    """Write the model into ``model_dir`` (a Keras file, or a forest through skops)."""
    import skops.io

    model_dir.mkdir(parents=True, exist_ok=True)
    if is_keras(model):
        model.save(model_dir / KERAS_MODEL)
    else:
        skops.io.dump(model, model_dir / FOREST_MODEL)


def load_model(model_dir: Path) -> Any:
    """The model a train stage saved in ``model_dir``, whichever kind it is."""
    if (model_dir / KERAS_MODEL).exists():
        return load_keras_model(model_dir / KERAS_MODEL)
    import skops.io

    return skops.io.load(model_dir / FOREST_MODEL, trusted=FOREST_TRUSTED_TYPES)
