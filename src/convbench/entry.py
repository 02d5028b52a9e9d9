"""Running a stage entry point: logging set up, known failures as one clear message."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import typer

from convbench.logs import setup_logging

log = logging.getLogger("convbench")


# sysexits' EX_UNAVAILABLE: an input (data set, weights) cannot be had here. The flow
# skips what depends on it instead of failing.
EXIT_UNAVAILABLE = 69


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """Failures meaning "this input is not available here", not "something is broken"."""
    from convbench.download import SourceUnavailableError, WeightsUnavailableError

    return (SourceUnavailableError, WeightsUnavailableError)


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures whose message already says what is wrong: no traceback needed."""
    from convbench.archives import ArchiveFormatError, UnsafeArchiveError
    from convbench.cifar import CifarFormatError
    from convbench.config import SettingsError
    from convbench.devices import RuntimeConfigError
    from convbench.download import DownloadError
    from convbench.idx import IdxFormatError
    from convbench.safe_models import UnsafeModelError
    from convbench.stages import ValidationNotPassedError
    from convbench.tracking import TrackingStoreError
    from convbench.training import TrainingDivergedError
    from convbench.validation import DataValidationError

    return (
        SettingsError,
        DownloadError,
        IdxFormatError,
        CifarFormatError,
        ArchiveFormatError,
        UnsafeArchiveError,
        DataValidationError,
        ValidationNotPassedError,
        RuntimeConfigError,
        TrackingStoreError,
        TrainingDivergedError,
        UnsafeModelError,
    )


def run_stage(main: Callable[..., Any]) -> None:
    """``typer.run`` for a stage: its expected failures print as an error and exit 1, an
    unavailable input with ``EXIT_UNAVAILABLE``."""
    setup_logging()

    @functools.wraps(main)  # keeps the signature Typer builds the command line from
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except unavailable_errors() as error:
            log.error("%s", error)
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        except expected_errors() as error:
            log.error("%s", error)
            raise typer.Exit(1) from None

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(guarded)
    app()  # Typer reports usage errors itself, with their own exit codes
