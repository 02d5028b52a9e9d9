"""The variant catalogue: every model builder, registered by name with its family.

The builders live in ``networks`` (the decks' Keras networks), ``vgg16`` (transfer
learning) and ``forest`` (the scikit-learn baseline); importing ``convbench.models``
registers them all. Adding a variant is one decorated function plus one entry under
``runs`` in params.yaml.
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
