"""Benchmark: convbench's input pipeline against the decks' ImageDataGenerator, side by side.

Same machine, same run, same images (the 2,000 training images of
cats_and_dogs_filtered.zip), same augmentation (the decks': rotation 40, shifts 0.2,
shear 0.2, zoom 0.2, horizontal flip, nearest fill), same size (150x150), same batch
(200), pixels /255:

- training input: images/s of decode + resize + augment + batch, on the first pass
  (nothing cached) and in steady state (mean of the next passes);
- feature extraction: images/s of the VGG16 base (no top) over the un-augmented images,
  the decks' ``predict`` on a ``flow_from_directory`` generator against convbench's
  shard pipeline. The ImageNet weights are not obtainable here and the speed does not
  depend on the weights' values, so both sides use the same randomly initialised base.

Each side runs in its own process (fresh caches, its own peak memory).

    .venv/bin/python -m bench.input_pipeline --mirror ../shared/datasets
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

SIZE = (150, 150)
BATCH = 200
PASSES = 4  # the first, then steady state
ZIP = "cats_and_dogs_filtered.zip"
ROOT = "cats_and_dogs_filtered/train"
DECKS = {
    "rotation_range": 40,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _passes(step: Any, batches: int, images: int, passes: int) -> dict[str, Any]:
    """Time ``passes`` full passes of ``batches`` calls to ``step``."""
    seconds = []
    for _ in range(passes):
        started = time.perf_counter()
        for _ in range(batches):
            step()
        seconds.append(time.perf_counter() - started)
    steady = seconds[1:] or seconds
    return {
        "images": images,
        "pass_seconds": seconds,
        "first_pass_images_per_second": images / seconds[0],
        "steady_images_per_second": images * len(steady) / sum(steady),
    }


def idg_training(folder: Path) -> dict[str, Any]:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    flow = ImageDataGenerator(rescale=1.0 / 255, **DECKS).flow_from_directory(
        str(folder), target_size=SIZE, batch_size=BATCH, class_mode="binary", seed=0
    )
    return _passes(lambda: next(flow), len(flow), flow.samples, PASSES)


def _shards(zip_path: Path, out: Path) -> tuple[list[Path], int]:
    """The same training images as TFRecord shards (what the prepare stage writes)."""
    from convbench.data.archives import iter_members
    from convbench.data.shards import write_shards

    images, labels, ids = [], [], []
    for member, data in iter_members(zip_path):
        if member.name.startswith(ROOT + "/") and member.name.endswith(".jpg"):
            images.append(data)
            labels.append(int("/dogs/" in member.name))
            ids.append(member.name)
    shards = write_shards(out, "train", images, labels, ids, 1000)
    return [out / s["file"] for s in shards], len(images)


def tfdata_training(zip_path: Path, work: Path) -> dict[str, Any]:
    from convbench.inputs.pipeline import PipelineOptions
    from convbench.inputs.tfdata import shard_dataset
    from convbench.settings import Augmentation

    files, count = _shards(zip_path, work)
    augmentation = Augmentation(
        rotation=40, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2, horizontal_flip=True
    )
    options = PipelineOptions(BATCH, normalize=True, shuffle=True, augmentation=augmentation)
    dataset = shard_dataset(files, count, SIZE, options)
    epochs: list[Any] = []

    def step() -> None:
        # One batch; a new epoch (a new iterator, as Keras makes) when one ends.
        if not epochs:
            epochs.append(iter(dataset))
        try:
            next(epochs[-1])
        except StopIteration:
            epochs.append(iter(dataset))
            next(epochs[-1])

    return _passes(step, -(-count // BATCH), count, PASSES)


def _vgg16() -> Any:
    from convbench.models.bases import build_base

    return build_base("VGG16", (*SIZE, 3), None)


FEATURE_BATCH = 20
FEATURE_IMAGES = 200  # per timed round; VGG16 is slow on CPU
ROUNDS = 3  # the median round is reported: this host's speed wanders by a third


def _rounds(extract: Any) -> dict[str, Any]:
    """Time ``ROUNDS`` calls of ``extract()`` (each returns the images it did); median rate."""
    rates = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        done = extract()
        rates.append(done / (time.perf_counter() - started))
    return {
        "images": FEATURE_IMAGES,
        "rounds_images_per_second": rates,
        "images_per_second": sorted(rates)[len(rates) // 2],
    }


def idg_features(folder: Path) -> dict[str, Any]:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    base = _vgg16()
    flow = ImageDataGenerator(rescale=1.0 / 255).flow_from_directory(
        str(folder), target_size=SIZE, batch_size=FEATURE_BATCH, class_mode=None, shuffle=False
    )
    base.predict(flow, steps=1, verbose=0)  # warm-up: tracing is not extraction
    steps = FEATURE_IMAGES // FEATURE_BATCH
    return _rounds(lambda: len(base.predict(flow, steps=steps, verbose=0)))


def tfdata_features(zip_path: Path, work: Path) -> dict[str, Any]:
    """As the extract_features stage does it: the shard pipeline, the base batch by batch."""
    from convbench.inputs.pipeline import PipelineOptions
    from convbench.inputs.tfdata import shard_dataset

    files, count = _shards(zip_path, work)
    base = _vgg16()
    options = PipelineOptions(FEATURE_BATCH, normalize=True, cache=False)
    dataset = shard_dataset(files, count, SIZE, options).take(FEATURE_IMAGES // FEATURE_BATCH)
    for images, _ in dataset.take(1):
        base.predict_on_batch(images)  # warm-up, as for the baseline
    return _rounds(lambda: sum(len(base.predict_on_batch(images)) for images, _ in dataset))


CASES = ("idg_training", "tfdata_training", "idg_features", "tfdata_features")


def run_case(case: str, mirror: Path, work: Path) -> dict[str, Any]:
    zip_path = mirror / ZIP
    if case.startswith("idg"):
        from convbench.data.archives import safe_extract

        safe_extract(zip_path, work / "extracted")
        folder = work / "extracted" / ROOT
        result = idg_training(folder) if case == "idg_training" else idg_features(folder)
    else:
        work.mkdir(parents=True, exist_ok=True)
        run = tfdata_training if case == "tfdata_training" else tfdata_features
        result = run(zip_path, work)
    return {**result, "peak_rss_mb": _peak_rss_mb()}


app = typer.Typer(add_completion=False)


@app.command()
def main(
    mirror: Annotated[
        Path,
        typer.Option(envvar="CONVBENCH_MIRROR", help="folder holding cats_and_dogs_filtered.zip"),
    ] = Path("../shared/datasets"),
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench/results.json"),
    case: Annotated[str | None, typer.Option(help="run one case in this process")] = None,
) -> None:
    """Run every case in its own process and write the results and bench/RESULTS.md."""
    mirror = mirror.resolve()
    if not (mirror / ZIP).is_file():
        raise typer.BadParameter(f"{mirror / ZIP} not found: point --mirror at the dataset mirror")
    if case:
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(run_case(case, mirror, Path(work))))
        return
    results: dict[str, Any] = {}
    for name in CASES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "bench.input_pipeline", "--mirror", str(mirror), "--case", name],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {results[name]}", file=sys.stderr)
    results["machine"] = _machine()
    out.write_text(json.dumps(results, indent=2) + "\n")
    from bench.report import write_results

    write_results(results, out.with_name("RESULTS.md"))


def _machine() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from convbench.training.devices import describe_device

    return {
        **describe_device(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


if __name__ == "__main__":
    app()
