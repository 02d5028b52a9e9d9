"""Running a stage entry point: logging set up, known failures as one clear message."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import typer

from convbench.core.logs import setup_logging

log = logging.getLogger("convbench")


# sysexits' EX_UNAVAILABLE: an input (data set, weights) cannot be had here. The flow
# skips what depends on it instead of failing.
EXIT_UNAVAILABLE = 69


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """Failures meaning "this input is not available here", not "something is broken"."""
    from convbench.data.download import SourceUnavailableError, WeightsUnavailableError

    return (SourceUnavailableError, WeightsUnavailableError)


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures whose message already says what is wrong: no traceback needed."""
    from convbench.data.archives import ArchiveFormatError, UnsafeArchiveError
    from convbench.data.cifar import CifarFormatError
    from convbench.data.download import DownloadError
    from convbench.data.idx import IdxFormatError
    from convbench.data.validation import DataValidationError
    from convbench.models.saving import UnsafeModelError
    from convbench.settings.config import SettingsError
    from convbench.stages.data import ValidationNotPassedError
    from convbench.tracking.store import TrackingStoreError
    from convbench.training.devices import RuntimeConfigError
    from convbench.training.fit import TrainingDivergedError

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
