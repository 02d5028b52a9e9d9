"""``Settings``: the validated params and the environment, loaded in one place.

Every stage, flow and test gets a ``Settings`` object from :func:`load_settings` and
hands the parts down; no other module reads ``params.yaml`` or environment variables.
"""

from __future__ import annotations

from pathlib import Path

from convbench.settings.environment import Environment, read_environment
from convbench.settings.params import KnownNames, Params, SettingsError, load_params
from convbench.settings.runs import RunSpec, resolve_runs
from convbench.settings.schema import Dataset, Profile, Transfer, _Strict


class Settings(_Strict):
    params: Params
    env: Environment

    def run_specs(self) -> dict[str, RunSpec]:
        """Every run resolved, in params order: ``runs`` first, then each transfer's two."""
        return resolve_runs(self.params)

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

    def dataset(self, name: str) -> Dataset:
        try:
            return self.params.datasets[name]
        except KeyError:
            raise SettingsError(
                f"datasets: unknown dataset {name!r}; allowed: {sorted(self.params.datasets)}"
            ) from None

    @property
    def profile(self) -> Profile:
        return self.params.profiles[self.params.profile]


def load_settings(
    path: Path = Path("params.yaml"),
    environ: dict[str, str] | None = None,
    known: KnownNames | None = None,
) -> Settings:
    """params.yaml at ``path`` and the environment; ``known`` checks source and variant names."""
    return Settings(
        params=load_params(path, known), env=read_environment(environ, cwd=path.resolve().parent)
    )
