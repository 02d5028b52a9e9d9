"""Prepare: the train / validation / test roles, profile subsets, stored for fast loading.

Each role comes from a published split, or is carved (seeded, stratified) out of the
training split. Array datasets (MNIST, CIFAR-10) are stored as one uncompressed ``.npz``
per role, pixels still uint8: scaling is a per-run switch of the input pipeline, so the
normalisation on/off experiment shares one prepared copy. Folder datasets (Cats vs Dogs)
are stored as TFRecord shards of the accepted images' JPEG bytes, shuffled once (seeded)
so that reading shards in order already mixes the classes; the input pipeline decodes
and resizes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import train_test_split

from convbench.core.atomic import atomic_dir, read_json, write_json
from convbench.settings import Dataset, Profile

if TYPE_CHECKING:  # a type only: the raw readers are not code the later stages run
    from convbench.data.readers import Splits

SPLITS = ("train", "validation", "test")
ARRAYS, SHARDS = "arrays", "shards"


@dataclass(frozen=True)
class Roles:
    """Which published split plays each role, or what fraction of train is carved for it."""

    train_split: str = "train"
    validation_split: str | None = None
    validation_fraction: float | None = None
    test_split: str | None = "test"
    test_fraction: float | None = None

    @classmethod
    def of(cls, dataset: Dataset) -> Roles:
        return cls(
            dataset.train_split,
            dataset.validation_split,
            dataset.validation_fraction,
            dataset.test_split,
            dataset.test_fraction,
        )


def role_indices(
    labels: dict[str, np.ndarray], roles: Roles, seed: int
) -> dict[str, tuple[str, np.ndarray]]:
    """For each role, (the published split it comes from, sorted indices into that split)."""
    train_labels = labels[roles.train_split]
    pool = np.arange(len(train_labels))
    out: dict[str, tuple[str, np.ndarray]] = {}
    for role in ("test", "validation"):
        split = getattr(roles, f"{role}_split")
        if split is not None:
            if split not in labels:
                raise KeyError(f"{role}: no published split {split!r}; have {sorted(labels)}")
            out[role] = (split, np.arange(len(labels[split])))
            continue
        fraction = getattr(roles, f"{role}_fraction")
        size = int(np.ceil(fraction * len(train_labels)))  # of the whole training split
        keep, carved = train_test_split(
            pool, test_size=size, random_state=seed, stratify=train_labels[pool]
        )
        out[role] = (roles.train_split, np.sort(carved))
        pool = np.sort(keep)
    out["train"] = (roles.train_split, pool)
    return {role: out[role] for role in SPLITS}


def limit_indices(
    indices: dict[str, np.ndarray], profile: Profile, seed: int
) -> dict[str, np.ndarray]:
    """Keep a seeded random subset of each role when the profile asks for one."""
    limits = {
        "train": profile.train_limit,
        "validation": profile.validation_limit,
        "test": profile.test_limit,
    }
    rng = np.random.default_rng(seed)
    out = {}
    for role, index in indices.items():
        limit = limits.get(role)
        if limit is not None and limit < len(index):
            index = np.sort(rng.choice(index, size=limit, replace=False))
        out[role] = index
    return out


def _roles(
    labels: dict[str, np.ndarray], roles: Roles, seed: int, profile: Profile
) -> dict[str, tuple[str, np.ndarray]]:
    chosen = role_indices(labels, roles, seed)
    limited = limit_indices({role: index for role, (_, index) in chosen.items()}, profile, seed)
    return {role: (chosen[role][0], limited[role]) for role in SPLITS}


def prepare(splits: Splits, roles: Roles, seed: int, profile: Profile) -> Splits:
    """Array datasets: each role's images and labels."""
    chosen = _roles({split: labels for split, (_, labels) in splits.items()}, roles, seed, profile)
    return {
        role: (splits[split][0][index], splits[split][1][index])
        for role, (split, index) in chosen.items()
    }


def _combined_sha256(parts: Iterable[str]) -> str:
    """One hash for the whole prepared dataset, from its files' hashes."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def save_prepared(
    splits: Splits, out_dir: Path, classes: list[int | str], extra: dict | None = None
) -> dict:
    """Write one uncompressed .npz per role (memory-mappable, fast) and an info file.

    ``extra`` adds entries to the info file (how stored features were made, say).
    """
    info: dict = {"format": ARRAYS, "classes": list(classes), "splits": {}, **(extra or {})}
    with atomic_dir(out_dir) as tmp:
        for split, (images, labels) in splits.items():
            path = tmp / f"{split}.npz"
            np.savez(path, images=images, labels=labels)
            info["splits"][split] = {
                "count": len(labels),
                "shape": list(images.shape[1:]),
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        info["sha256"] = _combined_sha256(
            info["splits"][s]["sha256"] for s in sorted(info["splits"])
        )
        write_json(tmp / "info.json", info)
    return info


def prepare_shards(
    images: list[bytes],
    labels: np.ndarray,
    ids: list[str],
    published: np.ndarray,
    roles: Roles,
    seed: int,
    profile: Profile,
    out_dir: Path,
    classes: list[int | str],
    shard_size: int,
) -> dict:
    """Folder datasets: each role's accepted images as shuffled TFRecord shards.

    ``published`` gives each image's published split; the other arguments are aligned
    with it, one entry per accepted image.
    """
    from convbench.data.shards import write_shards

    positions = {split: np.flatnonzero(published == split) for split in np.unique(published)}
    chosen = _roles({s: labels[p] for s, p in positions.items()}, roles, seed, profile)
    rng = np.random.default_rng(seed)
    info: dict = {"format": SHARDS, "classes": list(classes), "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for role, (split, index) in chosen.items():
            order = positions[split][index]
            order = order[rng.permutation(len(order))]
            shards = write_shards(
                tmp,
                role,
                [images[i] for i in order],
                labels[order].tolist(),
                [ids[i] for i in order],
                shard_size,
            )
            info["splits"][role] = {
                "count": len(order),
                "published_split": split,
                "classes": np.bincount(labels[order], minlength=len(classes)).tolist(),
                "shards": shards,
            }
        info["sha256"] = _combined_sha256(
            shard["sha256"] for role in SPLITS for shard in info["splits"][role]["shards"]
        )
        write_json(tmp / "info.json", info)
    return info


def load_prepared(prepared_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(prepared_dir / f"{split}.npz") as data:
        return data["images"], data["labels"]


def shard_files(prepared_dir: Path, split: str) -> list[Path]:
    info = prepared_info(prepared_dir)
    return [prepared_dir / shard["file"] for shard in info["splits"][split]["shards"]]


def prepared_info(prepared_dir: Path) -> dict:
    return read_json(prepared_dir / "info.json")
