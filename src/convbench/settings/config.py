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
import socket
from dataclasses import dataclass
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

from convbench.data.sources import SOURCES
from convbench.models.variants import VARIANTS

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
    # Longest side of resized colour images (folder datasets); null keeps the dataset's.
    image_size: int | None = Field(default=None, ge=8)


class ImageShape(_Strict):
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: Literal[1, 3]


class Folders(_Strict):
    """Where a folder dataset's images sit inside its archive."""

    root: str  # the folder holding the split (or class) folders
    split_folders: bool  # root/<split>/<class>/<file>, or root/<class>/<file> (one split, "all")


class FileChecks(_Strict):
    """What validation accepts of a folder dataset's image files."""

    convert_to_rgb: bool = True  # CMYK, grayscale, palette, alpha: convert, or quarantine
    max_pixels: int = Field(default=50_000_000, ge=1)  # larger images are refused undecoded
    min_side: int = Field(default=32, ge=1)
    max_bad_fraction: float = Field(default=0.02, ge=0, le=1)  # more fails the stage
    min_class_ratio: float = Field(default=0.8, ge=0, le=1)  # smallest / largest class


class Dataset(_Strict):
    source: str
    # idx: MNIST's files; cifar10_python: CIFAR-10's pickled batches; image_folders: an
    # archive of class folders of image files (Cats vs Dogs).
    format: Literal["idx", "cifar10_python", "image_folders"]
    classes: list[int | str] = Field(min_length=2)
    # The images as stored (idx, cifar10_python), or the size they are resized to.
    image: ImageShape
    split_counts: dict[str, int] | None = None  # what validation expects of the source
    # Which published split plays each role; a role with no split is carved, seeded and
    # stratified, out of the training split by its fraction.
    train_split: str = "train"
    validation_split: str | None = None
    validation_fraction: float | None = Field(default=None, gt=0, lt=1)
    test_split: str | None = "test"
    test_fraction: float | None = Field(default=None, gt=0, lt=1)
    folders: Folders | None = None
    checks: FileChecks | None = None
    shard_size: int = Field(default=1000, ge=1)  # images per TFRecord shard (folder datasets)

    @model_validator(mode="after")
    def _consistent(self) -> Dataset:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; allowed: {sorted(SOURCES)}")
        for role in ("validation", "test"):
            split, fraction = getattr(self, f"{role}_split"), getattr(self, f"{role}_fraction")
            if (split is None) == (fraction is None):
                raise ValueError(f"give exactly one of {role}_split and {role}_fraction")
        if (self.format == "image_folders") != (self.folders is not None):
            raise ValueError("folders: required for format image_folders, and only for it")
        if self.checks is not None and self.format != "image_folders":
            raise ValueError("checks: only for format image_folders")
        return self

    @property
    def file_checks(self) -> FileChecks:
        return self.checks or FileChecks()


class EarlyStopping(_Strict):
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(default=3, ge=0)
    restore_best_weights: bool = True


class Augmentation(_Strict):
    """Random transforms of training batches, as ImageDataGenerator's arguments mean them."""

    rotation: float = Field(default=0.0, ge=0, le=180)  # degrees, either way
    width_shift: float = Field(default=0.0, ge=0, lt=1)  # fraction of the width
    height_shift: float = Field(default=0.0, ge=0, lt=1)  # fraction of the height
    shear: float = Field(default=0.0, ge=0, lt=90)  # degrees (ImageDataGenerator's unit)
    zoom: float = Field(default=0.0, ge=0, lt=1)  # each axis scaled by 1 +- zoom
    horizontal_flip: bool = False
    fill_mode: Literal["nearest", "constant", "reflect", "wrap"] = "nearest"


class Training(_Strict):
    """How a Keras model is fitted."""

    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    optimizer: Literal["adam", "sgd", "rmsprop", "adadelta"] = "adam"
    learning_rate: float = Field(default=0.001, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)  # sgd and rmsprop only
    # Evaluate an exponential moving average of the weights (Keras' `use_ema`): smooths
    # the epoch-to-epoch swings of small, augmented data sets. None: the last weights.
    ema_momentum: float | None = Field(default=None, gt=0, lt=1)
    early_stopping: EarlyStopping | None = None


class KerasRun(Training):
    """A Keras variant trained on one dataset's images (the decks' settings by default)."""

    dataset: str
    variant: str
    normalize: bool = True  # pixels /255 or raw 0-255: the decks' on/off experiment
    augmentation: Augmentation | None = None  # training batches only


