"""The benchmarks are not run by the tests, but what they import from convbench must
exist: a module moved in the library breaks them otherwise, unnoticed until rerun."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def convbench_imports() -> list[tuple[str, str, str]]:
    """(bench file, module, name) for every ``from convbench… import name`` in bench/."""
    found = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("convbench"):
                found += [(path.name, node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize(("bench", "module", "name"), convbench_imports())
def test_what_a_benchmark_imports_exists(bench: str, module: str, name: str) -> None:
    imported = importlib.import_module(module)
    assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), (
        f"bench/{bench}: {module} has no {name}"
    )
