"""The `convbench` command: check the settings, list the variants, classify images."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from convbench.core.redact import redact
from convbench.models.variants import VARIANTS
from convbench.ops.dataset_add import dataset_app
from convbench.ops.services import Stack
from convbench.settings import RunSpec, SettingsError, load_settings
from convbench.stages.entry import stage_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def console() -> Console:
    """A console as wide as the terminal (or COLUMNS) is when it prints, not at import."""
    return Console()


ParamsOption = Annotated[Path, typer.Option(help="the params file")]


@app.command()
def check(params: ParamsOption = Path("params.yaml")) -> None:
    """Validate params.yaml and show what the current profile will run."""
    try:
        settings = stage_settings(params, VARIANTS)
    except SettingsError as error:
        console().print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    table = Table(title=f"profile {settings.params.profile}: {settings.profile.description}")
    for column in ("run", "dataset", "variant", "images", "configured", "runs with"):
        table.add_column(column)
    for key, spec in settings.run_specs().items():
        height, width = spec.image_size
        table.add_row(key, spec.dataset, spec.variant, f"{height}x{width}", *_budget(spec))
    console().print(table)
    env = settings.env
    # Printed for a person to check, so without the credentials a URI may carry.
    console().print(
        f"tracking: {redact(env.tracking_uri)}; mirror: {redact(env.mirror or '-')}",
        highlight=False,
    )


def _budget(spec: RunSpec) -> tuple[str, str]:
    """(configured, effective) training budget of one run, as the profile caps it."""
    configured = spec.params or {}
    if spec.family == "sklearn":
        return f"{configured['n_estimators']} trees", f"{spec.n_estimators} trees"
    assert spec.training is not None
    training = spec.training
    return f"{training.epochs} epochs, batch {training.batch_size}", f"{spec.epochs} epochs"


@app.command()
def variants() -> None:
    """List the registered model variants."""
    table = Table()
    for column in ("variant", "kind", "architecture"):
        table.add_column(column)
    for variant in VARIANTS.values():
        table.add_row(variant.name, variant.kind, variant.description)
    console().print(table)


# What predict silences unless --verbose: TensorFlow's C++ log (oneDNN, CPU features, CUDA
# probing: read once, at import), MLflow's log and download bars; and these Python loggers.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
QUIET_LOGGERS = ("tensorflow", "absl", "keras", "mlflow", "alembic", "h5py")


@contextlib.contextmanager
def libraries_quiet(verbose: bool) -> Iterator[None]:
    """Libraries' logs and Python warnings silenced for what runs inside (not if verbose).

    Entered before TensorFlow, Keras or MLflow is imported: they read the environment then.
    """
    if verbose:
        yield
        return
    saved_env = {name: os.environ.get(name) for name in QUIET_ENV}
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    saved_levels = [logger.level for logger in loggers]
    os.environ.update(QUIET_ENV)
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), native_stderr_silenced():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, saved_levels, strict=True):
            logger.setLevel(level)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """What C++ libraries write to file descriptor 2 goes to /dev/null, while Python's
    ``sys.stderr`` still reaches the terminal: TensorFlow logs its oneDNN notice through
    absl before absl is set up, where TF_CPP_MIN_LOG_LEVEL does not reach (CPUs with
    AVX-512). Nothing changes where stderr is not descriptor 2 (a test's capture)."""
    try:
        if sys.stderr.fileno() != 2:
            raise OSError
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(
        os.dup(terminal), "w", buffering=1, encoding=python_stderr.encoding, errors="replace"
    )
    try:
        yield
    finally:
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(terminal, 2)
        os.close(terminal)


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="image files (JPEG, PNG, ...)")],
    dataset: Annotated[str, typer.Option(help="whose champion classifies them")],
    params: ParamsOption = Path("params.yaml"),
    verbose: Annotated[
        bool, typer.Option("--verbose", help="show TensorFlow's, Keras' and MLflow's logs")
    ] = False,
) -> None:
    """Classify images with the dataset's registered champion (MLFLOW_TRACKING_URI).

    The answers go to stdout; a warning for each image far from the model's training
    images (colour for a grey model, a very different size or shape) goes to stderr.
    """
    errors = Console(stderr=True)
    with libraries_quiet(verbose):  # before anything imports TensorFlow or MLflow
        from convbench.models.saving import UnsafeModelError
        from convbench.predict import (
            NoChampionError,
            PredictionInputError,
            load_champion,
            predict_images,
        )

        try:
            settings = load_settings(params)
            settings.dataset(dataset)
            alias = settings.params.registry.alias
            champion = load_champion(dataset, settings.env.tracking_uri, alias)
            predictions = predict_images(champion, images)
        except (SettingsError, NoChampionError, PredictionInputError, UnsafeModelError) as error:
            errors.print(str(error), style="red", markup=False, highlight=False)
            raise typer.Exit(2) from None
    typer.echo(f"{champion.name} v{champion.version} ({champion.run}), alias {alias!r}:")
    for prediction in predictions:
        if prediction.unlike_training:
            typer.echo(f"warning: {prediction.path}: {prediction.unlike_training}", err=True)
        typer.echo(f"{prediction.path}: {prediction.sentence()}")