class FineTuning(Training):
    """The second step of transfer learning: the base's last block trained with the head."""

    augmentation: Augmentation | None = None
    trainable_from: str = "block5_conv1"  # this layer of the base and those after it train


class Transfer(_Strict):
    """Transfer learning on one dataset: features once, a head on them, then fine-tuning.

    Makes two runs: ``<key>_features`` (variant ``<architecture>_features``, the head
    trained on the stored features) and ``<key>_finetune`` (``<architecture>_finetune``).
    """

    dataset: str
    base: str  # a key of `pretrained`
    feature_batch_size: int = Field(default=20, ge=1)  # the one pass of the frozen base
    normalize: bool = True
    head: Training
    finetune: FineTuning


class Pretrained(_Strict):
    """A pretrained convolutional base and the source of its weights."""

    source: str
    architecture: Literal["vgg16"]

    @model_validator(mode="after")
    def _known_source(self) -> Pretrained:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; allowed: {sorted(SOURCES)}")
        return self


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


class Runtime(_Strict):
    """How training uses the machine it lands on; the GPU-only knobs are ignored on CPUs.

    One params file serves a mixed fleet: GPU runners apply mixed precision and XLA,
    CPU runners train in float32 as before.
    """

    device: Literal["auto", "cpu", "gpu"] = "auto"  # gpu: fail when none is visible
    memory_growth: bool = True  # take GPU memory as needed, not all of it at start
    mixed_precision: Literal["none", "bf16", "fp16"] = "none"
    xla: Literal["auto"] | bool = "auto"  # Keras' jit_compile; auto: XLA on GPUs only
    # TensorFlow's op determinism: the same numbers on every rerun on GPUs too (on CPUs
    # the seeded runs already repeat exactly). Keras runs no XLA under it: GPU speed.
    deterministic: bool = True

    @model_validator(mode="after")
    def _xla_needs_nondeterminism(self) -> Runtime:
        if self.deterministic and self.xla is True:
            raise ValueError(
                "xla: true needs deterministic: false (Keras compiles no XLA under "
                "TensorFlow's op determinism)"
            )
        return self


