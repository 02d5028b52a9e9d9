"""Running a stage entry point: settings loaded, logging set up, known failures as one
clear message.

Every ``pipelines/<stage>.py`` is ``run_stage(convbench.stages.<stage>.main)``: Typer
parses the command line from ``main``'s signature, ``main`` makes the one call into the
stage function that flows and tests call too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from convbench.core.errors import ConvbenchError, InputUnavailableError
from convbench.core.logs import setup_logging
from convbench.data.sources import SOURCES
from convbench.models.catalog import VARIANTS
from convbench.settings import KnownNames, Settings, load_settings

log = logging.getLogger("convbench")


# sysexits' EX_UNAVAILABLE: an input (data set, weights) cannot be had here. The flow
# skips what depends on it instead of failing.
EXIT_UNAVAILABLE = 69


def known_names() -> KnownNames:
    """The source and variant names params.yaml may use (their registries live below)."""
    return KnownNames(
        sources=frozenset(SOURCES), variants={name: v.kind for name, v in VARIANTS.items()}
    )


def stage_settings(params: Path) -> Settings:
    """``params`` loaded with every name checked: what each stage's ``main`` works from."""
    return load_settings(params, known=known_names())


def run_stage(main: Callable[..., Any]) -> None:
    """``typer.run`` for a stage: its expected failures print as an error and exit 1, an
    unavailable input with ``EXIT_UNAVAILABLE``."""
    setup_logging()

    @functools.wraps(main)  # keeps the signature Typer builds the command line from
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except InputUnavailableError as error:
            log.error("%s", error)
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        except ConvbenchError as error:  # its message already says what is wrong
            log.error("%s", error)
            raise typer.Exit(1) from None

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(guarded)
    app()  # Typer reports usage errors itself, with their own exit codes
