"""``params.yaml`` read and validated: the ``Params`` model and its cross-checks.

An unknown key, a wrong type or an unknown name stops with an error naming the key and
the allowed values. The model variants belong to the layer that defines them
(``convbench.models``): callers hand the catalogue in (``known``), so the settings do not
import it; a run whose variant cannot take its dataset's images is refused here, with
the reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import Field, ValidationError, ValidationInfo, model_validator

from convbench.core.errors import ConvbenchError
from convbench.settings.schema import (
    _UNION_TAGS,
    Dataset,
    ForestRun,
    KerasRun,
    Pretrained,
    Profile,
    Registry,
    Run,
    Runtime,
    Strict,
    Transfer,
)

PROFILE_NAMES = ("quick", "full", "ci")


class SettingsError(ConvbenchError, ValueError):
    """params.yaml (or an override) is not valid; the message names the key."""


class VariantInfo(Protocol):
    """What the settings need to know of a model variant (``models.catalog.Variant``)."""

    @property
    def kind(self) -> Literal["keras", "sklearn"]: ...

    def refuses(self, shape: tuple[int, int, int]) -> str | None:
        """Why the variant cannot take images of ``shape`` (height, width, channels)."""
        ...


@dataclass(frozen=True)
class KnownNames:
    """The model variants params.yaml may name; ``variants=None`` leaves them unchecked."""

    variants: Mapping[str, VariantInfo] | None = None


def image_size(params: Params, dataset: str) -> tuple[int, int]:
    """(height, width) the models see: the dataset's, scaled down to the profile's cap."""
    item = params.datasets[dataset]
    shape, cap = item.image, params.profiles[params.profile].image_size
    if item.format != "image_folders" or not cap:
        return shape.height, shape.width
    scale = min(1.0, cap / max(shape.height, shape.width))
    return max(1, round(shape.height * scale)), max(1, round(shape.width * scale))


def transfer_run_keys(key: str) -> tuple[str, str]:
    """The runs a transfer entry makes: the head on features, then fine-tuning."""
    return f"{key}_features", f"{key}_finetune"


class Params(Strict):
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
            _known(f"transfer.{key}.dataset", "dataset", item.dataset, self.datasets)
            _known(f"transfer.{key}.base", "base", item.base, self.pretrained)
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
            _known(f"runs.{key}.dataset", "dataset", run.dataset, self.datasets)
        return self

    @model_validator(mode="after")
    def _known_names(self, info: ValidationInfo) -> Params:
        known = (info.context or {}).get("known")
        if known is None or known.variants is None:
            return self
        for key, run in self.runs.items():
            _known(f"runs.{key}.variant", "variant", run.variant, known.variants)
            variant = known.variants[run.variant]
            expected = ForestRun if variant.kind == "sklearn" else KerasRun
            if not isinstance(run, expected):
                raise ValueError(f"runs.{key}: variant {run.variant!r} needs {expected.__name__}")
            shape = (*image_size(self, run.dataset), self.datasets[run.dataset].image.channels)
            reason = variant.refuses(shape)
            if reason:
                raise ValueError(
                    f"runs.{key}: variant {run.variant!r} cannot take the {run.dataset} "
                    f"images ({shape[0]}x{shape[1]}x{shape[2]} under profile "
                    f"{self.profile}): {reason}"
                )
        return self


def _known(key: str, what: str, name: str, allowed: Collection[str]) -> None:
    if name not in allowed:
        raise ValueError(f"{key}: unknown {what} {name!r}; allowed: {sorted(allowed)}")


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


def parse_params(
    raw: dict[str, Any], origin: str = "params.yaml", known: KnownNames | None = None
) -> Params:
    """Validate ``raw``; with ``known``, source and variant names are checked too."""
    try:
        return Params.model_validate(raw, context={"known": known})
    except ValidationError as error:
        raise SettingsError(f"{origin} is not valid:\n{_describe(error)}") from None


def load_params(path: Path, known: KnownNames | None = None) -> Params:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return parse_params(raw, origin=str(path), known=known)
