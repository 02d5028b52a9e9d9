"""DVC stage ``train_head``: the classifier trained on stored features (run
``<transfer>_features``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.data.prepare import prepared_info
from convbench.models.variants import VARIANTS
from convbench.settings import Settings, transfer_run_keys
from convbench.stages.entry import stage_command
from convbench.stages.keras_run import train_keras


def train_head(
    settings: Settings,
    transfer: str,
    features_dir: Path,
    model_dir: Path,
    out_dir: Path,
    verbose: int = 2,
) -> dict[str, Any]:
    """Train the classifier on the features ``extract_features`` stored."""
    item = settings.transfer(transfer)
    spec = settings.run_spec(transfer_run_keys(transfer)[0])
    extraction = prepared_info(features_dir)["feature_extraction"]
    return train_keras(
        settings,
        spec,
        features_dir,
        model_dir,
        out_dir,
        extra_params={"base": item.base, "feature_batch_size": item.feature_batch_size},
        extra_metrics={
            "feature_extraction_seconds": extraction["seconds"],
            "feature_extraction_images_per_second": extraction["images_per_second"] or 0.0,
        },
        verbose=verbose,
    )


main = stage_command(train_head, VARIANTS)
