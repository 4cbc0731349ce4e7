"""The package layout: one package per stage, imports only downwards, no import cycles.

Every ``spert`` import of every module counts, also one inside a function: a lazy import
cannot hide an upward dependency or a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import SRC

#: The stages, lowest first: a module imports modules of its own layer or of lower ones.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("spert.version", "spert.utils", "spert.config", "spert.results"),
    ("spert.data",),
    ("spert.model",),
    ("spert.render",),
    ("spert.evaluation",),
    ("spert.runtime",),
    ("spert.calibration",),
    ("spert.training",),
    ("spert.experiments",),
    ("spert.graph", "spert.active"),
    ("spert", "spert.api", "spert.demo", "spert.ray_extract", "spert.spacy_component"),
    ("spert.serve",),
    ("spert.cli", "spert.__main__"),
)
#: The core: the stages that the tools built on them (API, CLI, server) must never reach into.
CORE = (
    "spert.data",
    "spert.model",
    "spert.render",
    "spert.evaluation",
    "spert.calibration",
    "spert.training",
)
TOOLS = ("spert.api", "spert.cli", "spert.serve")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((SRC / "spert").rglob("*.py"))}


def resolve(name: str) -> str:
    """The module an imported dotted name stands for (a module, else its package)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str) -> set[str]:
    """The spert modules ``module`` imports, anywhere in its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        found |= {resolve(n) for n in names if n == "spert" or n.startswith("spert.")}
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer(module: str) -> int:
    """The layer of a module: that of the longest prefix named in LAYERS."""
    best = (-1, -1)
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best[0]:
                best = (len(name), index)
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer(module)


def test_imports_go_downwards_only() -> None:
    upward = sorted(
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert not upward, "\n".join(upward)


def test_core_never_imports_the_tools() -> None:
    def within(module: str, packages: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in packages)

    bad = sorted(
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if within(m, CORE)
        for t in targets
        if within(t, TOOLS) or t == "spert"
    )
    assert not bad, "\n".join(bad)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_no_import_cycles() -> None:
    cycles = [c for c in strongly_connected(GRAPH) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize(
    "graph, cyclic",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, True),
    ],
)
def test_the_cycle_check_finds_cycles(graph: dict[str, set[str]], cyclic: bool) -> None:
    assert any(len(c) > 1 for c in strongly_connected(graph)) == cyclic


def test_lazy_imports_count() -> None:
    """An import inside a function is an edge of the graph like any other."""
    assert "spert.api" in GRAPH["spert"]  # spert.__getattr__ imports SpERT on first use


def test_moved_module_keeps_its_old_path_for_a_release() -> None:
    """README named ``spert.ray_extract.extract_shards``: the old path still works, and warns."""
    import importlib
    import sys

    sys.modules.pop("spert.ray_extract", None)
    with pytest.warns(DeprecationWarning, match="spert.runtime.ray"):
        old = importlib.import_module("spert.ray_extract")
    from spert.runtime.ray import extract_shards

    assert old.extract_shards is extract_shards
