"""Classify new images with a dataset's registered champion.

Each file is checked the way validation checks a dataset's files (decoded once with
Pillow; empty, non-image, truncated and oversized files are refused with the reason),
then prepared as the model's training inputs were: colour images decoded and resized
by the training pipeline's own function, grey ones resized to the model's size, scaled
by 1/255 when training scaled them.

An image far from what the model trained on (a colour picture for a model of grey
images, a size or shape far from its input's) is still classified, with a warning: the
answer may not mean much.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image

from convbench.data.images import ImageCheck, ImagePolicy, inspect_image
from convbench.tracking.model_registry import ModelInput, champion, load_registered, model_name

# A prediction image may be any size a person has at hand, but never a decompression bomb.
POLICY = ImagePolicy(convert_to_rgb=True, min_side=1)
SURE = 0.75  # the decks' cut between "pretty sure" and "somewhat sure"
# Far from the training images: a side over this many times the model's input (or under
# 1/this), a width:height this many times the input's, colour where the model saw grey:
# more than COLOUR_SHARE of the pixels with channels over COLOUR_SPREAD apart.
FAR_SIDE = 4.0
FAR_ASPECT = 2.0
COLOUR_SPREAD = 32
COLOUR_SHARE = 0.02
COLOUR_CHECK_SIDE = 256  # colour is judged on a copy at most this large


class PredictionInputError(ValueError):
    """A file given to predict cannot be used; the message names it and why."""


class NoChampionError(LookupError):
    """The dataset has no registered champion yet."""


@dataclass(frozen=True)
class Prediction:
    path: Path
    label: str
    score: float  # the probability of `label`
    unlike_training: str | None = None  # how the image differs from the training images

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


def read_image(path: Path) -> tuple[bytes, ImageCheck]:
    """The file's bytes and what decoding them found; refused with the reason if unusable."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PredictionInputError(f"{path}: cannot read: {error.strerror}") from None
    check = inspect_image(data, POLICY)
    if not check.accepted:
        raise PredictionInputError(f"{path}: {check.reason}")
    return data, check


def image_array(path: Path, inputs: ModelInput) -> np.ndarray:
    """One file as the model's input: (H, W, C) float32, or a flat vector."""
    return model_input_array(*read_image(path), inputs)


def model_input_array(data: bytes, check: ImageCheck, inputs: ModelInput) -> np.ndarray:
    """A decoded file (``read_image``) as the model's input."""
    size = (inputs.height, inputs.width)
    if inputs.channels == 3:
        # The accepted bytes are an RGB JPEG: decode and resize as training did.
        from convbench.inputs.tfdata import decode_and_resize

        pixels = decode_and_resize(check.data or data, size).numpy().astype(np.float32)
    else:
        with Image.open(io.BytesIO(check.data or data)) as image:
            grey = image.convert("L").resize(size[::-1], Image.BILINEAR)
            pixels = np.asarray(grey, dtype=np.float32)[..., np.newaxis]
    if inputs.normalize:
        pixels /= 255.0
    return pixels.reshape(-1) if inputs.flatten else pixels


def unlike_training(data: bytes, check: ImageCheck, inputs: ModelInput) -> str | None:
    """How far the image is from the model's training images, or None if it fits."""
    assert check.width is not None and check.height is not None
    width, height = check.width, check.height
    found = []
    if inputs.channels == 1 and is_colour(data):
        found.append("a colour image")
    sides = (width / inputs.width, height / inputs.height)
    if max(sides) > FAR_SIDE or min(sides) < 1 / FAR_SIDE:
        found.append(f"{width}x{height} pixels")
    aspect = (width / height) / (inputs.width / inputs.height)
    if max(aspect, 1 / aspect) > FAR_ASPECT:
        found.append(f"{width / height:.2f}:1 width:height")
    if not found:
        return None
    kind = "grey" if inputs.channels == 1 else "colour"
    return (
        f"{' and '.join(found)}, far from the {inputs.width}x{inputs.height} {kind} images "
        "the model was trained on: its answer may not mean much"
    )


def is_colour(data: bytes) -> bool:
    """Whether the picture's channels differ noticeably (an RGB file that is grey is not)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
            return False
        image.draft("RGB", (COLOUR_CHECK_SIDE, COLOUR_CHECK_SIDE))  # JPEG: decode smaller
        image.thumbnail((COLOUR_CHECK_SIDE, COLOUR_CHECK_SIDE))
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return bool((spread > COLOUR_SPREAD).mean() > COLOUR_SHARE)


def predict_images(champion_model: Champion, paths: list[Path]) -> list[Prediction]:
    """Each image's answer, and how it differs from the training images where it does."""
    from convbench.evaluation.scoring import class_probabilities

    inputs = champion_model.inputs
    images = [read_image(path) for path in paths]
    batch = np.stack([model_input_array(data, check, inputs) for data, check in images])
    model = champion_model.model
    if inputs.flatten:
        proba = np.asarray(model.predict_proba(batch), dtype=np.float64)
    else:
        proba = class_probabilities(model.predict(batch, verbose=0))
    best = proba.argmax(axis=1)
    return [
        Prediction(
            path,
            inputs.classes[index],
            float(proba[i, index]),
            unlike_training(*images[i], inputs),
        )
        for i, (path, index) in enumerate(zip(paths, best, strict=True))
    ]
