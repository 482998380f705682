"""The floors (docs/architecture.md): each part imports only the floors below it, and no module imports itself
back through others."""

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("compiler", "netdsl", "gensynth", "grammars")
COMPILER_CORE = ("compiler.diagnostics", "compiler.ir", "compiler.ops", "compiler.shapes", "compiler.validate",
                 "compiler.lint", "compiler.printer", "compiler.dot", "compiler")
# floor -> the module prefixes that belong to it (the longest matching prefix wins)
FLOORS = {
    "compiler core": COMPILER_CORE,
    "compiler.rewrite": ("compiler.rewrite",),
    "compiler.cost": ("compiler.cost",),
    "compiler.backend": ("compiler.backend",),
    "grammars": ("grammars",),
    "language": ("netdsl",),
    "importers": ("netdsl.importers",),
    "gensynth.data": ("gensynth.data",),
    "gensynth.tasks": ("gensynth.tasks",),
    "gensynth.training": ("gensynth.training",),
    "gensynth.latency": ("gensynth.latency",),  # measurement and latency model; profiling reads the search space
    "synthesis": ("gensynth", "gensynth.latency.profile"),
    "cli": ("netdsl.cli",),
}
# floor -> the floors it may import (its own floor always)
MAY_IMPORT = {
    "compiler core": set(),
    "compiler.rewrite": {"compiler core"},
    "compiler.cost": {"compiler core", "compiler.rewrite"},
    "compiler.backend": {"compiler core", "compiler.rewrite", "compiler.cost"},
    "grammars": set(),
    "language": {"compiler core", "compiler.rewrite", "compiler.cost", "compiler.backend", "grammars"},
    "importers": {"compiler core", "compiler.rewrite", "compiler.cost", "compiler.backend", "grammars", "language"},
    "gensynth.data": {"compiler core"},
    "gensynth.tasks": {"compiler core", "gensynth.data"},
    "gensynth.training": {"compiler core", "compiler.cost", "compiler.backend", "gensynth.data", "gensynth.tasks"},
    "gensynth.latency": {"compiler core", "compiler.rewrite", "compiler.cost", "compiler.backend"},
    "synthesis": {"compiler core", "compiler.rewrite", "compiler.cost", "compiler.backend", "grammars",
                  "gensynth.data", "gensynth.tasks", "gensynth.training", "gensynth.latency"},
    "cli": set(FLOORS),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def floor_of(module: str) -> str:
    best = max(((prefix, floor) for floor, prefixes in FLOORS.items() for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), key=lambda pf: len(pf[0]))
    return best[1]


def imports_of(module: str) -> set[str]:
    """The project modules a module imports, anywhere in its body (`from a import b` counts a.b if it is one)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_every_floor_is_named():
    assert set(MAY_IMPORT) == set(FLOORS)
    for module in MODULES:
        floor_of(module)


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_floor_imports_only_floors_below_it(floor):
    bad = [f"{m} imports {i} ({floor_of(i)})" for m in MODULES if floor_of(m) == floor
           for i in sorted(imports_of(m)) if floor_of(i) not in MAY_IMPORT[floor] | {floor}]
    assert not bad, bad


def test_no_import_cycles():
    graph = nx.DiGraph((m, i) for m in MODULES for i in imports_of(m) if i in MODULES and i != m)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles
