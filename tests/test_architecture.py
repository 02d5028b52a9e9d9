"""The architecture as the files state it: no import cycles, small modules, and DVC deps
that list exactly the code each stage runs.

Everything is discovered from the files (modules, imports, stages), so these tests follow
modules as they move; see tests/imports.py for how imports are read. To see what each
stage runs and the code deps that cover it: ``.venv/bin/python -m tests.imports``
(``--write`` puts them into dvc.yaml).
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import imports
from tests.imports import ImportGraph, Stage

ROOT = imports.ROOT


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return imports.build(ROOT)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return imports.read_stages(ROOT)


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


def test_the_import_graph_reads_imports_as_python_runs_them(tmp_path: Path) -> None:
    _write_tree(
        tmp_path,
        {
            "src/convbench/__init__.py": "",
            # A package __init__ re-exporting a name of its submodule.
            "src/convbench/a/__init__.py": "from convbench.a.names import NAME\n",
            "src/convbench/a/names.py": "NAME = 1\n",
            # Relative imports; importing a sibling is no cycle with the package.
            "src/convbench/a/user.py": "from . import names\nfrom .. import b\n",
            # An import inside a function counts.
            "src/convbench/b.py": "def f():\n    import convbench.c.deep\n",
            # A name defined in a package's __init__: the edge goes to the package.
            "src/convbench/c/__init__.py": "from convbench.a import NAME\n",
            "src/convbench/c/deep.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from convbench.a import user
                """,
            "src/convbench/c/lazy.py": """\
                import importlib
                importlib.import_module("convbench.b")
                from convbench.gone import thing
                """,
            "src/convbench/x.py": "import convbench.y\n",
            "src/convbench/y.py": "from convbench import x\n",
            "pipelines/__init__.py": '"""Entry points."""\n',
            "pipelines/run.py": "from convbench.a import user\n",
            "flows/__init__.py": "",
        },
    )
    graph = imports.build(tmp_path)

    assert set(graph.edges.successors("convbench.a.user")) == {"convbench.a.names", "convbench.b"}
    assert set(graph.edges.successors("convbench.b")) == {"convbench.c.deep"}
    assert set(graph.edges.successors("convbench.c")) == {"convbench.a"}
    assert set(graph.edges.successors("convbench.c.deep")) == set()  # TYPE_CHECKING only
    assert set(graph.edges.successors("convbench.c.lazy")) == {"convbench.b"}
    assert [str(u) for u in graph.unresolved] == ["src/convbench/c/lazy.py:3: convbench.gone"]
    assert graph.cycles() == [["convbench.x", "convbench.y", "convbench.x"]]
    assert graph.closure(["pipelines.run"]) == {
        "pipelines",
        "pipelines.run",
        "convbench",
        "convbench.a",
        "convbench.a.names",
        "convbench.a.user",
        "convbench.b",
        "convbench.c",  # runs before convbench.c.deep
        "convbench.c.deep",
    }


def test_every_project_import_names_a_module(graph: ImportGraph) -> None:
    """An import of a module that moved away would also hide code from the checks below."""
    assert not graph.unresolved, "imports of project modules that no file provides:\n" + "\n".join(
        f"    {problem}" for problem in graph.unresolved
    )


def test_no_import_cycles(graph: ImportGraph) -> None:
    cycles = graph.cycles()
    lines = []
    for cycle in cycles:
        lines.append("    " + " -> ".join(cycle))
        lines += [
            f"        {a} imports {b} at {graph.where(a, b)}" for a, b in itertools.pairwise(cycle)
        ]
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(lines)


# The layers of src/convbench in the order the data flows (DESIGN.md); a module may import
# its own layer and those before it, never one after it. The top-level modules (cli,
# predict) and flows/ and pipelines/ sit above them all.
LAYERS = (
    "core",
    "settings",
    "data",
    "inputs",
    "models",
    "training",
    "evaluation",
    "tracking",
    "reporting",
    "stages",
    "ops",
)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != imports.LIBRARY or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def test_imports_go_down_the_layers(graph: ImportGraph) -> None:
    upward = [
        f"    {a} ({LAYERS[_layer(a)]}) imports {b} ({LAYERS[_layer(b)]}) at {graph.where(a, b)}"
        for a, b in graph.edges.edges
        if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)
    ]
    assert not upward, f"{len(upward)} import(s) up the layers:\n" + "\n".join(sorted(upward))
    subpackages = {m.split(".")[1] for m in graph.packages if m.count(".") == 1}
    assert subpackages <= set(LAYERS), f"not placed in LAYERS: {subpackages - set(LAYERS)}"


