"""DVC stage `register`: a dataset's best model into the MLflow registry, behind the gate."""

from pathlib import Path

import pandas as pd

from convbench.settings import load_settings
from convbench.stages.entry import run_stage
from convbench.tracking.model_registry import decide, write_decision


def main(
    dataset: str,
    comparison: Path,
    prepared_dir: Path,
    out: Path,
    params: Path = Path("params.yaml"),
) -> None:
    decision = decide(load_settings(params), dataset, pd.read_csv(comparison), prepared_dir)
    write_decision(decision, out)
    verdict = "promoted" if decision.promoted else "kept"
    print(f"{dataset}: {decision.run or '-'}: {verdict}: {decision.reason}")


if __name__ == "__main__":
    run_stage(main)
