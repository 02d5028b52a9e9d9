"""TFRecord shards of encoded images: a handful of files per split instead of thousands.

DVC hashes and moves every file of an output, so tens of thousands of loose JPEGs make
it slow; a split here is a few shards of up to ``shard_size`` images. Each record is a
``tf.train.Example`` with the encoded RGB JPEG, its integer label and its image id
(the archive member path), so a batch can always be traced back to its files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.string),
}


def _example(image: bytes, label: int, image_id: str) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id.encode()])),
    }
    # deterministic: map fields in key order, so equal images give equal bytes (and hashes)
    # in every process, not in an order that changes with the hash seed.
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def write_shards(
    out_dir: Path,
    split: str,
    images: Sequence[bytes],
    labels: Sequence[int],
    ids: Sequence[str],
    shard_size: int,
) -> list[dict]:
    """Write ``split-00000-of-0000N.tfrecord`` files in the given order; describe each."""
    count = len(images)
    total = max(1, -(-count // shard_size))
    described = []
    for index in range(total):
        name = f"{split}-{index:05d}-of-{total:05d}.tfrecord"
        chunk = range(index * shard_size, min(count, (index + 1) * shard_size))
        with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
            for i in chunk:
                writer.write(_example(images[i], labels[i], ids[i]))
        described.append(
            {
                "file": name,
                "count": len(chunk),
                "sha256": hashlib.sha256((out_dir / name).read_bytes()).hexdigest(),
            }
        )
    return described


def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(encoded image, label, id) of one serialised record."""
    example = tf.io.parse_single_example(record, FEATURES)
    return example["image"], example["label"], example["id"]


def read_ids_and_labels(files: Sequence[Path]) -> tuple[list[str], list[int]]:
    """Every record's id and label, in order (for tests and the report, not training)."""
    ids, labels = [], []
    for record in tf.data.TFRecordDataset([str(f) for f in files]):
        _, label, image_id = parse(record)
        ids.append(image_id.numpy().decode())
        labels.append(int(label))
    return ids, labels
