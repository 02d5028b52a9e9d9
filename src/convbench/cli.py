"""The `convbench` command: look at the settings and the registered variants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from convbench.config import ForestRun, SettingsError, load_settings
from convbench.variants import VARIANTS

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()

ParamsOption = Annotated[Path, typer.Option(help="the params file")]


@app.command()
def check(params: ParamsOption = Path("params.yaml")) -> None:
    """Validate params.yaml and show what the current profile will run."""
    try:
        settings = load_settings(params)
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    table = Table(title=f"profile {settings.params.profile}: {settings.profile.description}")
    for column in ("run", "dataset", "variant", "configured", "runs with"):
        table.add_column(column)
    for key, run in settings.params.runs.items():
        if isinstance(run, ForestRun):
            configured = f"{run.n_estimators} trees"
            effective = f"{settings.effective_estimators(run)} trees"
        else:
            configured = f"{run.epochs} epochs, batch {run.batch_size}"
            effective = f"{settings.effective_epochs(run)} epochs"
        table.add_row(key, run.dataset, run.variant, configured, effective)
    console.print(table)
    console.print(f"tracking: {settings.env.tracking_uri}; mirror: {settings.env.mirror or '-'}")


@app.command()
def variants() -> None:
    """List the registered model variants."""
    table = Table()
    for column in ("variant", "kind", "architecture"):
        table.add_column(column)
    for variant in VARIANTS.values():
        table.add_row(variant.name, variant.kind, variant.description)
    console.print(table)


if __name__ == "__main__":
    app()
