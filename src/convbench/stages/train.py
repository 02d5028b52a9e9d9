"""DVC stage ``train``: one run of ``runs`` (a variant on a dataset), tracked in MLflow.

``train_run`` is the one implementation: the DVC stage (through ``main``), the Prefect
flow (through the stage) and the tests all call it. Keras runs fit through
:mod:`convbench.stages.keras_run`, like the transfer-learning stages; the random forest
fits in one go and has no checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.data.prepare import ARRAYS, load_prepared, prepared_info
from convbench.inputs.pipeline import scaled
from convbench.models.variants import VARIANTS, build_variant
from convbench.settings import RunSpec, Settings
from convbench.stages.entry import stage_command
from convbench.tracking import training_run
from convbench.training.devices import set_seeds
from convbench.training.forest import fit_forest
from convbench.training.outputs import write_input_preview


def train_run(
    settings: Settings,
    run: str,
    prepared_dir: Path,
    model_dir: Path,
    out_dir: Path,
    verbose: int = 2,
) -> dict[str, Any]:
    """Train run ``run`` on its prepared data; write the model, metrics and history."""
    spec = settings.run_spec(run)
    if spec.kind != "images":
        raise ValueError(f"runs: {run!r} is a transfer run: its stages train it")
    if spec.family == "sklearn":  # seeded through its own random_state
        return _train_forest(settings, spec, prepared_dir, model_dir, out_dir)
    set_seeds(spec.seed)
    # Here, not at the top: a forest run needs neither Keras nor its backend.
    from convbench.stages.keras_run import train_keras

    return train_keras(settings, spec, prepared_dir, model_dir, out_dir, verbose=verbose)


def _train_forest(
    settings: Settings, spec: RunSpec, prepared_dir: Path, model_dir: Path, out_dir: Path
) -> dict[str, Any]:
    info = prepared_info(prepared_dir)
    if info.get("format", ARRAYS) != ARRAYS:
        raise ValueError(f"runs.{spec.key}: a random forest needs an array dataset")
    data = {split: load_prepared(prepared_dir, split) for split in ("train", "validation")}
    model = build_variant(spec.variant, tuple(data["train"][0].shape[1:]), len(info["classes"]))
    assert spec.n_estimators is not None
    params = {
        **(spec.params or {}),
        "effective": {"n_estimators": spec.n_estimators},
        "train_images": len(data["train"][1]),
        "validation_images": len(data["validation"][1]),
    }
    with training_run.tracked_run(
        settings, spec, info["sha256"], params, inputs_dir=prepared_dir
    ) as active:
        result = fit_forest(
            model,
            data,
            n_estimators=spec.n_estimators,
            max_depth=spec.max_depth,
            normalize=spec.normalize,
            seed=spec.seed,
        )
        trained = training_run.Trained(
            spec=spec,
            dataset_sha256=info["sha256"],
            model=model,
            result=result,
            train_images=len(data["train"][1]),
            sample=scaled(data["train"][0][:8], spec.normalize),
            details={"effective": {"n_estimators": spec.n_estimators}},
            preview=lambda path: write_input_preview(data["train"][0][:8], None, spec.key, path, 0),
        )
        return training_run.finish_run(trained, active, settings.env.runner, model_dir, out_dir)


main = stage_command(train_run, VARIANTS)
