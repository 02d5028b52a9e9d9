"""Classify new images with a dataset's registered champion.

Each file is checked the way validation checks a dataset's files (decoded once with
Pillow; empty, non-image, truncated and oversized files are refused with the reason),
then prepared as the model's training inputs were: colour images decoded and resized
by the training pipeline's own function, grey ones resized to the model's size, scaled
by 1/255 when training scaled them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image

from convbench.data.images import ImagePolicy, inspect_image
from convbench.tracking.model_registry import ModelInput, champion, load_registered, model_name

# A prediction image may be any size a person has at hand, but never a decompression bomb.
POLICY = ImagePolicy(convert_to_rgb=True, min_side=1)
SURE = 0.75  # the decks' cut between "pretty sure" and "somewhat sure"


class PredictionInputError(ValueError):
    """A file given to predict cannot be used; the message names it and why."""


class NoChampionError(LookupError):
    """The dataset has no registered champion yet."""


@dataclass(frozen=True)
class Prediction:
    path: Path
    label: str
    score: float  # the probability of `label`

    def sentence(self) -> str:
        sureness = "pretty sure" if self.score >= SURE else "somewhat sure"
        return f"{self.label}. With a score of {self.score:.6f}, we're {sureness}."


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    run: str
    model: Any
    inputs: ModelInput


def load_champion(dataset: str, tracking_uri: str, alias: str) -> Champion:
    client = MlflowClient(tracking_uri=tracking_uri)
    name = model_name(dataset)
    version = champion(client, name, alias)
    if version is None:
        raise NoChampionError(
            f"{name} has no {alias!r} model yet: run the pipeline (make run) so the "
            "register stage can promote one"
        )
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    model = load_registered(f"models:/{name}@{alias}", version.tags)
    return Champion(
        name,
        version.version,
        version.tags.get("convbench.run", "?"),
        model,
        ModelInput.from_tags(version.tags),
    )


def image_array(path: Path, inputs: ModelInput) -> np.ndarray:
    """One file as the model's input: (H, W, C) float32, or a flat vector."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PredictionInputError(f"{path}: cannot read: {error.strerror}") from None
    check = inspect_image(data, POLICY)
    if not check.accepted:
        raise PredictionInputError(f"{path}: {check.reason}")
    size = (inputs.height, inputs.width)
    if inputs.channels == 3:
        # The accepted bytes are an RGB JPEG: decode and resize as training did.
        from convbench.inputs.pipeline import decode_and_resize

        pixels = decode_and_resize(check.data or data, size).numpy().astype(np.float32)
    else:
        with Image.open(io.BytesIO(check.data or data)) as image:
            grey = image.convert("L").resize(size[::-1], Image.BILINEAR)
            pixels = np.asarray(grey, dtype=np.float32)[..., np.newaxis]
    if inputs.normalize:
        pixels /= 255.0
    return pixels.reshape(-1) if inputs.flatten else pixels


def predict_images(champion_model: Champion, paths: list[Path]) -> list[Prediction]:
    from convbench.evaluation.scoring import class_probabilities

    inputs = champion_model.inputs
    batch = np.stack([image_array(path, inputs) for path in paths])
    model = champion_model.model
    if inputs.flatten:
        proba = np.asarray(model.predict_proba(batch), dtype=np.float64)
    else:
        proba = class_probabilities(model.predict(batch, verbose=0))
    best = proba.argmax(axis=1)
    return [
        Prediction(path, inputs.classes[index], float(proba[i, index]))
        for i, (path, index) in enumerate(zip(paths, best, strict=True))
    ]
