"""No secret in what convbench shows; saved models load only in Keras safe mode."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convbench.core.redact import RedactingFormatter, redact
from convbench.settings import Settings
from convbench.tracking import store as tracking
from tests.conftest import ROOT

SECRET = "s3cr3t-Value"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"http://user:{SECRET}@mlflow:5000", "http://***@mlflow:5000"),
        (f"https://{SECRET}@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        (f"https://u:p@ss{SECRET}@host/a", "https://***@host/a"),  # an unescaped "@" too
        (f"https://m/x.bin?token={SECRET}&v=2", "https://m/x.bin?token=***&v=2"),
        (
            f"s3://b/k?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}",
            "s3://b/k?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        (
            f"url: /data/x.bin?api_key={SECRET} (Caused by",
            "url: /data/x.bin?api_key=*** (Caused by",
        ),
    ],
)
def test_redact_hides_userinfo_and_secret_query_values(raw: str, shown: str) -> None:
    assert redact(raw) == shown


@pytest.mark.parametrize(
    "plain",
    [
        "http://127.0.0.1:5000/#/experiments/1",
        "sqlite:////work/main/mlflow.db",
        "/srv/mirror",
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
        "https://h/p?page=2&sort=name",
        "git@github.com:org/repo.git",
    ],
)
def test_redact_leaves_what_holds_no_secret(plain: str) -> None:
    assert redact(plain) == plain


def test_log_lines_are_redacted_messages_arguments_and_tracebacks_alike() -> None:
    logger = logging.getLogger("test_security.formatter")
    formatter = RedactingFormatter("%(levelname)s %(message)s")
    try:
        raise ConnectionError(f"GET https://u:{SECRET}@m/x?token={SECRET} failed")
    except ConnectionError:
        record = logger.makeRecord(
            logger.name,
            logging.WARNING,
            __file__,
            1,
            "retrying %s",
            (f"?sig={SECRET}",),
            sys.exc_info(),
        )
    text = formatter.format(record)
    assert SECRET not in text
    assert "retrying ?sig=***" in text and "https://***@m/x?token=***" in text


def secret_env(settings: Settings) -> Settings:
    env = settings.env.model_copy(
        update={
            "tracking_uri": f"https://ml:{SECRET}@mlflow.example:5000",
            "mirror": f"https://u:{SECRET}@mirror.example/data?token={SECRET}",
            "dvc_remote": f"https://u:{SECRET}@dvc.example/store",
        }
    )
    return settings.model_copy(update={"env": env})


def test_mlflow_tags_hold_no_connection_setting(
    ci_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    tags = tracking.base_tags(secret_env(ci_settings), "train@mnist-cnn", "0" * 64)
    assert tags and not [(k, v) for k, v in tags.items() if SECRET in f"{k}{v}"]


def test_convbench_check_prints_the_uris_without_their_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from convbench.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://ml:{SECRET}@mlflow.example:5000")
    monkeypatch.setenv("CONVBENCH_MIRROR", f"https://mirror.example/data?token={SECRET}")
    result = CliRunner().invoke(app, ["check", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "https://***@mlflow.example:5000" in result.output
    assert "https://mirror.example/data?token=***" in result.output


def test_a_failed_git_or_dvc_command_does_not_show_the_remote_credentials(
    tmp_path: Path,
) -> None:
    from convbench.ops.workspace import WorkspaceError, git

    with socket.socket() as probe:  # bound then closed: connecting is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = f"http://runner:{SECRET}@127.0.0.1:{port}/convbench.git?token={SECRET}"
    with pytest.raises(WorkspaceError) as failed:
        git(tmp_path, "ls-remote", remote)
    assert SECRET not in str(failed.value)
    assert f"http://***@127.0.0.1:{port}/convbench.git?token=***" in str(failed.value)


def test_stages_keep_mlflow_from_printing_a_tracking_uri_with_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from convbench.core.logs import setup_logging

    suppress = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv(suppress, "")  # restored (removed) after the test
    monkeypatch.delenv(suppress)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    setup_logging()
    assert suppress not in os.environ  # nothing to hide: MLflow may print its run links
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://ml:{SECRET}@mlflow.example")
    setup_logging()
    assert os.environ[suppress] == "true"


# Keras safe mode: a model that would run Python code from its file is never loaded.


def lambda_model() -> object:
    import keras

    return keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])


def test_a_saved_model_with_python_code_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    import keras

    from convbench.models.saving import KERAS_MODEL, UnsafeModelError, load_model

    (tmp_path / "plain").mkdir()
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(
        tmp_path / "plain" / KERAS_MODEL
    )
    assert isinstance(load_model(tmp_path / "plain"), keras.Model)  # safe mode loads layers

    folder = tmp_path / "run"
    folder.mkdir()
    lambda_model().save(folder / KERAS_MODEL)
    with pytest.raises(UnsafeModelError) as refused:
        load_model(folder)
    message = str(refused.value)
    assert message.startswith(f"{folder / KERAS_MODEL}: not loaded: Keras safe mode refused")
    assert "Lambda" in message and "safe_mode=False" not in message


def test_a_registered_model_with_python_code_is_refused(tmp_path: Path) -> None:
    import mlflow.keras

    from convbench.models.saving import UnsafeModelError
    from convbench.tracking.model_registry import load_registered

    logged = tmp_path / "mlflow-model"
    # Requirements given: inferring them would load the model in a subprocess (slow).
    mlflow.keras.save_model(lambda_model(), str(logged), pip_requirements=["keras"])
    with pytest.raises(UnsafeModelError, match=f"^{logged}: not loaded: Keras safe mode"):
        load_registered(str(logged), tags={})
