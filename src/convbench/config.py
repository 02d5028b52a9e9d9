"""Settings: ``params.yaml`` parsed and validated in one place, plus the environment.

Every stage, flow and test gets a ``Settings`` object from :func:`load_settings` and
hands the parts down; no other module reads ``params.yaml`` or environment variables.
An unknown key, a wrong type or an unknown dataset/variant name stops with an error
naming the key and the allowed values.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from convbench.sources import SOURCES
from convbench.variants import VARIANTS

PROFILE_NAMES = ("quick", "full", "ci")


class SettingsError(ValueError):
    """params.yaml (or an override) is not valid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Profile(_Strict):
    """How far a profile scales the decks' settings down (``null`` = not at all)."""

    description: str
    max_epochs: int | None = Field(default=None, ge=1)
    train_limit: int | None = Field(default=None, ge=1)
    validation_limit: int | None = Field(default=None, ge=1)
    test_limit: int | None = Field(default=None, ge=1)
    max_estimators: int | None = Field(default=None, ge=1)


class ImageShape(_Strict):
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: Literal[1, 3]


class Dataset(_Strict):
    source: str
    format: Literal["idx"]
    classes: list[int | str] = Field(min_length=2)
    image: ImageShape
    split_counts: dict[str, int]
    validation_fraction: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _known_source(self) -> Dataset:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; allowed: {sorted(SOURCES)}")
        return self


class EarlyStopping(_Strict):
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(default=3, ge=0)
    restore_best_weights: bool = True


class KerasRun(_Strict):
    """A Keras variant trained on one dataset (the decks' settings by default)."""

    dataset: str
    variant: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    optimizer: Literal["adam", "sgd", "rmsprop", "adadelta"] = "adam"
    learning_rate: float = Field(default=0.001, gt=0)
    normalize: bool = True  # pixels /255 or raw 0-255: the decks' on/off experiment
    early_stopping: EarlyStopping | None = None


class ForestRun(_Strict):
    """The scikit-learn random-forest baseline on flattened pixels."""

    dataset: str
    variant: Literal["random_forest"]
    n_estimators: int = Field(ge=1)
    max_depth: int | None = Field(default=None, ge=1)
    normalize: bool = True


def _run_kind(value: Any) -> str:
    variant = value.get("variant") if isinstance(value, dict) else getattr(value, "variant", None)
    return "forest" if variant == "random_forest" else "keras"


# The variant decides the run's schema, so errors name the run's own keys only.
Run = Annotated[
    Annotated[KerasRun, Tag("keras")] | Annotated[ForestRun, Tag("forest")],
    Discriminator(_run_kind),
]
_UNION_TAGS = {"keras", "forest"}


class Params(_Strict):
    """The whole of params.yaml."""

    profile: Literal["quick", "full", "ci"]
    seed: int
    profiles: dict[Literal["quick", "full", "ci"], Profile]
    datasets: dict[str, Dataset]
    runs: dict[str, Run]

    @model_validator(mode="after")
    def _cross_check(self) -> Params:
        missing = [p for p in PROFILE_NAMES if p not in self.profiles]
        if missing:
            raise ValueError(f"profiles: missing {missing}; every one of {list(PROFILE_NAMES)}")
        for key, run in self.runs.items():
            if run.dataset not in self.datasets:
                raise ValueError(
                    f"runs.{key}.dataset: unknown dataset {run.dataset!r}; "
                    f"allowed: {sorted(self.datasets)}"
                )
            if run.variant not in VARIANTS:
                raise ValueError(
                    f"runs.{key}.variant: unknown variant {run.variant!r}; "
                    f"allowed: {sorted(VARIANTS)}"
                )
            kind = VARIANTS[run.variant].kind
            expected = ForestRun if kind == "sklearn" else KerasRun
            if not isinstance(run, expected):
                raise ValueError(f"runs.{key}: variant {run.variant!r} needs {expected.__name__}")
        return self


class Environment(_Strict):
    """What comes from the environment rather than params.yaml (never a tunable)."""

    project_root: Path
    mirror: str | None = None
    tracking_uri: str
    dvc_stage: str | None = None
    dvc_exp_name: str | None = None


class Settings(_Strict):
    params: Params
    env: Environment

    @property
    def profile(self) -> Profile:
        return self.params.profiles[self.params.profile]

    def run(self, key: str) -> KerasRun | ForestRun:
        try:
            return self.params.runs[key]
        except KeyError:
            raise SettingsError(
                f"runs: unknown run {key!r}; allowed: {sorted(self.params.runs)}"
            ) from None

    def dataset(self, name: str) -> Dataset:
        try:
            return self.params.datasets[name]
        except KeyError:
            raise SettingsError(
                f"datasets: unknown dataset {name!r}; allowed: {sorted(self.params.datasets)}"
            ) from None

    def run_fingerprint(self, key: str) -> str:
        """A hash of everything that decides run ``key``'s result (its stage's params)."""
        scope = {
            "run": self.run(key).model_dump(mode="json"),
            "profile": self.profile.model_dump(mode="json"),
            "seed": self.params.seed,
        }
        return fingerprint(scope)

    def effective_epochs(self, run: KerasRun) -> int:
        cap = self.profile.max_epochs
        return min(run.epochs, cap) if cap else run.epochs

    def effective_estimators(self, run: ForestRun) -> int:
        cap = self.profile.max_estimators
        return min(run.n_estimators, cap) if cap else run.n_estimators


def fingerprint(data: Any) -> str:
    """sha256 of ``data`` as canonical JSON: equal settings, equal hash."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def find_project_root(start: Path) -> Path:
    """The folder holding params.yaml; from a DVC temp workspace, the real project.

    ``dvc exp run --temp`` and queued experiments run in ``<root>/.dvc/tmp/exps/<tmp>``:
    tracking must land in the project's own store, not in that throwaway copy.
    """
    start = start.resolve()
    parts = start.parts
    for index in range(len(parts) - 3):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    for folder in (start, *start.parents):
        if (folder / "params.yaml").exists():
            return folder
    return start


def default_tracking_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


def read_environment(environ: dict[str, str] | None = None, cwd: Path | None = None) -> Environment:
    environ = dict(os.environ if environ is None else environ)
    root = find_project_root(cwd or Path.cwd())
    mirror = environ.get("CONVBENCH_MIRROR") or None
    if mirror and "://" not in mirror:
        mirror = str(Path(mirror).expanduser().resolve())
    return Environment(
        project_root=root,
        mirror=mirror,
        tracking_uri=environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root),
        dvc_stage=environ.get("DVC_STAGE") or None,
        dvc_exp_name=environ.get("DVC_EXP_NAME") or None,
    )


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"] if str(part) not in _UNION_TAGS)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "literal_error":
            message = f"got {item['input']!r}; {message}"
        lines.append(f"  {key or '(top level)'}: {message}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], origin: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise SettingsError(f"{origin} is not valid:\n{_describe(error)}") from None


def load_params(path: Path) -> Params:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return parse_params(raw, origin=str(path))


def load_settings(
    path: Path = Path("params.yaml"), environ: dict[str, str] | None = None
) -> Settings:
    return Settings(
        params=load_params(path), env=read_environment(environ, cwd=path.resolve().parent)
    )
