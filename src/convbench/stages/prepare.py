"""Stage ``prepare``: a validated dataset cut into train/validation/test roles (profile
subsets), saved as arrays or, for image files, as shards."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from convbench.core.errors import ConvbenchError
from convbench.data.image_archive import accepted_image_bytes
from convbench.data.prepare import Roles, prepare, prepare_shards, save_prepared
from convbench.data.readers import load_raw
from convbench.data.scan import MANIFEST, image_source
from convbench.settings import Settings
from convbench.stages.entry import stage_command

log = logging.getLogger(__name__)


class ValidationNotPassedError(ConvbenchError, RuntimeError):
    """Preparing data whose validation did not pass."""


def prepare_dataset(
    settings: Settings,
    name: str,
    raw_dir: Path,
    validated_dir: Path,
    validation_summary: Path,
    out_dir: Path,
) -> dict:
    """Prepare ``datasets.<name>`` into ``out_dir`` once its validation summary says passed."""
    summary = json.loads(validation_summary.read_text())
    if not summary.get("success"):
        raise ValidationNotPassedError(
            f"{validation_summary}: validation of {name} did not pass; fix the data first"
        )
    dataset = settings.dataset(name)
    seed, profile = settings.params.seed, settings.profile
    if dataset.format == "image_folders":
        manifest = pd.read_parquet(validated_dir / MANIFEST)
        source = image_source(settings, name, raw_dir)
        rows = list(accepted_image_bytes(source, manifest, validated_dir))
        info = prepare_shards(
            images=[data for _, data in rows],
            labels=np.array([row["label"] for row, _ in rows], dtype=np.int64),
            ids=[row["image_id"] for row, _ in rows],
            published=np.array([row["split"] for row, _ in rows]),
            roles=Roles.of(dataset),
            seed=seed,
            profile=profile,
            out_dir=out_dir,
            classes=dataset.classes,
            shard_size=dataset.shard_size,
        )
    else:
        splits = prepare(load_raw(dataset, raw_dir), Roles.of(dataset), seed, profile)
        info = save_prepared(splits, out_dir, dataset.classes)
    log.info("%s prepared: %s", name, {s: v["count"] for s, v in info["splits"].items()})
    return info


main = stage_command(prepare_dataset)
