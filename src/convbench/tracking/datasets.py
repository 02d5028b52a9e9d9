"""A run's data in MLflow: each split of a prepared dataset it used, as a dataset input.

MLflow's UI shows them in a run's *Dataset* column and page: the dataset's name (its key
in params.yaml), a digest from the checksum convbench computed when it prepared the data,
where the data is, the split's use (``context``: training, validation, test) and its
rows. Nothing is loaded or hashed again: an input is a reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource

from convbench.tracking.health import TrackingStoreError

# A prepared split, as MLflow's dataset inputs name the use of a dataset ("context").
SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}
DIGEST_HEX = 12  # of the dataset's sha256 in a dataset input's digest (MLflow allows 36)
SPLIT_TAG = "convbench.split"
SHA256_TAG = "convbench.dataset_sha256"


class PreparedSplit(MetaDataset):
    """One split of a prepared dataset: a reference (name, digest, source) and its row
    count as the profile MLflow shows (``num_rows``), without the data."""

    def __init__(self, name: str, digest: str, source: str, rows: int) -> None:
        self._rows = rows
        super().__init__(LocalArtifactDatasetSource(source), name=name, digest=digest)

    @property
    def profile(self) -> dict[str, int]:
        return {"num_rows": self._rows}

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self.profile)}


def dataset_digest(sha256: str, split: str) -> str:
    """A split's digest: the start of the prepared dataset's checksum, and the split.

    MLflow keeps one input per (name, digest) in a run, and one dataset per (name, digest)
    in an experiment: splits sharing the dataset's checksum would collapse into one.
    """
    return f"{sha256[:DIGEST_HEX]}-{split}"


def data_source(folder: Path, root: Path) -> str:
    """Where the data is: relative to the project, so the same from every DVC workspace
    (MLflow keeps the source the first run of a (name, digest) gave)."""
    folder = folder.resolve()
    try:
        return folder.relative_to(root.resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def log_dataset_inputs(
    name: str, sha256: str, folder: Path, rows: dict[str, int], root: Path
) -> None:
    """Record the splits of prepared dataset ``name`` the active run uses, one input each.

    ``rows`` maps each split used (``train``, ``validation``, ``test``) to its row count;
    ``sha256`` is the prepared dataset's checksum (the run's ``dataset_sha256`` tag), kept
    whole in each input's ``convbench.dataset_sha256`` tag. Logging a split again (a
    resumed or re-evaluated run) adds nothing. An input MLflow refuses raises a
    TrackingStoreError that says which; inside ``start_run`` the run ends FAILED with it.
    """
    unknown = sorted(set(rows) - set(SPLIT_CONTEXTS))
    if unknown:
        raise ValueError(f"unknown splits {unknown}: expected some of {list(SPLIT_CONTEXTS)}")
    splits = [split for split in SPLIT_CONTEXTS if split in rows]
    source = data_source(folder, root)
    try:
        mlflow.log_inputs(
            datasets=[
                PreparedSplit(name, dataset_digest(sha256, split), source, rows[split])
                for split in splits
            ],
            contexts=[SPLIT_CONTEXTS[split] for split in splits],
            tags_list=[{SPLIT_TAG: split, SHA256_TAG: sha256} for split in splits],
        )
    except mlflow.exceptions.MlflowException as error:
        raise TrackingStoreError(
            f"MLflow refused the dataset inputs of this run (dataset {name!r}, splits "
            f"{', '.join(splits)}, from {source}, sha256 {sha256}): {error.message}"
        ) from error
