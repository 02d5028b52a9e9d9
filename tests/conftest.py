"""Shared fixtures: tiny data made here, and the real-MNIST mirror when it is present."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from convbench.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("CONVBENCH_TEST_MIRROR", ROOT.parent / "shared" / "datasets"))

needs_mirror = pytest.mark.skipif(
    not (SHARED_DATASETS / "train-images-idx3-ubyte.gz").exists(),
    reason=f"the dataset mirror {SHARED_DATASETS} is absent",
)


@pytest.fixture(autouse=True)
def _no_op_determinism_left_behind() -> Iterator[None]:
    """A training turns TensorFlow's op determinism on for its process (a stage's, in
    use); the next test in this process starts without it, as a fresh stage would."""
    yield
    if "tensorflow" in sys.modules:
        from tensorflow.python.framework import config

        config.disable_op_determinism()


@pytest.fixture
def ci_settings(tmp_path: Path) -> Settings:
    """The project's params with the ci profile, tracking into a store under tmp_path."""
    settings = load_settings(
        ROOT / "params.yaml", environ={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    )
    params = settings.params.model_copy(update={"profile": "ci"})
    env = settings.env.model_copy(update={"project_root": tmp_path})
    return settings.model_copy(update={"params": params, "env": env})


def tiny_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 'digits': a bright bar whose position is the label, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 4:24, 2 + 2 * label : 4 + 2 * label] = 255
    return images, labels.astype(np.int64)


def prepared_tiny_digits(out_dir: Path, train: int, validation: int, test: int) -> Path:
    """Tiny digits saved as a prepared MNIST-like dataset (28x28x1 uint8, 10 classes)."""
    from convbench.data.prepare import save_prepared

    counts = {"train": (train, 0), "validation": (validation, 1), "test": (test, 2)}
    splits = {}
    for split, (count, seed) in counts.items():
        images, labels = tiny_digits(count, seed=seed)
        splits[split] = (images[..., np.newaxis], labels)
    save_prepared(splits, out_dir, list(range(10)))
    return out_dir


def drawn_image(label: int, index: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A Pillow-drawn picture: class 0 a bright ellipse, class 1 a dark square, on noise."""
    rng = np.random.default_rng(index * 7 + label)
    width, height = size
    background = rng.integers(90, 160, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    x, y = int(rng.integers(2, width // 3)), int(rng.integers(2, height // 3))
    box = (x, y, x + width // 2, y + height // 2)
    if label == 0:
        draw.ellipse(box, fill=(250, 240, int(rng.integers(0, 80))))
    else:
        draw.rectangle(box, fill=(10, int(rng.integers(0, 60)), 30))
    return image


def encoded(image: Image.Image, fmt: str = "JPEG", mode: str | None = None) -> bytes:
    out = io.BytesIO()
    (image.convert(mode) if mode else image).save(out, format=fmt, quality=90)
    return out.getvalue()


def folder_archive(
    path: Path,
    root: str = "cats_and_dogs_filtered",
    counts: dict[str, int] | None = None,
    classes: tuple[str, ...] = ("cats", "dogs"),
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A zip laid out like cats_and_dogs_filtered.zip: root/<split>/<class>/<name>.jpg."""
    counts = counts or {"train": 16, "validation": 8}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in counts.items():
            for label, folder in enumerate(classes):
                for i in range(count // len(classes)):
                    name = f"{root}/{split}/{folder}/{folder[:-1]}.{split}.{i}.jpg"
                    index = i + (1000 if split != "train" else 0)
                    archive.writestr(name, encoded(drawn_image(label, index)))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def with_dataset(settings: Settings, name: str, **changes: object) -> Settings:
    """``settings`` with some fields of dataset ``name`` changed (tiny test data)."""
    datasets = dict(settings.params.datasets)
    datasets[name] = datasets[name].model_copy(update=changes)
    return settings.model_copy(
        update={"params": settings.params.model_copy(update={"datasets": datasets})}
    )


def tiny_cats_settings(settings: Settings, size: int = 32, **checks: object) -> Settings:
    """cats_and_dogs at ``size`` px on a tiny archive: no published counts to expect."""
    from convbench.settings import FileChecks

    shape = settings.params.datasets["cats_and_dogs"].image
    return with_dataset(
        settings,
        "cats_and_dogs",
        split_counts=None,
        image=shape.model_copy(update={"height": size, "width": size}),
        checks=FileChecks(**{"max_bad_fraction": 0.3, "min_side": 32, **checks}),
    )


def prepared_tiny_cats(settings: Settings, root: Path) -> Path:
    """A tiny Cats vs Dogs archive, validated and prepared (shards) under ``root``."""
    from convbench.stages.prepare import prepare_dataset
    from convbench.stages.validate import validate_dataset

    raw = root / "raw"
    folder_archive(raw / "cats_and_dogs_filtered.zip")
    validate_dataset(settings, "cats_and_dogs", raw, root / "validated", root / "report")
    prepare_dataset(
        settings,
        "cats_and_dogs",
        raw,
        root / "validated",
        root / "report" / "summary.json",
        root / "prepared",
    )
    return root / "prepared"
