"""No module imports a module that imports it, at any depth.

The graph is read from the source with `ast`, so an import inside a function or under `TYPE_CHECKING` counts as
much as one at the top: a function-level import that hides a cycle is still a cycle. `drivers.x` and
`balloonsim.drivers.x` both name a module of the top-level `drivers/` folder (it is installed as
`balloonsim.drivers`). Importing a submodule also runs its package's `__init__`, but Python resolves that order
itself; like other import-graph tools this test counts only the imports a module writes.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (folder, the package name its modules have when installed)
SOURCES = ((ROOT / "balloonsim", "balloonsim"), (ROOT / "drivers", "balloonsim.drivers"))
ALIASES = {"drivers": "balloonsim.drivers"}  # the name drivers/ had before it was installed under balloonsim


@dataclass(frozen=True)
class Edge:
    target: str
    line: int


def module_files() -> dict[str, Path]:
    """Every module of the package by its installed dotted name."""
    out: dict[str, Path] = {}
    for folder, package in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def canonical(name: str) -> str:
    for old, new in ALIASES.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return name


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is a module of ours (None: a third-party or standard module)."""
    parts = canonical(name).split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """The modules of ours that `module` imports anywhere in its text."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges: list[Edge] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name, modules)
                if target:
                    edges.append(Edge(target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg
                target = _known(f"{source}.{alias.name}", modules) if alias.name != "*" else None
                if target != canonical(f"{source}.{alias.name}"):
                    target = _known(source, modules)
                if target:
                    edges.append(Edge(target, node.lineno))
    return [edge for edge in edges if edge.target != module or not is_package]


def import_graph() -> dict[str, list[Edge]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def components(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components (Tarjan): modules that all reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(start: str) -> None:
        # iterative Tarjan: the graph is small, but recursion depth should not depend on it
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for edge in edges:
                if edge.target not in index:
                    index[edge.target] = low[edge.target] = len(index)
                    stack.append(edge.target)
                    on_stack.add(edge.target)
                    work.append((edge.target, iter(graph[edge.target])))
                    break
                if edge.target in on_stack:
                    low[node] = min(low[node], index[edge.target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            strongconnect(name)
    return components


def cycles(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component that has one (a BFS inside the component)."""
    found = []
    for component in components(graph):
        members = set(component)
        start = component[0]
        if len(component) == 1 and all(edge.target != start for edge in graph[start]):
            continue
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            nexts = sorted({edge.target for edge in graph[node] if edge.target in members})
            if start in nexts:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                found.append([*reversed(path), start])
                break
            for target in nexts:
                if target not in previous and target != start:
                    previous[target] = node
                    queue.append(target)
    return sorted(found)


def describe(cycle: list[str], graph: dict[str, list[Edge]]) -> str:
    files = module_files()
    steps = []
    for source, target in zip(cycle, cycle[1:], strict=False):
        line = min(edge.line for edge in graph[source] if edge.target == target)
        steps.append(f"  {source} -> {target}  ({files[source].relative_to(ROOT)}:{line})")
    component = next(c for c in components(graph) if cycle[0] in c)
    more = f"\n  (and all of {', '.join(component)} import each other)" if len(component) > len(cycle) - 1 else ""
    return " -> ".join(cycle) + "\n" + "\n".join(steps) + more


def test_the_graph_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    """The checker would be blind to hidden cycles if it only read top-level imports."""
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from balloonsim.errors import UserError\n"
        "def f():\n    from drivers.base import Driver\n    import balloonsim.units\n"
        "from . import types\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(text)
    modules = module_files()
    targets = {edge.target for edge in imports_of("balloonsim.probe", path, modules)}
    assert targets == {"balloonsim.errors", "balloonsim.drivers.base", "balloonsim.units", "balloonsim.types"}


def test_cycle_finder_names_a_planted_cycle() -> None:
    graph = {
        "a": [Edge("b", 1)],
        "b": [Edge("c", 2)],
        "c": [Edge("a", 3), Edge("d", 4)],
        "d": [],
        "e": [Edge("e", 5)],
    }
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]


def test_no_import_cycle_anywhere() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)
