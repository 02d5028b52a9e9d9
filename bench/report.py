"""Write bench/RESULTS.md from the benchmarks' JSON files: ratios against the Keras baseline.

.venv/bin/python -m bench.report      # from the JSON files as they are, nothing rerun
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

TARGETS = {"first pass": 3.0, "steady state": 10.0}
COMMAND = "CONVBENCH_MIRROR=../shared/datasets make bench"


def _row(name: str, baseline: float, ours: float, target: float | None) -> str:
    ratio = ours / baseline
    verdict = "" if target is None else (" (met)" if ratio >= target else " (NOT met)")
    aim = f"≥ {target:.0f}×{verdict}" if target else "—"
    return f"| {name} | {baseline:,.0f} | {ours:,.0f} | **{ratio:.1f}×** | {aim} |"


def write_results(results: dict[str, Any], path: Path) -> None:
    idg, ours = results["idg_training"], results["tfdata_training"]
    idg_f, ours_f = results["idg_features"], results["tfdata_features"]
    machine = results["machine"]
    lines = [
        "# Benchmark: the training input pipeline and VGG16 feature extraction",
        "",
        f"Rerun: `{COMMAND}` (writes `bench/results.json` and this file).",
        "",
        f"Machine: {machine['device_name']}; Python {machine['python']}, TensorFlow "
        f"{machine['tensorflow']}, Keras {machine['keras']}; {machine['date']}.",
        "",
        "Both sides in the same run, each in its own process, on the same 2,000 training",
        "images of `cats_and_dogs_filtered.zip`: 150x150, batch 200, pixels /255 and the",
        "decks' augmentation (rotation 40, shifts 0.2, shear 0.2, zoom 0.2, horizontal flip,",
        "nearest fill). Baseline: the decks' `ImageDataGenerator(...).flow_from_directory(...)`",
        "over the extracted JPEGs. convbench: `convbench.inputs.tfdata.shard_dataset` over",
        "the TFRecord shards the prepare stage writes (parallel decode and resize, cache of",
        "decoded images, batched augmentation in one warp, prefetch).",
        "",
        "| images/s | ImageDataGenerator | convbench | ratio | target |",
        "|---|---:|---:|---:|---|",
        _row(
            "training input, first pass",
            idg["first_pass_images_per_second"],
            ours["first_pass_images_per_second"],
            TARGETS["first pass"],
        ),
        _row(
            f"training input, steady state (passes 2-{len(ours['pass_seconds'])})",
            idg["steady_images_per_second"],
            ours["steady_images_per_second"],
            TARGETS["steady state"],
        ),
        _row(
            f"VGG16 feature extraction (median of 3 rounds of {ours_f['images']}, batch 20)",
            idg_f["images_per_second"],
            ours_f["images_per_second"],
            None,
        ),
        "",
        "| peak memory (MB) | ImageDataGenerator | convbench |",
        "|---|---:|---:|",
        f"| training input | {idg['peak_rss_mb']:,.0f} | {ours['peak_rss_mb']:,.0f} |",
        f"| feature extraction | {idg_f['peak_rss_mb']:,.0f} | {ours_f['peak_rss_mb']:,.0f} |",
        "",
        "Seconds per pass (training input): ImageDataGenerator "
        + ", ".join(f"{s:.1f}" for s in idg["pass_seconds"])
        + "; convbench "
        + ", ".join(f"{s:.2f}" for s in ours["pass_seconds"])
        + ".",
        "",
        "Feature extraction runs a randomly initialised VGG16 base on both sides: the",
        "ImageNet weights cannot be obtained on these machines, and the cost of the",
        "convolutions does not depend on the weights' values. There the base's compute",
        "dominates, so the input pipeline changes little: the decks' lesson that computing",
        "the features is what takes the time.",
        "",
    ]
    # The other benchmarks' figures, each measured on its own (see each module).
    for name in ("quick_run", "overhead", "noop", "training", "tracking_load"):
        figures = path.with_name(f"{name}.json")
        if figures.exists():
            module = importlib.import_module(f"bench.{name}")
            lines += module.section(json.loads(figures.read_text()))
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    # `python -m bench.report`: RESULTS.md again from the JSON files, nothing rerun.
    here = Path(__file__).resolve().parent
    write_results(json.loads((here / "results.json").read_text()), here / "RESULTS.md")
