"""The project's import graph, read from the source files with ``ast`` (nothing is imported),
and the DVC stages' code as that graph says they run it.

Modules are discovered from the files of the project's top-level packages, so the graph
follows modules as they move. An import counts wherever it is written: at module level and
inside functions and classes. Imports under ``if TYPE_CHECKING:`` are left out: they never
run, so they neither make a stage depend on a module nor close an import cycle at run time.
``importlib.import_module("convbench.x")`` with a literal name counts as an import.

Edges are the imports as written. Importing ``convbench.a.b`` also runs
``convbench/a/__init__.py`` and ``convbench/__init__.py``: :meth:`ImportGraph.closure` adds
those packages (and what they import), while :meth:`ImportGraph.cycles` looks at the written
edges only, so a submodule whose package is imported on the way to it is no cycle.

``python -m tests.imports`` prints each stage's code grouped by subpackage, with the code
deps that cover it; ``--write`` puts those deps into dvc.yaml (data deps stay as they are).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import networkx as nx
import yaml

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = "convbench"
# The project's top-level packages, by folder relative to the project root.
PACKAGES = {LIBRARY: "src/convbench", "pipelines": "pipelines", "flows": "flows"}
STAGE_PACKAGE = "pipelines"
MAX_LINES = 300
# A subpackage becomes one folder dep when a stage runs this share of its modules. Below 1,
# editing a module the stage does not run would rerun it: the deps would no longer be exact.
FOLDER_SHARE = 1.0

_MODULE_IN_CMD = re.compile(r"-m\s+([\w.]+)")


@dataclass(frozen=True)
class Unresolved:
    """An import of a project module that no file provides (moved, renamed or removed)."""

    where: str
    name: str

    def __str__(self) -> str:
        return f"{self.where}: {self.name}"


@dataclass
class ImportGraph:
    """Modules by dotted name, their files, and an edge for every import as written."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)  # module -> posix path from root
    packages: set[str] = field(default_factory=set)  # modules that are an ``__init__.py``
    edges: nx.DiGraph = field(default_factory=nx.DiGraph)
    unresolved: list[Unresolved] = field(default_factory=list)

    def parents(self, module: str) -> list[str]:
        """The packages whose ``__init__`` runs before ``module``: outermost first."""
        parts = module.split(".")
        return [
            name
            for name in (".".join(parts[:i]) for i in range(1, len(parts)))
            if name in self.files
        ]

    def closure(self, start: Iterable[str]) -> set[str]:
        """Every module that runs when ``start`` is imported: the imports followed
        transitively, with the package ``__init__`` of every module reached."""
        seen: set[str] = set()
        todo = list(start)
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo.extend(self.parents(module))
            if module in self.edges:
                todo.extend(self.edges.successors(module))
        return seen

    def cycles(self) -> list[list[str]]:
        """One shortest cycle per strongly connected component of more than one module,
        over the imports as written: ``[a, b, c, a]``."""
        found = []
        for component in nx.strongly_connected_components(self.edges):
            if len(component) < 2:
                continue
            sub = self.edges.subgraph(component)
            start = min(component)
            path = min(
                (nx.shortest_path(sub, nxt, start) for nxt in sub.successors(start)),
                key=lambda p: (len(p), p),
            )
            found.append([start, *path])
        return sorted(found)

    def where(self, importer: str, imported: str) -> str:
        """``file:line`` of each place ``importer`` imports ``imported``."""
        lines = self.edges.edges[importer, imported]["lines"]
        return ", ".join(f"{self.files[importer]}:{line}" for line in sorted(lines))


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages: dotted name -> file."""
    modules = {}
    for top, folder in PACKAGES.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(base).with_suffix("")
            if any(part.startswith((".", "__pycache__")) for part in relative.parts):
                continue
            parts = [top, *relative.parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """Every import statement of one file, wherever it is, except under TYPE_CHECKING."""

    def __init__(self) -> None:
        # (line, level, module, names): ``import a.b`` is (line, 0, "a.b", None).
        self.found: list[tuple[int, int, str, list[str] | None]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((node.lineno, 0, alias.name, None))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = [alias.name for alias in node.names]
        self.found.append((node.lineno, node.level, node.module or "", names))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0] if node.args else None
        if (
            name == "import_module"
            and isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and not first.value.startswith(".")
        ):
            self.found.append((node.lineno, 0, first.value, None))
        self.generic_visit(node)


def build(root: Path = ROOT) -> ImportGraph:
    """The import graph of the project's packages under ``root``."""
    modules = discover(root)
    graph = ImportGraph(root=root)
    for name, path in modules.items():
        graph.files[name] = path.relative_to(root).as_posix()
        if path.name == "__init__.py":
            graph.packages.add(name)
        graph.edges.add_node(name)

    def is_ours(name: str) -> bool:
        return name.split(".")[0] in PACKAGES

    for importer, path in modules.items():
        finder = _Imports()
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for line, level, module, names in finder.found:
            if level:
                package = importer if importer in graph.packages else importer.rpartition(".")[0]
                for _ in range(level - 1):
                    package = package.rpartition(".")[0]
                module = f"{package}.{module}" if module else package
            if not is_ours(module):
                continue
            where = f"{graph.files[importer]}:{line}"
            if module not in modules:
                graph.unresolved.append(Unresolved(where, module))
                continue
            targets = []
            if names is None or "*" in names:
                targets.append(module)
            for name in names or []:
                # A submodule when one has that name, else a name the module defines:
                # then the dependency is on the module (for a package, its __init__).
                submodule = f"{module}.{name}"
                targets.append(submodule if submodule in modules else module)
            for target in targets:
                if target == importer:
                    continue
                if graph.edges.has_edge(importer, target):
                    graph.edges.edges[importer, target]["lines"].add(line)
                else:
                    graph.edges.add_edge(importer, target, lines={line})
    return graph