def test_modules_stay_small() -> None:
    counts = imports.line_counts(ROOT)
    over = sorted(
        ((n, path) for path, n in counts.items() if n > imports.MAX_LINES),
        key=lambda item: (-item[0], item[1]),
    )
    assert not over, f"{len(over)} module(s) over {imports.MAX_LINES} lines:\n" + "\n".join(
        f"    {path}: {n}" for n, path in over
    )


def _is_docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for node in body
    )


def test_dvc_deps_cover_the_code_each_stage_runs(graph: ImportGraph, stages: list[Stage]) -> None:
    problems = []
    package = graph.files.get(imports.STAGE_PACKAGE)
    if package and not _is_docstring_only(ROOT / package):
        problems.append(
            f"{package} runs before every stage but is no stage's dep: keep it a docstring"
        )
    for stage in stages:
        if stage.entry not in graph.files:
            problems.append(f"stage {stage.name}: runs {stage.entry}, which no file provides")
            continue
        flows = sorted(m for m in imports.stage_code(graph, stage) if m.split(".")[0] == "flows")
        if flows:
            problems.append(f"stage {stage.name}: imports the flows, {', '.join(flows)}")
        missing = imports.uncovered(graph, stage)
        if missing:
            problems.append(
                f"stage {stage.name} ({graph.files[stage.entry]}) runs files no dep covers:\n"
                + "\n".join(f"        {file}" for file in missing)
                + "\n    code deps that cover exactly what it runs:\n"
                + "\n".join(f"        - {d}" for d in imports.suggested_code_deps(graph, stage))
            )
    assert not problems, (
        "dvc.yaml's code deps are not what the stages run "
        "(`python -m tests.imports --write` rewrites them):\n    " + "\n    ".join(problems)
    )


def test_dvc_code_deps_name_only_code_the_stage_runs(
    graph: ImportGraph, stages: list[Stage]
) -> None:
    """A code dep on a file the stage does not run reruns it for nothing; one that names no
    file (a module moved away) fails `dvc repro`."""
    problems = [
        f"stage {stage.name}:\n" + "\n".join(f"        {p}" for p in extra)
        for stage in stages
        if (extra := imports.overcovered(graph, stage))
    ]
    assert not problems, (
        "dvc.yaml's code deps name code the stage does not run "
        "(`python -m tests.imports --write` rewrites them):\n    " + "\n    ".join(problems)
    )


# --- DVC's own view, in a copy of the project -------------------------------------------

# Records every stage's deps as they are now in dvc.lock, through the calls `dvc commit
# --force` makes, but with absent data allowed (`dvc commit` refuses it) and without the
# run cache; writes the stage names, foreach items expanded, to the file named by argv[1].
_RECORD_DEPS = """
import json, sys
from dvc.repo import Repo

with Repo(".") as repo, repo.lock:
    stages = list(repo.index.stages)
    files = {}
    for stage in stages:
        stage.save(allow_missing=True, run_cache=False)
        files.setdefault(stage.dvcfile.relpath, (stage.dvcfile, []))[1].append(stage)
    for dvcfile, group in files.values():
        dvcfile.dump_stages(group, update_pipeline=False)
with open(sys.argv[1], "w") as out:
    json.dump([stage.addressing for stage in stages], out)
"""


