"""Imports run one way: compiler imports no other package of ours; gensynth uses compiler only."""

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"compiler": {"netdsl", "gensynth"}, "gensynth": {"netdsl"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    bad = []
    for path in Path(package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{path}: {n}" for n in names if n.split(".")[0] in FORBIDDEN[package]]
    assert not bad, bad
