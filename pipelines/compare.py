"""DVC stage `compare`: every run in one table, charts and an MLflow comparison run."""

from pathlib import Path
from typing import Annotated

import typer

from convbench.reporting.compare import InputFolders, compare
from convbench.settings import load_settings
from convbench.stages.entry import run_stage


def main(
    runs_dir: Path,
    out_dir: Path,
    raw_dir: Annotated[Path | None, typer.Option(help="downloaded data sets")] = None,
    weights_dir: Annotated[Path | None, typer.Option(help="downloaded weights")] = None,
    params: Path = Path("params.yaml"),
) -> None:
    compare(load_settings(params), runs_dir, out_dir, InputFolders(raw_dir, weights_dir))
    print((out_dir / "comparison.md").read_text())


if __name__ == "__main__":
    run_stage(main)
