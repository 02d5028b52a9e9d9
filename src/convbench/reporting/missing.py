"""Why a run has no results: not selected, or its data set or weights are not here.

The comparison lists every configured run; one without results gets a status saying
why and, when an input is missing, how to provide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convbench.settings import RunSpec, Settings, Source

NOT_RUN = "not run"
NOT_SELECTED = "not selected"


@dataclass(frozen=True)
class InputFolders:
    """Where the download stages put data sets and weights (to explain missing runs)."""

    raw: Path | None = None
    weights: Path | None = None


@dataclass(frozen=True)
class Selection:
    """The inputs a selection (a fan-out's) fetched: a run that needs any other was not
    selected, and says so rather than that its input is unavailable."""

    datasets: frozenset[str]
    weights: frozenset[str]  # pretrained weights, by their `pretrained` name

    def includes(self, settings: Settings, spec: RunSpec) -> bool:
        if spec.dataset not in self.datasets:
            return False
        return spec.transfer is None or settings.transfer(spec.transfer).base in self.weights


def _missing_files(source: Source, folder: Path | None) -> list[str]:
    if folder is None:
        return []
    if source.path is not None:  # a local folder: copied whole by its download stage
        return [] if folder.is_dir() else [source.path]
    return [f.name for f in source.files if not (folder / f.name).is_file()]


def missing_input(
    settings: Settings, spec: RunSpec, inputs: InputFolders
) -> tuple[str, str] | None:
    """(short reason, how to provide it) when the run's data or weights are not here."""
    dataset = settings.dataset(spec.dataset)
    source = dataset.source
    missing = _missing_files(source, inputs.raw / spec.dataset if inputs.raw else None)
    if missing:
        return (
            f"{spec.dataset} data unavailable",
            f"{', '.join(missing)} not downloaded; {source.help}, then rerun",
        )
    if spec.transfer is not None:
        base = settings.params.pretrained[settings.transfer(spec.transfer).base]
        weights = base.source
        missing = _missing_files(
            weights,
            inputs.weights / settings.transfer(spec.transfer).base if inputs.weights else None,
        )
        if missing:
            return (
                "ImageNet weights unavailable",
                f"{', '.join(missing)} not downloaded; {weights.help}, then rerun",
            )
    return None


def not_run(
    settings: Settings, spec: RunSpec, inputs: InputFolders, selection: Selection | None
) -> tuple[str, str]:
    """(status, how to provide what is missing) of a run without results."""
    if selection is not None and not selection.includes(settings, spec):
        return f"{NOT_RUN}: {NOT_SELECTED}", ""
    missing = missing_input(settings, spec, inputs)
    return (f"{NOT_RUN}: {missing[0]}", missing[1]) if missing else (NOT_RUN, "")
