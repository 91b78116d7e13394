"""Package layout rules of DESIGN.md: import directions, and our ``datasets`` shadowing Hugging Face's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

#: The contract modules of ``benchmark`` that methods and dbs (built in or plugins) build on.
CONTRACT = {"benchmark.registry", "benchmark.tasks", "benchmark.relatedness", "benchmark.collectives",
            "benchmark.config"}
# What each package may import from the project. methods/datasets may use only the contract
# modules of ``benchmark`` (the registry, the task/batch types, relatedness, the collectives), never the
# CLI, runner or store.
ALLOWED = {
    "methods": {"methods", "benchmark.registry", "benchmark.tasks", "benchmark.relatedness", "benchmark.collectives"},
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


def test_the_contract_is_a_leaf():
    """The modules plugins import import nothing of the project but each other: no runner, store or CLI."""
    for module in sorted(CONTRACT):
        path = REPO / (module.replace(".", "/") + ".py")
        others = _project_imports(path) - CONTRACT
        assert not others, f"{module} (part of the plugin contract) imports {sorted(others)}"


def test_datasets_is_ours_not_hugging_face():
    import datasets

    assert Path(datasets.__file__).resolve().is_relative_to(REPO)


@pytest.mark.parametrize("package", PROJECT)
def test_modules_stay_small(package):
    for path in (REPO / package).rglob("*.py"):
        assert len(path.read_text().splitlines()) < 400, f"{path} is over 400 lines: split it"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports when it runs (at import or inside a function); imports under
    ``if TYPE_CHECKING:`` are for annotations only and left out. ``from a import b`` counts ``a.b``
    when that is a module, else ``a``."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    me = _module_name(path)
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else ".".join(me.split(".")[: -node.level] + [node.module])
            candidates = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in candidates:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
                break
    return found


def test_no_import_cycle():
    """The project's modules import each other without a cycle (Tarjan's strongly connected components)."""
    paths = {_module_name(p): p for package in PROJECT for p in (REPO / package).rglob("*.py")}
    graph = {m: _runtime_imports(p, set(paths)) for m, p in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                cycles.append(sorted(component + [v]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
