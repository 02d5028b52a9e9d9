"""Loading saved Keras models without running code from them (Keras safe mode).

A ``.keras`` file can hold Python code: a ``Lambda`` layer's function, marshalled
bytecode. Keras' safe mode refuses to rebuild it; convbench always loads with it on and
turns Keras' refusal into an :class:`UnsafeModelError` naming the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convbench.core.errors import ConvbenchError


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

    with refusing_unsafe(str(path)):
        return keras.saving.load_model(path, safe_mode=True)
