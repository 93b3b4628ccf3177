"""The package's import graph goes one way: no cycles, and the layers import only downward.

The graph is read from the source (every `import`, function-local ones included; imports under
`if TYPE_CHECKING:` are for annotations and run nothing), so a lazy import that closes a loop counts.

    drivers   cli, pipeline                      run cells and render
    renderers report/, gate, calibrate           render and compare stored results
    analysis  analysis/                          statistics, floors, costs, verdicts: pure
    runtime   worker, techniques/, evaluate/, executors/, train, models, planner, ...   run cells
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
DRIVERS = ("harness.cli", "harness.pipeline")
RENDERERS = ("harness.report", "harness.gate", "harness.calibrate")
RUNS_CELLS = (
    "harness.worker",
    "harness.techniques",
    "harness.evaluate",
    "harness.executors",
    "harness.train",
    "harness.models",
    "harness.search",
    "harness.tracking",
    "harness.retrieval",
    "harness.planner",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:`."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for statement in node.body for child in ast.walk(statement)}
    return skipped


def imported(path: Path, modules: set[str]) -> set[str]:
    """The harness modules `path` imports (a `from package import name` counts as the submodule when
    `name` is one)."""
    tree = ast.parse(path.read_text())
    skipped, own = _type_checking_blocks(tree), module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("harness") and name != own:
                found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported(path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(name: str, layers: tuple[str, ...]) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in layers)


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_recipe_schema_is_in_no_cycle(graph):
    # config checks names against modules that import nothing of it (kinds, retrievers, figures, search
    # spaces); the checks that need more (a model that resolves, a task's data) are preflight.py's
    assert [c for c in cycles(graph) if "harness.config" in c] == []


def test_only_drivers_and_renderers_import_the_report(graph):
    wrong = {m: sorted(i for i in deps if _in(i, ("harness.report",))) for m, deps in graph.items()}
    assert {m: d for m, d in wrong.items() if d and not _in(m, DRIVERS + RENDERERS)} == {}


def test_analysis_imports_no_renderer_and_nothing_that_runs_cells(graph):
    above = DRIVERS + RENDERERS + RUNS_CELLS
    wrong = {m: sorted(i for i in deps if _in(i, above)) for m, deps in graph.items() if _in(m, ("harness.analysis",))}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_renderers_import_nothing_that_runs_cells(graph):
    below = RUNS_CELLS + DRIVERS
    wrong = {m: sorted(i for i in deps if _in(i, below)) for m, deps in graph.items() if _in(m, RENDERERS)}
    assert {m: d for m, d in wrong.items() if d} == {}
