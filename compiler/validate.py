"""Validation: the facts every later pass relies on (acyclic, known ops, right arity, nothing dangling)."""

from __future__ import annotations

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ir import call_notes, find_cycle
from compiler.ops import OPS, arity_error


def validate(g: nx.DiGraph) -> nx.DiGraph:
    """Raise NetError for the first problem found; return the graph unchanged when it is sound."""
    cycle = find_cycle(g)
    if cycle:
        raise NetError(f"the network has a cycle: {' -> '.join(cycle)}", g.nodes[cycle[0]].get("span"),
                       call_notes(g, cycle[0]))
    for name, d in g.nodes(data=True):
        spec = OPS.get(d["op"])
        if spec is None:
            raise NetError(f"node '{name}' has unknown op '{d['op']}'", d.get("span"))
        wrong = arity_error(spec, len(d["inputs"]))
        if wrong:
            raise NetError(f"{d['op']} '{name}' {wrong}", d.get("span"), call_notes(g, name))
        if d.get("shape") is not None and any(s <= 0 for s in d["shape"]):
            raise NetError(f"{d['op']} '{name}' has an empty output shape {list(d['shape'])}", d.get("span"),
                           call_notes(g, name))
    outputs = g.graph.get("outputs", {})
    if not outputs:
        raise NetError(f"network '{g.graph.get('name')}' has no output")
    for out, node in outputs.items():
        if node not in g:
            raise NetError(f"output '{out}' refers to '{node}', which is not in the network")
    live = set(outputs.values())
    for node in outputs.values():
        live |= nx.ancestors(g, node)
    for name in g.graph["inputs"]:
        if name not in live:
            raise NetError(f"input '{name}' is not used by any output", g.nodes[name].get("span"))
    for name, d in g.nodes(data=True):
        if name not in live:
            raise NetError(f"{d['op']} '{name}' is computed but no output uses it", d.get("span"), call_notes(g, name))
    return g
