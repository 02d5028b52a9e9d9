"""The scikit-learn baseline the decks compare the networks with."""

from __future__ import annotations

from typing import Any

from convbench.models.catalog import register


@register("random_forest", kind="sklearn")
def random_forest(input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """scikit-learn RandomForest on flattened pixels: the baseline the decks compare with."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier()
