"""The variant catalogue: every model builder, registered by name with its family.

The builders live in ``networks`` (the decks' Keras networks), ``bases`` (transfer
learning, one pair per keras.applications base) and ``forest`` (the scikit-learn
baseline); importing ``convbench.models.variants`` registers them all. Adding a variant
is one decorated function plus one entry under ``runs`` in params.yaml.
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
    # The image sides (height and width) its layers can take: below min_side a
    # convolution or pooling would run out of pixels; above max_side it is not the
    # network it claims to be (LeNet-5 is a 32x32 design).
    min_side: int = 1
    max_side: int | None = None

    def refuses(self, shape: tuple[int, int, int]) -> str | None:
        """Why the variant cannot take images of ``shape`` (height, width, channels)."""
        small, large = min(shape[:2]), max(shape[:2])
        if small < self.min_side:
            return f"it needs images of at least {self.min_side}x{self.min_side}"
        if self.max_side is not None and large > self.max_side:
            return f"it takes images of at most {self.max_side}x{self.max_side}"
        return None


VARIANTS: dict[str, Variant] = {}


def register(
    name: str,
    kind: Literal["keras", "sklearn"] = "keras",
    *,
    min_side: int = 1,
    max_side: int | None = None,
) -> Callable[[Builder], Builder]:
    def decorator(build: Builder) -> Builder:
        if name in VARIANTS:
            raise ValueError(f"variant {name!r} is registered twice")
        description = (build.__doc__ or "").strip()
        VARIANTS[name] = Variant(name, kind, build, description, min_side, max_side)
        return build

    return decorator


def build_variant(name: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; allowed: {sorted(VARIANTS)}")
    return VARIANTS[name].build(input_shape, num_classes)
