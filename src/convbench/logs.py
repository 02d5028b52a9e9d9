"""Logging for stages and flows: readable in a terminal, a DVC log and the Prefect UI."""

from __future__ import annotations

import logging
import os


def setup_logging(level: int = logging.INFO) -> None:
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides the stage's own log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("great_expectations", "alembic", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
