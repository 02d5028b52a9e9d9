"""``Settings``: the validated params and the environment, loaded in one place.

Every stage, flow and test gets a ``Settings`` object from :func:`load_settings` and
hands the parts down; no other module reads ``params.yaml`` or environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from convbench.settings.environment import Environment, read_environment
from convbench.settings.params import KnownNames, Params, SettingsError, load_params
from convbench.settings.runs import RunSpec, resolve_runs
from convbench.settings.schema import Dataset, Profile, Runtime, Strict, Transfer

T = TypeVar("T")


class Settings(Strict):
    params: Params
    env: Environment

    def run_specs(self) -> dict[str, RunSpec]:
        """Every run resolved, in params order: ``runs`` first, then each transfer's two."""
        return resolve_runs(self.params)

    def run_spec(self, key: str) -> RunSpec:
        return _entry("runs", "run", self.run_specs(), key)

    def transfer(self, key: str) -> Transfer:
        return _entry("transfer", "entry", self.params.transfer, key)

    def dataset(self, name: str) -> Dataset:
        return _entry("datasets", "dataset", self.params.datasets, name)

    @property
    def profile(self) -> Profile:
        return self.params.profiles[self.params.profile]


def _entry(section: str, what: str, entries: Mapping[str, T], key: str) -> T:
    """``entries[key]``, or an error naming the section and the allowed keys."""
    try:
        return entries[key]
    except KeyError:
        raise SettingsError(
            f"{section}: unknown {what} {key!r}; allowed: {sorted(entries)}"
        ) from None


def load_settings(
    path: Path = Path("params.yaml"),
    environ: dict[str, str] | None = None,
    known: KnownNames | None = None,
) -> Settings:
    """params.yaml at ``path`` and the environment; ``known`` checks source and variant names."""
    return Settings(
        params=load_params(path, known), env=read_environment(environ, cwd=path.resolve().parent)
    )


def requested_runtime(path: Path = Path("params.yaml")) -> Runtime | None:
    """params.yaml's ``runtime`` alone, read before Keras is imported (its backend is
    chosen then); None when the file or the section is unreadable: the stage's full
    load reports that, naming the key."""
    import yaml
    from pydantic import ValidationError

    try:
        raw = yaml.safe_load(path.read_text())
        return Runtime.model_validate(raw.get("runtime") or {})
    except (OSError, AttributeError, yaml.YAMLError, ValidationError):
        return None
