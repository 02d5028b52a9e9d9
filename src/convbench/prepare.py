"""Prepare: a seeded validation split from the training set, stored for fast loading.

Pixels stay uint8 here (a quarter of the bytes of float32); scaling is a per-run
switch applied in the input pipeline, so the normalisation on/off experiment shares
one prepared copy of the data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from convbench.atomic import atomic_dir, read_json, write_json
from convbench.config import Profile
from convbench.datasets import Splits

SPLITS = ("train", "validation", "test")


def split_validation(splits: Splits, fraction: float, seed: int) -> Splits:
    """Carve a stratified validation split out of ``train``; ``test`` is left untouched."""
    images, labels = splits["train"]
    index = np.arange(len(labels))
    train_idx, val_idx = train_test_split(
        index, test_size=fraction, random_state=seed, stratify=labels
    )
    train_idx.sort()
    val_idx.sort()
    return {
        "train": (images[train_idx], labels[train_idx]),
        "validation": (images[val_idx], labels[val_idx]),
        "test": splits["test"],
    }


def limit_splits(splits: Splits, profile: Profile, seed: int) -> Splits:
    """Keep a seeded random subset of each split when the profile asks for one."""
    limits = {
        "train": profile.train_limit,
        "validation": profile.validation_limit,
        "test": profile.test_limit,
    }
    rng = np.random.default_rng(seed)
    out = {}
    for split, (images, labels) in splits.items():
        limit = limits.get(split)
        if limit is not None and limit < len(labels):
            keep = np.sort(rng.choice(len(labels), size=limit, replace=False))
            images, labels = images[keep], labels[keep]
        out[split] = (images, labels)
    return out


def prepare(splits: Splits, fraction: float, seed: int, profile: Profile) -> Splits:
    return limit_splits(split_validation(splits, fraction, seed), profile, seed)


def save_prepared(splits: Splits, out_dir: Path, classes: list[int | str]) -> dict:
    """Write one uncompressed .npz per split (memory-mappable, fast) and an info file."""
    info: dict = {"classes": list(classes), "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for split, (images, labels) in splits.items():
            path = tmp / f"{split}.npz"
            np.savez(path, images=images, labels=labels)
            info["splits"][split] = {
                "count": len(labels),
                "shape": list(images.shape[1:]),
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        info["sha256"] = hashlib.sha256(
            "".join(info["splits"][s]["sha256"] for s in sorted(info["splits"])).encode()
        ).hexdigest()
        write_json(tmp / "info.json", info)
    return info


def load_prepared(prepared_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(prepared_dir / f"{split}.npz") as data:
        return data["images"], data["labels"]


def prepared_info(prepared_dir: Path) -> dict:
    return read_json(prepared_dir / "info.json")
