"""`convbench predict` as a person runs it: its answers on stdout, nothing from the libraries,
and a warning on stderr for each image far from what the model was trained on."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convbench.data.images import inspect_image
from convbench.predict import POLICY, unlike_training
from convbench.tracking.model_registry import ModelInput
from tests.conftest import ROOT

GREY_28 = ModelInput(28, 28, 1, True, [str(i) for i in range(10)], False)


@pytest.fixture
def champion(tmp_path: Path) -> str:
    """A tiny untrained grey 28x28 Keras model as the mnist champion; the store's URI."""
    import keras
    import mlflow
    from mlflow.tracking import MlflowClient

    from convbench.tracking.model_registry import model_name, register_version
    from convbench.tracking.training_run import log_model

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as run:
            logged = log_model(model, np.zeros((2, 28, 28, 1), np.float32))
        client = MlflowClient(uri)
        tags = {"convbench.run": "mnist-tiny", **GREY_28.as_tags()}
        name = model_name("mnist")
        version = register_version(client, name, run.info.run_id, logged.model_uri, tags)
        client.set_registered_model_alias(name, "champion", version.version)
    finally:
        mlflow.set_tracking_uri(None)
    return uri


def _grey(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def test_predict_prints_only_its_answers_and_warns_of_unlike_images(
    champion: str, tmp_path: Path
) -> None:
    images = {
        "digit.png": Image.fromarray(_grey(28, 28)),  # what the model knows
        "grey_as_rgb.jpg": Image.fromarray(np.stack([_grey(56, 56)] * 3, axis=-1)),
        "photo.jpg": Image.fromarray(
            np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8)
        ),
        "huge.png": Image.fromarray(_grey(200, 150)),  # over 4x the input's sides
        "strip.png": Image.fromarray(_grey(28, 84)),  # three times as wide as high
    }
    for name, image in images.items():
        image.save(tmp_path / name)
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TF_"))}
    # Even a shell that asks TensorFlow for everything gets only the answers.
    env |= {"MLFLOW_TRACKING_URI": champion, "TF_CPP_MIN_LOG_LEVEL": "0", "COLUMNS": "80"}
    command = [sys.executable, "-m", "convbench.cli", "predict", "--dataset", "mnist"]
    result = subprocess.run(
        [*command, "--params", str(params), *images],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr

    out = result.stdout.splitlines()
    assert out[0] == "convbench-mnist v1 (mnist-tiny), alias 'champion':"
    assert len(out) == 1 + len(images), result.stdout
    for line, name in zip(out[1:], images, strict=True):
        assert line.startswith(f"{name}: ") and ". With a score of " in line, line

    warnings = result.stderr.splitlines()
    assert [line.split(":")[1].strip() for line in warnings] == [
        "photo.jpg",
        "huge.png",
        "strip.png",
    ], result.stderr
    photo, huge, strip = warnings
    assert photo.startswith("warning: photo.jpg: a colour image, far from the 28x28 grey images")
    assert huge.startswith("warning: huge.png: 150x200 pixels, far from")
    assert strip.startswith("warning: strip.png: 3.00:1 width:height, far from")


def test_how_far_an_image_is_from_the_training_images(tmp_path: Path) -> None:
    def far(image: Image.Image, inputs: ModelInput = GREY_28, name: str = "i.png") -> str | None:
        image.save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        return unlike_training(data, inspect_image(data, POLICY), inputs)

    assert far(Image.fromarray(_grey(112, 112))) is None  # 4x: still near
    assert far(Image.fromarray(_grey(7, 10))) is None  # a quarter: still near
    assert "5x10 pixels" in (far(Image.fromarray(_grey(10, 5))) or "")  # one side too small
    grey_jpeg = Image.fromarray(np.stack([_grey(40, 40)] * 3, axis=-1))
    assert far(grey_jpeg, name="g.jpg") is None  # RGB, but grey: JPEG's noise is not colour
    red_digit = np.stack([_grey(40, 40)] * 3, axis=-1)
    red_digit[10:30, 18:22] = (230, 20, 20)  # a red stroke on grey: colour
    assert "a colour image" in (far(Image.fromarray(red_digit), name="r.jpg") or "")
    colour = ModelInput(150, 150, 3, True, ["cat", "dog"], False)
    assert far(Image.fromarray(red_digit).resize((150, 100)), colour) is None  # colour model
    both = far(Image.fromarray(red_digit).resize((1000, 200)))
    assert both is not None and both.startswith("a colour image and 1000x200 pixels and 5.00:1")
