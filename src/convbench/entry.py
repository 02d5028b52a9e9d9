"""Running a stage entry point: logging set up, known failures as one clear message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import typer

from convbench.logs import setup_logging

log = logging.getLogger("convbench")


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures whose message already says what is wrong: no traceback needed."""
    from convbench.config import SettingsError
    from convbench.download import DownloadError
    from convbench.idx import IdxFormatError
    from convbench.stages import ValidationNotPassedError
    from convbench.validation import DataValidationError

    return (
        SettingsError,
        DownloadError,
        IdxFormatError,
        DataValidationError,
        ValidationNotPassedError,
    )


def run_stage(main: Callable[..., Any]) -> None:
    """``typer.run`` for a stage: its expected failures print as an error and exit 1."""
    setup_logging()
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(main)
    try:
        app(standalone_mode=False)
    except expected_errors() as error:
        log.error("%s", error)
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as error:  # click usage errors have their own exit codes
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
