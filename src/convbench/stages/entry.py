"""Running a stage entry point: settings loaded, logging set up, known failures as one
clear message.

Every ``pipelines/<stage>.py`` is ``run_stage(convbench.stages.<stage>.main)``: Typer
parses the command line from ``main``'s signature, ``main`` makes the one call into the
stage function that flows and tests call too.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from convbench.core.errors import ConvbenchError, InputUnavailableError
from convbench.core.logs import setup_logging
from convbench.settings import KnownNames, Settings, load_settings

if TYPE_CHECKING:  # the catalogue is handed in: importing it would load every builder
    from convbench.models.catalog import Variant

log = logging.getLogger("convbench")


# sysexits' EX_UNAVAILABLE: an input (data set, weights) cannot be had here. The flow
# skips what depends on it instead of failing.
EXIT_UNAVAILABLE = 69


def known_names(variants: Mapping[str, Variant] | None = None) -> KnownNames:
    """The variant names params.yaml may use, when the catalogue is given.

    The stages that build models hand the catalogue in (``models.variants.VARIANTS``);
    the others leave it out, so they neither import nor depend on the model code.
    """
    return KnownNames(variants=variants)


def stage_settings(params: Path, variants: Mapping[str, Variant] | None = None) -> Settings:
    """``params`` loaded with its names checked: what each stage's ``main`` works from."""
    return load_settings(params, known=known_names(variants))


def stage_command(
    function: Callable[..., Any], variants: Mapping[str, Variant] | None = None
) -> Callable[..., None]:
    """The command line of a stage, made from its function's signature.

    Every parameter after ``settings`` becomes an argument (an option where it has a
    default), then ``--params``: the command loads the settings from that file (checking
    variant names against ``variants`` when given) and calls ``function``. Parameters typed
    ``Any`` are objects only a caller in Python can hand in (a model, say): left out.
    """
    hints = typing.get_type_hints(function)
    parameters = [
        parameter.replace(annotation=hints[parameter.name])
        for parameter in list(inspect.signature(function).parameters.values())[1:]
        if hints[parameter.name] is not Any
    ]
    params = inspect.Parameter(
        "params",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=Path("params.yaml"),
        annotation=Path,
    )

    def command(**kwargs: Any) -> None:
        function(stage_settings(kwargs.pop("params"), variants), **kwargs)

    command.__signature__ = inspect.Signature([*parameters, params])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in (*parameters, params)}
    command.__name__, command.__doc__ = function.__name__, function.__doc__
    return command


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