app.add_typer(dataset_app, name="dataset")  # convbench dataset add NAME PATH_OR_URL

services_app = typer.Typer(
    no_args_is_help=True, help="The local MLflow server, Prefect server and workers (make ui)."
)
app.add_typer(services_app, name="services")


class Store(StrEnum):
    sqlite = "sqlite"
    postgres = "postgres"


@services_app.callback()
def services_stack(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="bind address; anything but 127.0.0.1 exposes the servers")
    ] = "127.0.0.1",
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port")] = 5000,
    prefect_port: Annotated[int, typer.Option(help="Prefect server port")] = 4200,
    db: Annotated[
        Store,
        typer.Option(help="the servers' store: SQLite files, or PostgreSQL under .services/"),
    ] = Store.sqlite,
    postgres_port: Annotated[int, typer.Option(help="PostgreSQL port (db=postgres)")] = 5433,
) -> None:
    """Where the servers listen, for every `services` command."""
    from convbench.settings import find_project_root

    root = find_project_root(Path.cwd())
    ctx.obj = Stack(root, host, mlflow_port, prefect_port, db=db.value, postgres_port=postgres_port)


@services_app.command("up")
def services_up(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(help="workers on the local pool")] = 1,
    gpu_workers: Annotated[
        int, typer.Option(help="workers on the GPU pool on this machine (one run at a time each)")
    ] = 0,
) -> None:
    """Start the MLflow server, the Prefect server and workers; print their URLs."""
    from convbench.ops import services

    stack: Stack = ctx.obj
    planned = [(f"local-{i}", services.LOCAL_POOL, None) for i in range(1, workers + 1)]
    planned += [(f"gpu-{i}", services.GPU_POOL, 1) for i in range(1, gpu_workers + 1)]
    try:
        started = services.up(stack, planned)
    except services.ServiceError as error:
        console().print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(1) from None
    for running in started:
        where = running.url or f"pid {running.pid}"
        typer.echo(f"{running.name:<16} {where:<28} log {running.log}")
    typer.echo(
        f"\nMLflow UI   {stack.mlflow_url}\nPrefect UI  {stack.prefect_url}\n\n"
        'Point a shell at them:  eval "$(.venv/bin/convbench services env)"\n'
        "Then deploy the flows:  make deploy"
    )


@services_app.command("down")
def services_down(ctx: typer.Context) -> None:
    """Stop what `services up` started."""
    from convbench.ops import services

    stopped = services.stop(ctx.obj.state)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status(ctx: typer.Context) -> None:
    """What `services up` started, and whether each is still running."""
    from convbench.ops import services

    state = services.read_state(ctx.obj.state)
    for running in state:
        alive = "running" if services.alive(running.pid) else "stopped"
        typer.echo(f"{running.name:<16} {alive:<8} {running.url or ''}")
    if not state:
        typer.echo("nothing started (make ui)")


@services_app.command("env")
def services_env(ctx: typer.Context) -> None:
    """Shell exports that point the prefect CLI, flows and stages at the servers."""
    for key, value in ctx.obj.client_env().items():
        typer.echo(f"export {key}={value}")


@services_app.command("deploy")
def services_deploy(ctx: typer.Context) -> None:
    """Create the work pools and automations; deploy flows/prefect.yaml to the Prefect server."""
    from convbench.ops import services

    try:
        output = services.deploy(ctx.obj)
    except services.ServiceError as error:
        console().print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(1) from None
    typer.echo(output)


if __name__ == "__main__":
    app()
