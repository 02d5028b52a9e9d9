"""Checkouts for fanned-out runs: git for code and metadata, the DVC remote for data.

A runner never works in somebody else's folder. It clones the shared repository at the
commit it was given, pulls from the DVC remote the outputs its stages read, runs them,
saves the result as a DVC experiment (``dvc exp save``) and pushes the experiment's git
ref to the repository and its outputs to the DVC remote. The gatherer fetches those
experiments and takes each one's own stages (their ``dvc.lock`` entries and git-tracked
results) into one checkout, where the comparison is built. Only git, DVC and their
remotes carry anything between machines.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import networkx as nx

from convbench.core.redact import redact

log = logging.getLogger(__name__)

FANOUT_REMOTE = "fanout"  # the DVC remote a flow run adds (local config) when given one


class WorkspaceError(RuntimeError):
    """A git or DVC command failed; the message has the command and its output."""


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shown = " ".join(command[2:] if command[1:2] == ["-m"] else command)
        output = (result.stdout + result.stderr).strip()[-3000:]
        # The command and git's output may quote a remote URL with its credentials.
        raise WorkspaceError(
            redact(f"{shown} failed in {cwd} (exit {result.returncode}):\n{output}")
        )
    return result.stdout


def git(cwd: Path, *args: str) -> str:
    return _run(["git", *args], cwd)


def dvc(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """DVC from this environment (the worker's locked one), in checkout ``cwd``."""
    return _run([sys.executable, "-m", "dvc", *args], cwd, env)


def installed_project() -> Path:
    """The convbench checkout this environment runs from (``uv sync`` installs it editable)."""
    import convbench

    root = Path(convbench.__file__).resolve().parents[2]
    if not (root / "params.yaml").exists():
        raise WorkspaceError(
            f"{root} is not a convbench checkout: start the worker from one (its .venv)"
        )
    return root


def enter_project() -> dict[str, str]:
    """Prefect pull step: load the flow code from the checkout this worker runs from.

    Every host runs its worker from its own checkout, wherever that is, so a deployment
    cannot name one folder for all of them (as Prefect's default pull step would).
    """
    root = installed_project()
    os.chdir(root)
    return {"directory": str(root)}


def default_repository(project_dir: Path) -> str:
    """Where runners clone from: the checkout's ``origin``, else the checkout itself."""
    try:
        return git(project_dir, "remote", "get-url", "origin").strip()
    except WorkspaceError:
        return str(project_dir.resolve())


def new_workspace(base: Path | None, label: str) -> Path:
    """A fresh, empty folder for one flow run's checkout."""
    parent = base or Path(tempfile.gettempdir()) / "convbench-workspaces"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=parent))


def clone(repository: str, ref: str, dest: Path) -> str:
    """Clone ``repository`` into ``dest`` (empty) and check out ``ref``; the commit's sha."""
    git(dest.parent, "clone", "--quiet", repository, str(dest))
    git(dest, "checkout", "--quiet", "--detach", ref)
    _identity(dest)
    return git(dest, "rev-parse", "HEAD").strip()


def _identity(checkout: Path) -> None:
    """A committer for the commits a runner makes, where the machine has none configured."""
    try:
        git(checkout, "config", "user.email")
    except WorkspaceError:
        git(checkout, "config", "user.name", "convbench runner")
        git(checkout, "config", "user.email", "convbench@localhost")


def use_remote(checkout: Path, remote: str | None) -> None:
    """Make ``remote`` (a URL or folder) the checkout's default DVC remote, locally only."""
    if remote:
        if "://" not in remote:
            remote = str(Path(remote).expanduser().resolve())
        dvc(checkout, "remote", "add", "--local", "--default", "--force", FANOUT_REMOTE, remote)
    try:
        default = dvc(checkout, "remote", "default").strip()
    except WorkspaceError:  # "No default remote set" exits 1
        default = ""
    if not default:
        raise WorkspaceError(
            f"{checkout}: no DVC remote to share data through: configure one "
            "(dvc remote add -d NAME URL) or set CONVBENCH_DVC_REMOTE"
        )