class Registry(_Strict):
    """The MLflow model registry gate: who may hold the alias (``champion``)."""

    alias: str = Field(default="champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    # Per dataset; a best run below its minimum is registered but never promoted.
    min_test_accuracy: dict[str, float] = Field(default_factory=dict)


class Params(_Strict):
    """The whole of params.yaml."""

    profile: Literal["quick", "full", "ci"]
    seed: int
    profiles: dict[Literal["quick", "full", "ci"], Profile]
    datasets: dict[str, Dataset]
    runs: dict[str, Run]
    pretrained: dict[str, Pretrained] = Field(default_factory=dict)
    transfer: dict[str, Transfer] = Field(default_factory=dict)
    runtime: Runtime = Field(default_factory=Runtime)
    registry: Registry = Field(default_factory=Registry)

    @model_validator(mode="after")
    def _cross_check(self) -> Params:
        missing = [p for p in PROFILE_NAMES if p not in self.profiles]
        if missing:
            raise ValueError(f"profiles: missing {missing}; every one of {list(PROFILE_NAMES)}")
        for key, item in self.transfer.items():
            if item.dataset not in self.datasets:
                raise ValueError(
                    f"transfer.{key}.dataset: unknown dataset {item.dataset!r}; "
                    f"allowed: {sorted(self.datasets)}"
                )
            if item.base not in self.pretrained:
                raise ValueError(
                    f"transfer.{key}.base: unknown base {item.base!r}; "
                    f"allowed: {sorted(self.pretrained)}"
                )
        for name, minimum in self.registry.min_test_accuracy.items():
            if name not in self.datasets:
                raise ValueError(
                    f"registry.min_test_accuracy.{name}: unknown dataset; "
                    f"allowed: {sorted(self.datasets)}"
                )
            if not 0 <= minimum <= 1:
                raise ValueError(f"registry.min_test_accuracy.{name}: {minimum} not in [0, 1]")
        clash = set(self.runs) & {key for t in self.transfer for key in transfer_run_keys(t)}
        if clash:
            raise ValueError(f"runs: {sorted(clash)} also named by a transfer entry")
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
    # Which machine (or worker) ran it, recorded with every run: CONVBENCH_RUNNER or the host.
    runner: str = Field(default_factory=socket.gethostname)
    # Fan-out: the DVC remote runners share (else the repository's default remote), and
    # where flow runs make their own checkouts (else the system's temporary folder).
    dvc_remote: str | None = None
    workspaces: Path | None = None
    # A tracking server that does not answer: fail the stage (none), or record into the
    # project's own store with a warning (local). CONVBENCH_TRACKING_FALLBACK.
    tracking_fallback: Literal["none", "local"] = "none"


def transfer_run_keys(key: str) -> tuple[str, str]:
    """The runs a transfer entry makes: the head on features, then fine-tuning."""
    return f"{key}_features", f"{key}_finetune"


@dataclass(frozen=True)
class RunSpec:
    """One row of the comparison: a run of ``runs`` or one of a transfer entry's two."""

    key: str
    dataset: str
    variant: str
    kind: Literal["images", "features", "finetune"]
    transfer: str | None = None  # the transfer entry it belongs to


class Settings(_Strict):
    params: Params
    env: Environment

    def run_specs(self) -> dict[str, RunSpec]:
        """Every run, in params order: ``runs`` first, then each transfer entry's two."""
        specs = {
            key: RunSpec(key, run.dataset, run.variant, "images")
            for key, run in self.params.runs.items()
        }
        for key, item in self.params.transfer.items():
            architecture = self.params.pretrained[item.base].architecture
            features, finetune = transfer_run_keys(key)
            specs[features] = RunSpec(
                features, item.dataset, f"{architecture}_features", "features", key
            )
            specs[finetune] = RunSpec(
                finetune, item.dataset, f"{architecture}_finetune", "finetune", key
            )
        return specs

    def run_spec(self, key: str) -> RunSpec:
        specs = self.run_specs()
        if key not in specs:
            raise SettingsError(f"runs: unknown run {key!r}; allowed: {sorted(specs)}")
        return specs[key]

    def transfer(self, key: str) -> Transfer:
        try:
            return self.params.transfer[key]
        except KeyError:
            raise SettingsError(
                f"transfer: unknown entry {key!r}; allowed: {sorted(self.params.transfer)}"
            ) from None

    def image_size(self, dataset: str) -> tuple[int, int]:
        """(height, width) the models see: the dataset's, scaled down to the profile's cap."""
        shape = self.dataset(dataset).image
        cap = self.profile.image_size
        if self.dataset(dataset).format != "image_folders" or not cap:
            return shape.height, shape.width
        scale = min(1.0, cap / max(shape.height, shape.width))
        return max(1, round(shape.height * scale)), max(1, round(shape.width * scale))

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
        """A hash of everything that decides run ``key``'s result (its stages' params)."""
        spec = self.run_spec(key)
        entry = self.transfer(spec.transfer) if spec.transfer else self.run(key)
        # Defaults left out, as DVC sees params.yaml: a new optional knob at its default
        # does not turn every earlier result stale.
        scope = {
            "run": entry.model_dump(mode="json", exclude_defaults=True),
            "image": self.dataset(spec.dataset).image.model_dump(mode="json"),
            "profile": self.profile.model_dump(mode="json", exclude_defaults=True),
            "seed": self.params.seed,
        }
        # Mixed precision, XLA and op determinism change the numbers; where it runs and
        # how memory is taken do not (a GPU runner and a CPU runner make the same run).
        numerics = self.params.runtime.model_dump(
            mode="json", include={"mixed_precision", "xla", "deterministic"}, exclude_defaults=True
        )
        if numerics:
            scope["runtime"] = numerics
        return fingerprint(scope)

    def effective_epochs(self, run: Training) -> int:
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
        runner=environ.get("CONVBENCH_RUNNER") or socket.gethostname(),
        dvc_remote=environ.get("CONVBENCH_DVC_REMOTE") or None,
        workspaces=Path(environ["CONVBENCH_WORKSPACES"])
        if environ.get("CONVBENCH_WORKSPACES")
        else None,
        tracking_fallback=_tracking_fallback(environ),
    )


def _tracking_fallback(environ: dict[str, str]) -> Literal["none", "local"]:
    value = environ.get("CONVBENCH_TRACKING_FALLBACK") or "none"
    if value not in ("none", "local"):
        raise SettingsError(f"CONVBENCH_TRACKING_FALLBACK: got {value!r}; allowed: none, local")
    return value  # type: ignore[return-value]


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
