"""DVC stage ``extract_features``: the frozen pretrained base run once over every split,
its features stored as a prepared array dataset (a DVC output) for ``train_head``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from convbench.data.prepare import prepared_info, save_prepared
from convbench.data.sources import SOURCES
from convbench.models.variants import VARIANTS
from convbench.settings import Settings, transfer_run_keys
from convbench.stages.entry import stage_command
from convbench.training.devices import configure_runtime
from convbench.training.transfer import extract_features, pretrained_base

log = logging.getLogger(__name__)


def _image_size(settings: Settings, transfer: str) -> tuple[int, int]:
    """The size the base sees: that of the images fine-tuning trains on."""
    return settings.run_spec(transfer_run_keys(transfer)[1]).image_size


def load_base(settings: Settings, transfer: str, weights_dir: Path) -> Any:
    """The pretrained base of transfer entry ``transfer``, for its dataset's image size."""
    item = settings.transfer(transfer)
    pretrained = settings.params.pretrained[item.base]
    # Device, memory and precision set before the base is built: they decide its layers.
    configure_runtime(settings.params.runtime)
    return pretrained_base(
        SOURCES[pretrained.source],
        weights_dir,
        (*_image_size(settings, transfer), 3),
        pretrained.architecture,
    )


def extract(
    settings: Settings,
    transfer: str,
    prepared_dir: Path,
    weights_dir: Path,
    out_dir: Path,
    base: Any = None,
) -> dict[str, Any]:
    """Run the frozen base over the prepared images of ``transfer``'s dataset; store the
    features. ``base`` defaults to the pretrained one from ``weights_dir``."""
    item = settings.transfer(transfer)
    base = base if base is not None else load_base(settings, transfer, weights_dir)
    size = _image_size(settings, transfer)
    log.info("%s: extracting features with %s", transfer, base.name)
    splits, extraction = extract_features(
        base, prepared_dir, size, item.feature_batch_size, item.normalize
    )
    classes = prepared_info(prepared_dir)["classes"]
    return save_prepared(splits, out_dir, classes, extra={"feature_extraction": extraction})


main = stage_command(extract, VARIANTS)
