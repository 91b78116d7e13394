"""Package layout rules of DESIGN.md: import directions, and our ``datasets`` shadowing Hugging Face's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# What each package may import from the project. methods/datasets may use only the contract
# modules of ``benchmark`` (the registry, the task/batch types, relatedness), never the CLI, runner or store.
ALLOWED = {
    "methods": {"methods", "benchmark.registry", "benchmark.tasks", "benchmark.relatedness"},
    "datasets": {"datasets", "benchmark.registry", "benchmark.tasks", "benchmark.relatedness"},
    "results": {"results"},
    "reports": {"reports", "results"},
}
PROJECT = ("benchmark", "methods", "datasets", "results", "reports")


def _project_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in PROJECT}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package):
    for path in (REPO / package).rglob("*.py"):
        for name in _project_imports(path):
            ok = any(name == a or name.startswith(a + ".") for a in ALLOWED[package])
            assert ok, f"{path.relative_to(REPO)} imports {name}; {package} may import only {sorted(ALLOWED[package])}"


def test_datasets_is_ours_not_hugging_face():
    import datasets

    assert Path(datasets.__file__).resolve().is_relative_to(REPO)


@pytest.mark.parametrize("package", PROJECT)
def test_modules_stay_small(package):
    for path in (REPO / package).rglob("*.py"):
        assert len(path.read_text().splitlines()) < 400, f"{path} is over 400 lines: split it"
