"""The image manifest: one row per image, the table that the validate stage checks.

:func:`build_array_manifest` describes every image of every split (shape, dtype, pixel
range, a content hash); :func:`add_derived_columns` adds the columns that let a column
expectation state a whole-table fact: leakage of identical images across splits and the
row count of each split. :func:`mark_label_conflicts` finds, in a manifest of image
files, the same image filed under two classes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

MANIFEST_COLUMNS = (
    "image_id",
    "split",
    "label",
    "height",
    "width",
    "channels",
    "dtype",
    "min_pixel",
    "max_pixel",
    "content_hash",
)
DERIVED_COLUMNS = ("shared_across_splits", "split_rows", "expected_split_rows")

_HASH_BYTES = 16  # blake2b-128: ample for telling images apart, short in the table


def _content_hashes(images: np.ndarray) -> list[str]:
    """Hex blake2b of each image's shape, dtype and raw bytes (identical images, same hash)."""
    images = np.ascontiguousarray(images)
    header = f"{images.shape[1:]}|{images.dtype.str}|".encode()
    rows = images.reshape(len(images), -1).view(np.uint8) if len(images) else images
    hashes = []
    for row in rows:
        digest = hashlib.blake2b(header, digest_size=_HASH_BYTES)
        digest.update(row.data)
        hashes.append(digest.hexdigest())
    return hashes


def _split_frame(split: str, images: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"split {split!r}: images must have shape (N, H, W) or (N, H, W, C), got {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"split {split!r}: {len(images)} images but labels of shape {labels.shape}"
        )
    count = len(images)
    height, width = images.shape[1], images.shape[2]
    channels = images.shape[3] if images.ndim == 4 else 1
    if count:
        flat = images.reshape(count, -1)
        min_pixel, max_pixel = flat.min(axis=1), flat.max(axis=1)
    else:
        min_pixel = max_pixel = np.empty(0, dtype=images.dtype)
    if np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        labels = labels.astype(np.int64)
    return pd.DataFrame(
        {
            "image_id": [f"{split}/{index}" for index in range(count)],
            "split": np.full(count, split, dtype=object),
            "label": labels,
            "height": np.full(count, height, dtype=np.int64),
            "width": np.full(count, width, dtype=np.int64),
            "channels": np.full(count, channels, dtype=np.int64),
            "dtype": np.full(count, str(images.dtype), dtype=object),
            "min_pixel": min_pixel,
            "max_pixel": max_pixel,
            "content_hash": _content_hashes(images),
        },
        columns=list(MANIFEST_COLUMNS),
    )


def build_array_manifest(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> pd.DataFrame:
    """One row per image of every split, in split order then index order.

    ``splits`` maps a split name to ``(images, labels)``: images of shape (N, H, W) or
    (N, H, W, C) (any dtype; uint8 for the datasets here), labels of shape (N,).
    """
    frames = [_split_frame(split, images, labels) for split, (images, labels) in splits.items()]
    if not frames:
        return pd.DataFrame({column: [] for column in MANIFEST_COLUMNS})
    manifest = pd.concat(frames, ignore_index=True)
    # Splits of different dtypes would otherwise leave object columns here.
    for column in ("min_pixel", "max_pixel"):
        if manifest[column].dtype == object:
            manifest[column] = manifest[column].astype(np.float64)
    return manifest


def add_derived_columns(
    manifest: pd.DataFrame,
    expected_split_counts: Mapping[str, int],
    used: pd.Series | None = None,
) -> pd.DataFrame:
    """A copy of ``manifest`` with the whole-table facts as per-row columns.

    - ``shared_across_splits``: this row's ``content_hash`` also occurs in another split
      (the same image in train and test: leakage); among the ``used`` rows only, when
      given (a quarantined file is never trained on, so it cannot leak).
    - ``split_rows``: the number of rows of this row's split.
    - ``expected_split_rows``: the expected number from ``expected_split_counts``; -1 for
      a split the mapping does not name.
    """
    out = manifest.copy()
    hashes = out["content_hash"] if used is None else out["content_hash"].where(used)
    splits_per_hash = out["split"].groupby(hashes, sort=False).transform("nunique")
    out["shared_across_splits"] = (splits_per_hash > 1).astype(bool)
    out["split_rows"] = out.groupby("split", sort=False)["split"].transform("size").astype(np.int64)
    expected = {str(split): int(count) for split, count in expected_split_counts.items()}
    out["expected_split_rows"] = out["split"].map(expected).fillna(-1).astype(np.int64)
    return out


def add_class_ratio(manifest: pd.DataFrame, accepted: pd.Series) -> pd.DataFrame:
    """A copy of ``manifest`` with ``class_ratio``: how balanced each row's class is.

    The number of accepted images of the row's class in its split, over that of the
    split's largest class (1.0 for the largest; near 1.0 everywhere when balanced).
    """
    out = manifest.copy()
    counts = out[accepted].groupby(["split", "label"]).size()
    largest = counts.groupby(level="split").max()
    keys = pd.MultiIndex.from_frame(out[["split", "label"]])
    own = counts.reindex(keys).fillna(0).to_numpy()
    out["class_ratio"] = own / largest.reindex(out["split"]).fillna(1).to_numpy()
    return out


CONFLICT_NAMES_SHOWN = 3  # other files a quarantine reason names


def mark_label_conflicts(
    manifest: pd.DataFrame, quarantined: str
) -> tuple[pd.DataFrame, list[list[dict[str, str]]]]:
    """The same image (decoded pixels: ``content_hash``) filed under two or more classes.

    Returns a copy of the file manifest (``status``, ``reason``, ``class_name`` columns)
    where every such file is ``quarantined`` with a reason naming the files of the other
    classes, and ``label_conflict`` holds the image's hash (one distinct value per
    conflict); and the conflicts, each a list of ``{"file", "class"}``. Only files not yet
    quarantined take part: a corrupt copy has no pixels to compare.
    """
    out = manifest.copy()
    candidates = out[(out["status"] != quarantined) & out["content_hash"].notna()]
    labels_per_hash = candidates.groupby("content_hash")["label"].nunique()
    conflicting = labels_per_hash[labels_per_hash > 1].index
    conflicts: list[list[dict[str, str]]] = []
    for content_hash in sorted(conflicting):
        group = candidates[candidates["content_hash"] == content_hash].sort_values("image_id")
        conflicts.append(
            [{"file": row.image_id, "class": str(row.class_name)} for row in group.itertuples()]
        )
        for row in group.itertuples():
            others = [
                f"{o.image_id} ({o.class_name})" for o in group.itertuples() if o.label != row.label
            ]
            shown = ", ".join(others[:CONFLICT_NAMES_SHOWN])
            more = len(others) - CONFLICT_NAMES_SHOWN
            shown += f" and {more} more" if more > 0 else ""
            out.loc[row.Index, ["status", "reason", "label_conflict"]] = [
                quarantined,
                f"label conflict: the same image as {shown}, filed under {row.class_name}",
                content_hash,
            ]
    return out, conflicts
