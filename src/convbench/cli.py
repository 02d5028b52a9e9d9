"""The `convbench` command: look at the settings and the registered variants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from convbench.config import ForestRun, Settings, SettingsError, load_settings
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
    for column in ("run", "dataset", "variant", "images", "configured", "runs with"):
        table.add_column(column)
    for key, spec in settings.run_specs().items():
        height, width = settings.image_size(spec.dataset)
        table.add_row(key, spec.dataset, spec.variant, f"{height}x{width}", *_budget(settings, key))
    console.print(table)
    console.print(f"tracking: {settings.env.tracking_uri}; mirror: {settings.env.mirror or '-'}")


def _budget(settings: Settings, key: str) -> tuple[str, str]:
    """(configured, effective) training budget of one run, as the profile caps it."""
    spec = settings.run_spec(key)
    if spec.kind == "images":
        run = settings.params.runs[key]
        if isinstance(run, ForestRun):
            trees = settings.effective_estimators(run)
            return f"{run.n_estimators} trees", f"{trees} trees"
    else:
        item = settings.transfer(spec.transfer or "")
        run = item.head if spec.kind == "features" else item.finetune
    epochs = settings.effective_epochs(run)
    return f"{run.epochs} epochs, batch {run.batch_size}", f"{epochs} epochs"


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