def line_counts(root: Path = ROOT) -> dict[str, int]:
    """Lines of every module of the project's packages, by posix path from root."""
    return {
        path.relative_to(root).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in discover(root).values()
    }


# --- DVC stages -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage of dvc.yaml (a ``foreach`` template counts once)."""

    name: str
    entry: str  # the module its cmd runs with ``python -m``
    deps: tuple[str, ...]  # as written, templates included

    def code_deps(self) -> list[str]:
        return [dep for dep in self.deps if is_code_path(dep)]


def is_code_path(path: str) -> bool:
    """A path in (or above) one of the project's package folders, not a ``${}`` template."""
    if "${" in path:
        return False
    here = PurePosixPath(path.rstrip("/"))
    return any(
        here == folder or folder in here.parents or here in folder.parents
        for folder in map(PurePosixPath, PACKAGES.values())
    )


def covers(dep: str, file: str) -> bool:
    """A dep covers a file when it is the file or a folder above it."""
    dep = dep.rstrip("/")
    return file == dep or file.startswith(f"{dep}/") or dep in ("", ".")


def read_stages(root: Path = ROOT) -> list[Stage]:
    """The stages of ``root/dvc.yaml``, with the module each one's command runs."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    stages = []
    for name, stage in spec["stages"].items():
        body = stage["do"] if "foreach" in stage else stage
        cmd = body["cmd"] if isinstance(body["cmd"], str) else " ".join(body["cmd"])
        match = _MODULE_IN_CMD.search(cmd)
        if match is None:
            raise ValueError(f"stage {name}: no `python -m <module>` in {cmd!r}")
        deps = [dep if isinstance(dep, str) else next(iter(dep)) for dep in body.get("deps", [])]
        stages.append(Stage(name, match.group(1), tuple(deps)))
    return stages


def stage_code(graph: ImportGraph, stage: Stage) -> set[str]:
    """Every module the stage's entry point runs (the stage package's ``__init__`` too)."""
    return graph.closure([stage.entry])


def required_files(graph: ImportGraph, stage: Stage) -> list[str]:
    """The files a stage's code deps must cover: its entry point, every library module it
    runs and any other stage module it imports. ``pipelines/__init__.py`` is left out: it
    must stay a docstring (a test says so), so editing it changes no stage's result."""
    return sorted(
        graph.files[module]
        for module in stage_code(graph, stage)
        if module != STAGE_PACKAGE and module.split(".")[0] in (LIBRARY, STAGE_PACKAGE)
    )


def subpackage_of(graph: ImportGraph, module: str) -> str:
    """The package a module belongs to (a package belongs to itself)."""
    return module if module in graph.packages else module.rpartition(".")[0]


