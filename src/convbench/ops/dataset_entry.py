"""The params.yaml entries `dataset add` writes: the dataset, and the runs that fit it.

The settings are the decks': small grey images get the MNIST deck's MLP, CNN and LeNet-5
(and, stored as arrays, its random forest), small colour images the CIFAR-10 deck's CNN,
photos the Cats vs Dogs deck's small CNN at 150x150 (their median size if smaller); a
pretrained base (``--base``) adds the deck's transfer entry.
"""

from __future__ import annotations

import math
from typing import Any

from convbench.core.errors import ConvbenchError
from convbench.ops.dataset_survey import FolderSurvey
from convbench.ops.params_edit import flow
from convbench.settings import FileChecks, Params, VariantInfo, image_size

SMALL_SIDE = 32  # at most this (median) on both sides: small images, kept at their size
PHOTO_SIDE = 150  # the decks' size for photos
FRACTION = 0.1  # of the training split, carved (seeded, stratified) for validation and test

_ADAM = {"optimizer": "adam", "learning_rate": 0.001, "normalize": True}
_RMSPROP = {"optimizer": "rmsprop", "learning_rate": 0.001, "normalize": True}
_AUGMENT = {
    "rotation": 40,
    "width_shift": 0.2,
    "height_shift": 0.2,
    "shear": 0.2,
    "zoom": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}
_EARLY = {"monitor": "val_accuracy", "patience": 5, "restore_best_weights": True}
# The decks' runs by kind of images: variant -> settings.
GREY_RUNS: dict[str, dict[str, Any]] = {
    "mlp": {"epochs": 20, "batch_size": 128, **_ADAM, "early_stopping": _EARLY},
    "cnn": {"epochs": 20, "batch_size": 128, **_ADAM},
    "lenet5": {"epochs": 20, "batch_size": 128, **_ADAM},
}
FOREST_RUN = {"random_forest": {"n_estimators": 100, "max_depth": None, "normalize": True}}
COLOUR_RUNS = {"cifar_cnn": {"epochs": 20, "batch_size": 128, **_RMSPROP}}
PHOTO_RUNS = {"small_cnn": {"epochs": 15, "batch_size": 200, **_RMSPROP, "augmentation": _AUGMENT}}
ALL_VARIANTS = (*GREY_RUNS, *FOREST_RUN, *COLOUR_RUNS, *PHOTO_RUNS)


class EntryError(ConvbenchError, ValueError):
    """The data cannot make a dataset entry as it is; the message says why."""


def carved_fraction(train_files: int, classes: int) -> float:
    """FRACTION, or more where it would carve fewer images than classes (a stratified
    split needs one of each); refused where even a quarter would not."""
    needed = math.ceil(100 * classes / (0.9 * train_files)) / 100  # 10% may be quarantined
    if needed > 0.25:
        raise EntryError(
            f"{train_files} training images for {classes} classes: too few to carve a "
            "validation and a test image of each class; add images, or publish "
            "validation/ and test/ folders"
        )
    return max(FRACTION, needed)


def folder_roles(survey: FolderSurvey) -> dict[str, Any]:
    """Which split plays each role: published split folders, else seeded fractions."""
    train = survey.split_of("train") if survey.split_folders else "all"
    assert train is not None
    fraction = carved_fraction(sum(survey.counts[train].values()), len(survey.classes))
    roles: dict[str, Any] = {"train_split": train}
    for role in ("validation", "test"):
        published = survey.split_of(role) if survey.split_folders else None
        if published is not None:
            roles[f"{role}_split"] = published
        elif role == "test":  # its split defaults to "test": say there is none
            roles |= {"test_split": None, "test_fraction": fraction}
        else:
            roles["validation_fraction"] = fraction
    return roles


def image_shape(survey: FolderSurvey) -> tuple[int, int]:
    """Small images keep their (median) size; photos get the decks' 150x150, or less."""
    if max(survey.height, survey.width) <= SMALL_SIDE:
        return survey.height, survey.width
    return min(PHOTO_SIDE, survey.height), min(PHOTO_SIDE, survey.width)


def folder_entry(survey: FolderSurvey, source: dict[str, Any]) -> dict[str, Any]:
    """The ``datasets.<name>`` entry of an image_folders dataset."""
    height, width = image_shape(survey)
    # Small images are no mistake here: the side check lets the dataset's own size pass.
    checks = FileChecks(min_side=min(FileChecks().min_side, survey.min_side))
    return {
        "format": "image_folders",
        "source": source,
        "folders": flow({"root": survey.root, "split_folders": survey.split_folders}),
        "classes": list(survey.classes),
        # Grey or colour, folder images are decoded as RGB JPEGs: three channels.
        "image": flow({"height": height, "width": width, "channels": 3}),
        **folder_roles(survey),
        "checks": flow(checks.model_dump()),
    }


def array_entry(
    source: dict[str, Any], shape: tuple[int, int, int], classes: int, counts: dict[str, int]
) -> dict[str, Any]:
    """The ``datasets.<name>`` entry of an .npz dataset (train and test arrays)."""
    return {
        "format": "npz",
        "source": source,
        "classes": list(range(classes)),
        "image": flow(dict(zip(("height", "width", "channels"), shape, strict=True))),
        "split_counts": flow(counts),
        "validation_fraction": FRACTION,
    }


def candidate_runs(height: int, width: int, grey: bool, arrays: bool) -> dict[str, dict[str, Any]]:
    """The decks' runs for images of this (stored) size and colour: variant -> settings."""
    if max(height, width) > SMALL_SIDE:
        return dict(PHOTO_RUNS)
    if not grey:
        return dict(COLOUR_RUNS)
    # The forest reads arrays only: folder datasets are stored as JPEG shards.
    return {**GREY_RUNS, **(FOREST_RUN if arrays else {})}


def fitting_runs(
    params: Params, name: str, runs: dict[str, dict[str, Any]], variants: dict[str, VariantInfo]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The runs whose variant takes the images under every profile (keyed
    ``<name>-<variant>``), and why the others were left out."""
    kept, left_out = {}, []
    channels = params.datasets[name].image.channels
    for variant, settings in runs.items():
        reasons = []
        for profile in params.profiles:
            shape = (*image_size(params.model_copy(update={"profile": profile}), name), channels)
            reason = variants[variant].refuses(shape)
            if reason:
                reasons.append(f"{profile}: {reason}")
        if reasons:
            left_out.append(f"{variant} ({'; '.join(reasons)})")
        else:
            flowed = {k: flow(v) if isinstance(v, dict) else v for k, v in settings.items()}
            kept[f"{name}-{variant}"] = {"dataset": name, "variant": variant, **flowed}
    return kept, left_out


def transfer_entry(name: str, base: str) -> dict[str, Any]:
    """The decks' transfer learning on ``name`` from the pretrained ``base``."""
    return {
        "dataset": name,
        "base": base,
        "feature_batch_size": 20,
        "preprocess": "base",
        "head": {"epochs": 15, "batch_size": 200, "optimizer": "rmsprop", "learning_rate": 0.001},
        "finetune": {
            "epochs": 15,
            "batch_size": 200,
            "optimizer": "sgd",
            "learning_rate": 0.0001,
            "momentum": 0.9,
            "augmentation": flow(_AUGMENT),
        },
    }