@dataclass
class DvcCopy:
    """A git checkout of the project's files whose dvc.lock matches its code."""

    root: Path
    instances: list[str] = field(repr=False)  # foreach items expanded: ``train@mnist-mlp``
    env: dict[str, str] = field(repr=False)
    baseline: dict[str, set[tuple[str, str]]] = field(default_factory=dict, repr=False)

    def changed_deps(self) -> dict[str, set[tuple[str, str]]]:
        """``dvc status --json``: each stage's changed deps as (path, state) pairs."""
        result = _run([sys.executable, "-m", "dvc", "status", "--json"], self.root, self.env)
        changed: dict[str, set[tuple[str, str]]] = {}
        for stage, entries in json.loads(result.stdout or "{}").items():
            for entry in entries:
                if isinstance(entry, dict):
                    changed.setdefault(stage, set()).update(entry.get("changed deps", {}).items())
        return changed


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"{args[:4]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def _project_files() -> list[str]:
    # Untracked files too: modules are being added that are not committed yet.
    listed = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def dvc_copy(tmp_path_factory: pytest.TempPathFactory) -> DvcCopy:
    root = tmp_path_factory.mktemp("architecture") / "convbench"
    for name in _project_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env |= {"DVC_NO_ANALYTICS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    git = ["git", "-c", "user.name=convbench", "-c", "user.email=convbench@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-gpg-sign", "-m", "copy"]):
        _run([*git, *args], root, env)
    names = root.parent / "stages.json"
    _run([sys.executable, "-c", _RECORD_DEPS, str(names)], root, env)
    copy = DvcCopy(root, json.loads(names.read_text()), env)
    # Absent data leaves many stages changed already: the tests compare with this status
    # and put back what they change.
    copy.baseline = copy.changed_deps()
    return copy


def _newly_naming(
    before: dict[str, set[tuple[str, str]]],
    after: dict[str, set[tuple[str, str]]],
    file: str,
) -> dict[str, set[tuple[str, str]]]:
    """The stages whose status newly names ``file`` or a folder above it."""
    found = {}
    for stage, entries in after.items():
        new = {e for e in entries - before.get(stage, set()) if imports.covers(e[0], file)}
        if new:
            found[stage] = new
    return found


def _file_some_stages_run(graph: ImportGraph, stages: list[Stage]) -> tuple[str, set[str]]:
    """A library file some stages run and others do not, with the stages that run it: one
    that a folder dep covers for some stage and a file dep for another when there is one,
    else the one that splits the stages most evenly."""
    runs: dict[str, set[str]] = {}
    for stage in stages:
        for file in imports.required_files(graph, stage):
            runs.setdefault(file, set()).add(stage.name)
    candidates = [
        file
        for file, names in runs.items()
        if file.startswith(imports.PACKAGES[imports.LIBRARY] + "/") and len(names) < len(stages)
    ]
    if not candidates:
        pytest.fail("every library module is run by every stage: nothing to tell apart")

    def covered_by(file: str, folder: bool) -> bool:
        return any(
            imports.covers(dep, file) and (dep != file) == folder
            for stage in stages
            for dep in stage.code_deps()
        )

    def rank(file: str) -> tuple[bool, float, str]:
        both = covered_by(file, folder=True) and covered_by(file, folder=False)
        return (not both, abs(len(runs[file]) - len(stages) / 2), file)

    chosen = min(candidates, key=rank)
    return chosen, runs[chosen]


@pytest.mark.slow  # a copy of the project and `dvc status` in it: 10-20 s
def test_editing_code_marks_exactly_the_stages_that_run_it(dvc_copy: DvcCopy) -> None:
    graph = imports.build(dvc_copy.root)
    stages = imports.read_stages(dvc_copy.root)
    edited, runners = _file_some_stages_run(graph, stages)
    expected = {name for name in dvc_copy.instances if name.split("@")[0] in runners}

    path = dvc_copy.root / edited
    original = path.read_text(encoding="utf-8")
    path.write_text(original + ("" if original.endswith("\n") else "\n") + "# edited\n")
    try:
        after = dvc_copy.changed_deps()
    finally:
        path.write_text(original, encoding="utf-8")
    marked = _newly_naming(dvc_copy.baseline, after, edited)

    missed = sorted(expected - set(marked))
    extra = sorted(set(marked) - expected)
    assert not missed and not extra, (
        f"editing {edited} (run by stages {', '.join(sorted(runners))}):\n"
        f"    stages that run it but DVC did not mark: {', '.join(missed) or 'none'}\n"
        f"    stages DVC marked that do not run it: "
        + (", ".join(f"{s} {sorted(marked[s])}" for s in extra) or "none")
    )


@pytest.mark.slow  # a copy of the project and `dvc status` in it: 10-20 s
def test_bytecode_caches_mark_no_stage(dvc_copy: DvcCopy) -> None:
    """Python writes ``__pycache__`` beside the modules it imports: inside a folder dep,
    that would rerun every stage after a checkout or with another interpreter. DVC must
    ignore them (``__pycache__/`` in .dvcignore)."""
    graph = imports.build(dvc_copy.root)
    folders = sorted({Path(graph.files[p]).parent for p in graph.packages})
    before = dvc_copy.baseline
    made = []
    try:
        for folder in folders:
            cache = dvc_copy.root / folder / "__pycache__"
            if not cache.exists():
                cache.mkdir()
                made.append(cache)
                (cache / "written_by_python.cpython-311.pyc").write_bytes(b"\x00bytecode")
        after = dvc_copy.changed_deps()
    finally:
        for cache in made:
            shutil.rmtree(cache)
    marked = {
        stage: sorted(entries - before.get(stage, set()))
        for stage, entries in after.items()
        if entries - before.get(stage, set())
    }
    assert not marked, (
        f"bytecode caches mark {len(marked)} stage(s), e.g. "
        + "; ".join(f"{s}: {marked[s]}" for s in sorted(marked)[:3])
        + " (add `__pycache__/` to .dvcignore)"
    )