def suggested_code_deps(graph: ImportGraph, stage: Stage, share: float = FOLDER_SHARE) -> list[str]:
    """The entry point, then a short list covering every file the stage runs: a folder for
    a subpackage (other than the library's top) whose modules it runs at least ``share``
    of, its files otherwise."""
    code = stage_code(graph, stage)
    entry = graph.files[stage.entry]
    folders: list[str] = []
    for package in sorted(graph.packages):  # outer packages before the ones inside them
        folder = str(PurePosixPath(graph.files[package]).parent)
        if not package.startswith(f"{LIBRARY}.") or package not in code:
            continue
        if any(covers(chosen, folder) for chosen in folders):
            continue
        members = [m for m in graph.files if m == package or m.startswith(f"{package}.")]
        if sum(m in code for m in members) >= share * len(members):
            folders.append(folder)
    deps = [entry, *folders]
    deps += [
        file
        for file in required_files(graph, stage)
        if file != entry and not any(covers(folder, file) for folder in folders)
    ]
    return deps


def uncovered(graph: ImportGraph, stage: Stage) -> list[str]:
    """The files the stage runs that none of its code deps covers."""
    deps = stage.code_deps()
    return [f for f in required_files(graph, stage) if not any(covers(d, f) for d in deps)]


def overcovered(graph: ImportGraph, stage: Stage) -> list[str]:
    """The stage's code deps that name no file, and the project files its code deps cover
    that it does not run (editing those would rerun it for nothing)."""
    deps = stage.code_deps()
    needed = set(required_files(graph, stage))
    problems = [
        f"{dep} (no such file or folder)" for dep in deps if not (graph.root / dep).exists()
    ]
    problems += [
        f"{file} (covered by {', '.join(d for d in deps if covers(d, file))})"
        for file in sorted(graph.files.values())
        if file not in needed and any(covers(d, file) for d in deps)
    ]
    return problems


def report(graph: ImportGraph, stages: list[Stage]) -> Iterator[str]:
    """For each stage: what it runs, grouped by package, and the deps that would cover it."""
    for stage in stages:
        code = stage_code(graph, stage)
        yield f"{stage.name}  (python -m {stage.entry})"
        grouped: dict[str, list[str]] = defaultdict(list)
        for module in sorted(code):
            grouped[subpackage_of(graph, module)].append(module)
        for package, modules in sorted(grouped.items()):
            total = sum(1 for m in graph.files if subpackage_of(graph, m) == package)
            short = ", ".join(m.rpartition(".")[2] if m != package else "__init__" for m in modules)
            yield f"    {package}: {len(modules)}/{total}  {short}"
        missing = uncovered(graph, stage)
        if missing:
            yield "    not covered by its deps now: " + ", ".join(missing)
        yield "    suggested code deps:"
        yield from (f"      - {dep}" for dep in suggested_code_deps(graph, stage))
        yield ""


def rewrite_code_deps(text: str, new_deps: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each named stage's code deps replaced by ``new_deps[stage]``,
    written first in its ``deps:`` list; every other line (data deps, comments) kept."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage = None
    in_deps = False
    deps_indent = ""
    for line in lines:
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        match = re.match(r"^  ([\w.-]+):\s*(#.*)?$", line)
        if match:
            stage, in_deps = match.group(1), False
        if in_deps:
            item = re.match(r"^(\s*)- (\S+)\s*(#.*)?$", line)
            if item and item.group(1) == deps_indent:
                if is_code_path(item.group(2)):
                    continue
                out.append(line)
                continue
            if stripped and len(indent) <= len(deps_indent) - 2:
                in_deps = False
        if stripped == "deps:" and stage in new_deps:
            in_deps = True
            deps_indent = indent + "  "
            out.append(line)
            out.extend(f"{deps_indent}- {dep}\n" for dep in new_deps[stage])
            continue
        out.append(line)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--write", action="store_true", help="write the suggested code deps")
    args = parser.parse_args(argv)
    graph = build(args.root)
    stages = read_stages(args.root)
    for line in report(graph, stages):
        print(line)
    for problem in graph.unresolved:
        print(f"unresolved import: {problem}")
    if args.write:
        dvc_yaml = args.root / "dvc.yaml"
        new = {stage.name: suggested_code_deps(graph, stage) for stage in stages}
        dvc_yaml.write_text(rewrite_code_deps(dvc_yaml.read_text(encoding="utf-8"), new))
        print(f"code deps written to {dvc_yaml}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
