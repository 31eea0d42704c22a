"""Maintainer check: Hearth's own import graph has no cycle.

    python -m maint.check_cycles            # app, ui and engine; exit 1 on any cycle

import-linter's contracts only see the edges they name (layers, forbidden pairs); a
cycle inside one layer (``app.controller`` <-> ``app.history_actions``) passes them all.
This builds the whole graph of the packages with grimp (the library import-linter is
built on) and fails on every strongly connected component of more than one module,
printing one concrete cycle of it with the import lines that make it.

Every edge counts, the strictest reading of "no cycle":
- imports inside functions (lazy): they still tie the two modules together;
- imports under ``if TYPE_CHECKING:``: the type checker, and a reader, still need both
  modules to understand either. Such edges are marked ``[TYPE_CHECKING only]`` in the
  report, so the fix (often a Protocol or a type moved down) is easy to find.

A module importing its own package's ``__init__`` counts as an edge like any other: Python
runs that ``__init__`` first, so a package that imports its submodules and a submodule that
imports the package form a real cycle.

Runs in ``bash packaging/bootstrap.sh test`` before pytest, and as a fast test
(tests/test_import_graph.py).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grimp

PACKAGES = ("app", "ui", "engine")

Graph = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: str  # "path/to/module.py:12  the import statement", for the report
    type_checking_only: bool
    in_function: bool  # every such import sits inside a function


@dataclass(frozen=True)
class Cycle:
    modules: tuple[str, ...]  # the whole strongly connected component, sorted
    path: tuple[Edge, ...]  # one cycle through it: path[-1].imported == path[0].importer

    def describe(self) -> str:
        names = " -> ".join([e.importer for e in self.path] + [self.path[0].importer])
        lines = [f"import cycle among {len(self.modules)} modules: {names}"]
        for edge in self.path:
            mark = "  [TYPE_CHECKING only]" if edge.type_checking_only else ""
            mark += "  [inside a function]" if edge.in_function else ""
            lines.append(f"    {edge.line}{mark}")
        if len(self.modules) > len(self.path):
            lines.append(f"    (the whole tangle: {', '.join(self.modules)})")
        return "\n".join(lines)


def source_file(module: str) -> str:
    """``app.controller`` -> ``app/controller.py`` (relative when under the current folder),
    without importing anything but the top-level package's spec."""
    top = module.split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return module
    base = Path(next(iter(spec.submodule_search_locations))).parent
    path = base.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def import_lines_in_functions(path: str) -> set[int]:
    """The line numbers of the import statements inside a function body of ``path``."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return set()
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(
                inner.lineno
                for inner in ast.walk(node)
                if isinstance(inner, ast.Import | ast.ImportFrom)
            )
    return lines


def _edges(graph: grimp.ImportGraph) -> dict[str, frozenset[str]]:
    return {m: frozenset(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def strongly_connected(graph: Graph) -> list[tuple[str, ...]]:
    """Tarjan's algorithm, iterative (no recursion limit); components of size > 1, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[tuple[str, ...]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(tuple(sorted(component)))
    return sorted(found)


def shortest_cycle(graph: Graph, component: Sequence[str]) -> list[str]:
    """The shortest cycle through the component's first module (breadth-first)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def find_cycles(packages: Sequence[str] = PACKAGES) -> list[Cycle]:
    """Every import cycle among the modules of ``packages`` (importable from sys.path)."""
    full = grimp.build_graph(*packages, cache_dir=None)
    runtime = _edges(
        grimp.build_graph(*packages, exclude_type_checking_imports=True, cache_dir=None)
    )
    graph = _edges(full)
    cycles = []
    for component in strongly_connected(graph):
        ring = shortest_cycle(graph, component)
        path = []
        for importer, imported in zip(ring, [*ring[1:], ring[0]], strict=True):
            details = full.get_import_details(importer=importer, imported=imported)
            # Several statements may import the same module: one of them is enough to cite.
            first = details[0] if details else None
            source = source_file(importer)
            where = (
                f"{source}:{first['line_number']}  {first['line_contents']}"
                if first
                else f"{source} imports {imported}"
            )
            only_typing = imported not in runtime.get(importer, frozenset())
            in_functions = import_lines_in_functions(source)
            in_function = bool(details) and all(d["line_number"] in in_functions for d in details)
            path.append(Edge(importer, imported, where, only_typing, in_function))
        cycles.append(Cycle(component, tuple(path)))
    return cycles


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES))
    args = parser.parse_args(argv)
    cycles = find_cycles(args.packages)
    for cycle in cycles:
        print(cycle.describe())
    scope = ", ".join(args.packages)
    if cycles:
        print(
            f"{len(cycles)} import cycle(s) in {scope}. Break each one: move the shared part "
            "down into a module both can import, or pass it in (a Protocol, a callback).",
            file=sys.stderr,
        )
        return 1
    print(f"no import cycles in {scope}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