def stage_graph(checkout: Path) -> nx.DiGraph:
    """The DVC DAG by stage name (edges point from a stage to what it depends on)."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    def name(stage: object) -> str:
        # As `dvc repro` takes it in the checkout's root, whatever this process's folder
        # (`addressing` would be relative to the current one).
        return stage.name if isinstance(stage, PipelineStage) else stage.relpath  # type: ignore[attr-defined]

    with Repo(str(checkout)) as repo:
        graph = repo.index.graph
        return nx.relabel_nodes(graph, {stage: name(stage) for stage in graph.nodes})


def upstream_of(graph: nx.DiGraph, stages: Iterable[str]) -> list[str]:
    """The stages outside ``stages`` whose outputs ``stages`` read directly."""
    inside = set(stages)
    needed = {dep for stage in inside for dep in graph.successors(stage)} - inside
    return sorted(needed)


def lock_entries(checkout: Path, stages: Iterable[str], rev: str | None = None) -> dict:
    """The ``dvc.lock`` entries of ``stages``, from the working tree or from commit ``rev``."""
    from dvc.utils.serialize import parse_yaml

    text = git(checkout, "show", f"{rev}:dvc.lock") if rev else (checkout / "dvc.lock").read_text()
    lock = parse_yaml(text, f"{rev or checkout}:dvc.lock")
    entries = {}
    for stage in stages:
        entry = lock.get("stages", {}).get(stage)
        if entry is None:
            raise WorkspaceError(f"{rev or checkout}: dvc.lock has no entry for {stage}")
        entries[stage] = entry
    return entries


def stage_git_outputs(checkout: Path, stages: Iterable[str]) -> list[str]:
    """The outputs of ``stages`` that git keeps (metrics, tables): the rest is DVC's cache."""
    paths = [
        out["path"] for entry in lock_entries(checkout, stages).values() for out in entry["outs"]
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", *paths], cwd=checkout, capture_output=True, text=True, check=False
    ).stdout.split()
    return [path for path in paths if path not in ignored]


def commit_all(checkout: Path, message: str) -> str:
    git(checkout, "add", "--all")
    if git(checkout, "status", "--porcelain").strip():
        git(checkout, "commit", "--quiet", "--message", message)
    return git(checkout, "rev-parse", "HEAD").strip()


def experiment_ref(baseline: str, name: str) -> str:
    from dvc.repo.experiments.refs import ExpRefInfo

    return str(ExpRefInfo(baseline, name))


def take_experiment_stages(checkout: Path, ref: str, stages: Iterable[str]) -> list[str]:
    """Take ``stages``' results from experiment ``ref`` into ``checkout``.

    Their ``dvc.lock`` entries replace the checkout's, and their git-tracked outputs
    (metrics, tables) are checked out; the cached outputs come from the DVC remote with
    ``dvc pull`` afterwards. Returns the git-tracked paths taken.
    """
    from dvc.utils.serialize import dump_yaml, parse_yaml

    theirs = lock_entries(checkout, stages, rev=ref)
    lock_path = checkout / "dvc.lock"
    ours = (
        parse_yaml(lock_path.read_text(), str(lock_path))
        if lock_path.exists()
        else {"schema": "2.0", "stages": {}}
    )
    ours.setdefault("stages", {}).update(theirs)
    paths = [out["path"] for entry in theirs.values() for out in entry.get("outs", [])]
    tracked = git(checkout, "ls-tree", "-r", "--name-only", ref, "--", *paths).split()
    if tracked:
        git(checkout, "checkout", ref, "--", *tracked)
    tmp = lock_path.with_name(f".dvc.lock.{uuid.uuid4().hex}.tmp")
    dump_yaml(tmp, ours)
    os.replace(tmp, lock_path)
    return tracked
