"""The tf.data pipelines: augmentation changes training batches only, reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from convbench.data.shards import write_shards
from convbench.inputs.arrays import ArrayBatches
from convbench.inputs.augment import augment_batch
from convbench.inputs.pipeline import PipelineOptions
from convbench.inputs.tfdata import array_dataset, decode_and_resize, shard_dataset
from convbench.settings import Augmentation
from tests.conftest import drawn_image, encoded

DECKS = Augmentation(
    rotation=40, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2, horizontal_flip=True
)
SIZE = (32, 32)


@pytest.fixture
def shards(tmp_path: Path) -> tuple[list[Path], list[bytes], list[int]]:
    images = [encoded(drawn_image(i % 2, i)) for i in range(20)]
    labels = [i % 2 for i in range(20)]
    described = write_shards(tmp_path, "train", images, labels, [f"img{i}" for i in range(20)], 8)
    assert [d["count"] for d in described] == [8, 8, 4]
    return [tmp_path / d["file"] for d in described], images, labels


def batches(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_validation_batches_are_the_decoded_images_untouched(shards) -> None:
    files, images, labels = shards
    x, y = batches(shard_dataset(files, 20, SIZE, PipelineOptions(batch_size=6)))
    expected = np.stack([decode_and_resize(tf.constant(d), SIZE).numpy() for d in images]) / 255
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert y.tolist() == labels and x.dtype == np.float32


def test_augmentation_changes_training_batches_only(shards) -> None:
    files, _, labels = shards
    plain = PipelineOptions(batch_size=6)
    augmented = PipelineOptions(batch_size=6, augmentation=DECKS, seed=3)
    x_plain, _ = batches(shard_dataset(files, 20, SIZE, plain))
    x_aug, y_aug = batches(shard_dataset(files, 20, SIZE, augmented))
    assert y_aug.tolist() == labels  # same images, same order (no shuffle asked)
    changed = np.abs(x_aug - x_plain).reshape(20, -1).mean(axis=1)
    assert (changed > 0.01).all(), changed  # every image warped
    assert x_aug.min() >= 0 and x_aug.max() <= 1.0 + 1e-6  # still scaled pixels


def test_augmentation_is_seeded_and_new_each_epoch(shards) -> None:
    files, _, _ = shards
    options = PipelineOptions(batch_size=20, augmentation=DECKS, seed=11)
    first = shard_dataset(files, 20, SIZE, options)
    again = shard_dataset(files, 20, SIZE, options)
    epoch1, _ = batches(first)
    np.testing.assert_array_equal(epoch1, batches(again)[0])  # same seed, same draws
    epoch2, _ = batches(first)
    assert not np.allclose(epoch1, epoch2)  # a second pass draws new transforms


def test_shuffle_reorders_each_epoch_and_keeps_every_image(shards) -> None:
    files, _, _ = shards
    dataset = shard_dataset(files, 20, SIZE, PipelineOptions(batch_size=5, shuffle=True, seed=1))
    assert dataset.cardinality().numpy() == 4  # known, so Keras knows its steps
    first, second = batches(dataset)[0], batches(dataset)[0]
    key = lambda x: sorted(map(bytes, x.reshape(20, -1)))  # noqa: E731
    assert key(first) == key(second) and not np.array_equal(first, second)


def test_no_augmentation_is_the_identity_and_flip_is_an_exact_mirror() -> None:
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 255, size=(16, 12, 10, 3)).astype(np.float32))
    same = augment_batch(images, Augmentation(), tf.constant([1, 2], tf.int64))
    np.testing.assert_allclose(same.numpy(), images.numpy(), atol=1e-3)
    flipped = augment_batch(
        images, Augmentation(horizontal_flip=True), tf.constant([1, 2], tf.int64)
    )
    mirrored = [
        np.allclose(out, image[:, ::-1], atol=1e-3)
        for out, image in zip(flipped.numpy(), images.numpy(), strict=True)
    ]
    kept = [
        np.allclose(out, image, atol=1e-3)
        for out, image in zip(flipped.numpy(), images.numpy(), strict=True)
    ]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 2 <= sum(mirrored) <= 14  # about half of them


def test_array_pipeline_augments_too() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(8)
    plain, _ = batches(array_dataset(images, labels, PipelineOptions(batch_size=4)))
    warped, y = batches(array_dataset(images, labels, PipelineOptions(4, augmentation=DECKS)))
    np.testing.assert_allclose(plain, images / 255, atol=1e-6)
    assert y.tolist() == labels.tolist() and not np.allclose(plain, warped)


def test_array_batches_without_tensorflow_match_the_tf_data_pipeline() -> None:
    # What a JAX process trains on: the same scaled images as tf.data gives TensorFlow.
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(23, 6, 5, 1), dtype=np.uint8)
    labels = np.arange(23) % 3
    plain = PipelineOptions(batch_size=5)
    ours = ArrayBatches(images, labels, plain)
    assert len(ours) == 5
    x, y = (np.concatenate(parts) for parts in zip(*ours, strict=True))
    tf_x, tf_y = batches(array_dataset(images, labels, plain))
    np.testing.assert_array_equal(x, tf_x)  # float32 bit for bit, scaling included
    assert y.tolist() == tf_y.tolist() and x.dtype == np.float32


def test_array_batches_shuffle_by_seed_and_anew_each_epoch() -> None:
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    labels = np.arange(20)
    options = PipelineOptions(batch_size=6, shuffle=True, seed=4, normalize=False)

    def epoch(dataset: ArrayBatches) -> list[int]:
        return np.concatenate([y for _, y in dataset]).tolist()

    first, again = ArrayBatches(images, labels, options), ArrayBatches(images, labels, options)
    order = epoch(first)
    assert sorted(order) == list(range(20)) and order != list(range(20))
    assert epoch(again) == order  # the same seed, the same order
    first.on_epoch_end()  # what Keras calls between epochs
    assert epoch(first) != order and sorted(epoch(first)) == list(range(20))
    for x, y in first:  # images and labels stay paired
        assert x[:, 0, 0, 0].tolist() == y.tolist()
