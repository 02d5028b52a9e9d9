"""A run resolved once: everything its stages need, as one small frozen spec.

A run is an entry of ``runs`` or one of a transfer entry's two runs (the head on stored
features, then fine-tuning). :func:`resolve_runs` answers, in one place, what the rest of
the code would otherwise look up again: which training settings apply, the effective
epochs under the profile's cap, the image size, whether pixels are scaled by 1/255, and
the fingerprint that decides whether a result is current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from convbench.core.hashing import fingerprint
from convbench.settings.params import Params, image_size, transfer_run_keys
from convbench.settings.schema import Augmentation, ForestRun, KerasRun, Training, Transfer

Kind = Literal["images", "features", "finetune"]


@dataclass(frozen=True)
class RunSpec:
    """One row of the comparison, resolved: a run of ``runs`` or one of a transfer's two."""

    key: str
    dataset: str
    variant: str
    kind: Kind  # trains on images, on stored features, or fine-tunes a pretrained base
    transfer: str | None = None  # the transfer entry it belongs to
    family: Literal["keras", "sklearn"] = "keras"
    image_size: tuple[int, int] = (0, 0)  # (height, width) the model sees
    channels: int = 0
    normalize: bool = True  # pixels /255; stored features never (they already are)
    training: Training | None = None  # how a Keras model is fitted (None: a forest)
    augmentation: Augmentation | None = None
    epochs: int | None = None  # under the profile's cap
    n_estimators: int | None = None  # under the profile's cap (forests)
    max_depth: int | None = None
    seed: int = 0
    profile: str = ""
    params: dict[str, Any] | None = None  # the run's settings as MLflow records them
    fingerprint: str = ""

    @property
    def batch_size(self) -> int:
        assert self.training is not None, f"{self.key} is not a Keras run"
        return self.training.batch_size

    @property
    def takes_images(self) -> bool:
        """Its model is a whole image classifier (a head on stored features is not)."""
        return self.kind != "features"


def capped(value: int, cap: int | None) -> int:
    return min(value, cap) if cap else value


def _fingerprint(params: Params, entry: Any, dataset: str) -> str:
    """A hash of everything that decides the run's result (its stages' params)."""
    # Defaults left out, as DVC sees params.yaml: a new optional knob at its default
    # does not turn every earlier result stale.
    scope = {
        "run": entry.model_dump(mode="json", exclude_defaults=True),
        "image": params.datasets[dataset].image.model_dump(mode="json"),
        "profile": params.profiles[params.profile].model_dump(mode="json", exclude_defaults=True),
        "seed": params.seed,
    }
    # Mixed precision, XLA, op determinism and the backend's kernels change the numbers;
    # where it runs and how memory is taken do not (a GPU runner and a CPU runner make
    # the same run).
    numerics = params.runtime.model_dump(
        mode="json",
        include={"backend", "mixed_precision", "xla", "deterministic"},
        exclude_defaults=True,
    )
    if numerics:
        scope["runtime"] = numerics
    return fingerprint(scope)


def _keras_params(dataset: str, variant: str, training: Training, normalize: bool) -> KerasRun:
    """A transfer step's settings in the shape of a ``runs`` entry (what MLflow records)."""
    fields = training.model_dump(exclude={"augmentation", "trainable_from"})
    augmentation = getattr(training, "augmentation", None)
    return KerasRun(
        dataset=dataset, variant=variant, normalize=normalize, augmentation=augmentation, **fields
    )


def resolve_runs(params: Params) -> dict[str, RunSpec]:
    """Every run, in params order: ``runs`` first, then each transfer entry's two."""
    specs = {key: _resolve_run(params, key, run) for key, run in params.runs.items()}
    for key, item in params.transfer.items():
        specs |= _resolve_transfer(params, key, item)
    return specs


def _common(params: Params, dataset: str, entry: Any) -> dict[str, Any]:
    """What every run of ``dataset`` made from params entry ``entry`` shares."""
    return {
        "dataset": dataset,
        "image_size": image_size(params, dataset),
        "channels": params.datasets[dataset].image.channels,
        "fingerprint": _fingerprint(params, entry, dataset),
        "seed": params.seed,
        "profile": params.profile,
    }


def _resolve_run(params: Params, key: str, run: KerasRun | ForestRun) -> RunSpec:
    profile = params.profiles[params.profile]
    common = _common(params, run.dataset, run) | {
        "key": key,
        "variant": run.variant,
        "kind": "images",
        "normalize": run.normalize,
        "params": run.model_dump(mode="json"),
    }
    if isinstance(run, ForestRun):
        estimators = capped(run.n_estimators, profile.max_estimators)
        return RunSpec(**common, family="sklearn", n_estimators=estimators, max_depth=run.max_depth)
    epochs = capped(run.epochs, profile.max_epochs)
    return RunSpec(**common, training=run, augmentation=run.augmentation, epochs=epochs)


def _resolve_transfer(params: Params, key: str, item: Transfer) -> dict[str, RunSpec]:
    """A transfer entry's two runs: the head on stored features, then fine-tuning."""
    architecture = params.pretrained[item.base].architecture
    steps: tuple[tuple[str, Kind, Training, bool], ...] = (
        # The features are already scaled images seen through the base: no /255.
        (transfer_run_keys(key)[0], "features", item.head, False),
        (transfer_run_keys(key)[1], "finetune", item.finetune, item.preprocess == "rescale"),
    )
    specs = {}
    for run_key, kind, training, normalize in steps:
        variant = f"{architecture}_{kind}"
        recorded = _keras_params(item.dataset, variant, training, normalize)
        specs[run_key] = RunSpec(
            **_common(params, item.dataset, item),
            key=run_key,
            variant=variant,
            kind=kind,
            transfer=key,
            normalize=normalize,
            training=training,
            augmentation=getattr(training, "augmentation", None),
            epochs=capped(training.epochs, params.profiles[params.profile].max_epochs),
            params=recorded.model_dump(mode="json"),
        )
    return specs
