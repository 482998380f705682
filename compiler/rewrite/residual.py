"""Residual blocks that can be skipped: an identity-shortcut add whose body can be removed as a whole."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from compiler.ir import copy_graph, remove_nodes, replace_uses
from compiler.validate import validate


@dataclass(frozen=True)
class SkippableBlock:
    """Removing `body` and `add` and reading `shortcut` instead leaves a valid network of the same shapes."""

    id: str  # the add node's name
    add: str
    shortcut: str
    body: tuple[str, ...]


def _body(g: nx.DiGraph, add: str, shortcut: str, branch: str) -> tuple[str, ...] | None:
    if shortcut == branch or not nx.has_path(g, shortcut, branch):
        return None
    body = (nx.descendants(g, shortcut) & nx.ancestors(g, branch)) | {branch}
    outputs = set(g.graph["outputs"].values())
    for name in body:
        d = g.nodes[name]
        if d.get("fixed") or name in outputs:
            return None
        if any(i not in body and i != shortcut for i in d["inputs"]):
            return None  # the body reads something besides the shortcut
        if any(c not in body and c != add for c in g.successors(name)):
            return None  # someone outside the block reads the body
    return tuple(n for n in nx.topological_sort(g.subgraph(body)))


def skippable_blocks(g: nx.DiGraph) -> list[SkippableBlock]:
    """Every two-input add with an identity shortcut and a self-contained, non-fixed body."""
    found = []
    for name, d in g.nodes(data=True):
        if d["op"] != "add" or len(d["inputs"]) != 2 or d.get("fixed"):
            continue
        for shortcut, branch in (d["inputs"], d["inputs"][::-1]):
            if g.nodes[shortcut]["shape"] != d["shape"]:
                continue
            body = _body(g, name, shortcut, branch)
            if body:
                found.append(SkippableBlock(name, name, shortcut, body))
                break
    return found


def drop_blocks(g: nx.DiGraph, blocks: list[SkippableBlock]) -> nx.DiGraph:
    """A copy of g without the given blocks: their readers read the shortcut instead (a shortcut that is itself
    a dropped block's add stands for that block's shortcut, so chained blocks may be dropped together)."""
    out = copy_graph(g)
    became: dict[str, str] = {}  # a dropped add -> what its readers read now
    for block in blocks:
        if block.add not in out:
            continue  # inside the body of a block already dropped
        shortcut = block.shortcut
        while shortcut in became:
            shortcut = became[shortcut]
        replace_uses(out, block.add, shortcut)
        remove_nodes(out, [n for n in (*block.body, block.add) if n in out])
        became[block.add] = shortcut
    return validate(out)
