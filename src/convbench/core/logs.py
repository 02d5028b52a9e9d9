"""Logging for stages and flows: readable in a terminal, a DVC log and the Prefect UI."""

from __future__ import annotations

import logging
import os

from convbench.core.redact import RedactingFormatter, has_secret


def setup_logging(level: int = logging.INFO) -> None:
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides the stage's own log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # MLflow prints "View run ... at: <tracking URI>" after each run, credentials and all.
    if has_secret(os.environ.get("MLFLOW_TRACKING_URI", "")):
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Redacted as formatted, so a library's record or a traceback cannot show a secret either.
    handler = logging.StreamHandler()
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    )
    logging.basicConfig(level=level, handlers=[handler])
    # JAX's xla_bridge says at INFO that it found no TPU library, on every start.
    noisy_ones = ("great_expectations", "alembic", "urllib3", "matplotlib", "PIL", "jax._src")
    for noisy in noisy_ones:
        logging.getLogger(noisy).setLevel(logging.WARNING)
