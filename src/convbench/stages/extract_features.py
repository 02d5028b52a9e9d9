"""DVC stage ``extract_features``: the frozen pretrained base run once over every split,
its features stored as a prepared array dataset (a DVC output) for ``train_head``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from convbench.data.prepare import prepared_info, save_prepared
from convbench.models.bases import APPLICATIONS, feature_extractor, min_side
from convbench.models.variants import VARIANTS
from convbench.settings import Settings, SettingsError, transfer_run_keys
from convbench.stages.entry import stage_command
from convbench.training.devices import configure_runtime
from convbench.training.slots import stage_fit_slot
from convbench.training.transfer import extract_features, pretrained_base

log = logging.getLogger(__name__)


def base_input(settings: Settings, transfer: str) -> tuple[int, int, int]:
    """The shape the base of ``transfer`` takes: the images fine-tuning trains on, which
    must be in colour and no smaller than its application allows."""
    item = settings.transfer(transfer)
    spec = settings.run_spec(transfer_run_keys(transfer)[1])
    application = settings.params.pretrained[item.base].application
    if application not in APPLICATIONS:
        raise SettingsError(
            f"pretrained.{item.base}.application: unknown application {application!r}; "
            f"allowed (keras.applications): {list(APPLICATIONS)}"
        )
    # Grey images are refused, not repeated into three channels: the bases learnt colour,
    # and a grey copy per channel would be another experiment than the decks' one.
    if spec.channels != 3:
        raise SettingsError(
            f"transfer.{transfer}: {application} takes colour images; dataset "
            f"{item.dataset} has {spec.channels} channel(s)"
        )
    height, width = spec.image_size
    side = min_side(application)
    if min(height, width) < side:
        raise SettingsError(
            f"transfer.{transfer}: {application} needs images of at least {side}x{side}; "
            f"{item.dataset} is {height}x{width} under profile {settings.params.profile}"
        )
    return height, width, 3


def preprocess_mode(settings: Settings, transfer: str) -> str | None:
    """The preprocess_input mode the model applies itself; None: the pipeline's /255."""
    item = settings.transfer(transfer)
    if item.preprocess == "rescale":
        return None
    return settings.params.pretrained[item.base].preprocess


def load_base(settings: Settings, transfer: str, weights_dir: Path) -> Any:
    """The pretrained base of transfer entry ``transfer``, for its dataset's image size."""
    shape = base_input(settings, transfer)
    pretrained = settings.params.pretrained[settings.transfer(transfer).base]
    # Device, memory and precision set before the base is built: they decide its layers.
    configure_runtime(settings.params.runtime)
    return pretrained_base(pretrained, weights_dir, shape)


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
    height, width, _ = base_input(settings, transfer)
    base = base if base is not None else load_base(settings, transfer, weights_dir)
    extractor = feature_extractor(base, preprocess_mode(settings, transfer))
    log.info("%s: extracting features with %s", transfer, base.name)
    with stage_fit_slot(settings.env.project_root, settings.params.runtime):
        splits, extraction = extract_features(
            extractor,
            prepared_dir,
            (height, width),
            item.feature_batch_size,
            item.preprocess == "rescale",
        )
    classes = prepared_info(prepared_dir)["classes"]
    return save_prepared(splits, out_dir, classes, extra={"feature_extraction": extraction})


main = stage_command(extract, VARIANTS)
