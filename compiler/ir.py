"""The graph IR: a networkx DiGraph whose nodes are plain data.

A node is keyed by its hierarchical name (``stage2.block1.conv``) and holds:
    op       the op name (a key of compiler.ops.OPS)
    attrs    every parameter of the op, defaults filled in (plain ints, floats, strings, lists)
    inputs   the ordered names of the nodes it reads (repeats allowed: add(x, x)); the one source of truth,
             the graph's edges (producer -> reader) are derived from it
    shape    its per-sample output shape (no batch dim), set by infer_shapes; None before
    span     the compiler.diagnostics.Span it came from, or None
    fixed    True when synthesis must never rewrite it
    choices  {attr: decision id} for attributes that synthesis may choose

Graph attributes: ``name``, ``inputs`` (input node names in order), ``outputs`` ({output name: node name}),
``decisions`` ({decision id: [options]}, the first option being the prototype's), ``scopes``
({name prefix: block name}, for display) and, from the builder, ``calls`` ({name prefix: the Span of the block
call that made it}, so an error about a node inside a library block can say where the file called it).

Every change to what reads what goes through the functions here (add_node, set_inputs, replace_uses,
remove_nodes), which keep the edges equal to the `inputs` lists; compiler.lint checks that and the other
invariants, and every rewrite is tested against it.
"""

from __future__ import annotations

import copy
import hashlib
import json

import networkx as nx

from compiler.diagnostics import NetError, Span, source_text


def new_graph(name: str) -> nx.DiGraph:
    """An empty network."""
    g = nx.DiGraph()
    g.graph.update(name=name, inputs=[], outputs={}, decisions={}, scopes={})
    return g


def add_node(
    g: nx.DiGraph,
    name: str,
    op: str,
    attrs: dict,
    inputs: list[str],
    span: Span | None = None,
    fixed: bool = False,
    choices: dict[str, str] | None = None,
) -> str:
    """Add a node reading `inputs` (which must exist) and return its name."""
    if name in g:
        raise NetError(f"name '{name}' is already used", span)
    for src in inputs:
        if src not in g:
            raise NetError(f"'{name}' reads '{src}', which is not defined", span)
    g.add_node(name, op=op, attrs=dict(attrs), inputs=[], shape=None, span=span, fixed=fixed,
               choices=dict(choices or {}))
    set_inputs(g, name, inputs)
    if op == "input":
        g.graph["inputs"].append(name)
    return name


def set_inputs(g: nx.DiGraph, name: str, inputs: list[str]) -> None:
    """Make node `name` read `inputs` (which must exist), in order; its incoming edges follow."""
    for src in inputs:
        if src not in g:
            raise NetError(f"'{name}' reads '{src}', which is not defined", g.nodes[name].get("span"))
    d = g.nodes[name]
    for src in set(d["inputs"]) - set(inputs):
        g.remove_edge(src, name)
    d["inputs"] = list(inputs)
    for src in inputs:
        g.add_edge(src, name)


def replace_uses(g: nx.DiGraph, old: str, new: str) -> None:
    """Every reader of `old`, and every output naming it, reads `new` instead (as fx's replace_all_uses_with)."""
    for reader in list(g.successors(old)):
        set_inputs(g, reader, [new if i == old else i for i in g.nodes[reader]["inputs"]])
    outputs = g.graph["outputs"]
    for out, node in outputs.items():
        if node == old:
            outputs[out] = new


def remove_nodes(g: nx.DiGraph, names: list[str]) -> None:
    """Remove nodes that no other node and no output reads (NetError naming a remaining reader otherwise)."""
    gone = set(names)
    for name in gone:
        readers = [r for r in g.successors(name) if r not in gone]
        if readers or name in g.graph["outputs"].values():
            raise NetError(f"cannot remove '{name}': {f'{readers[0]!r} reads it' if readers else 'an output reads it'}")
    g.remove_nodes_from(gone)
    g.graph["inputs"] = [i for i in g.graph["inputs"] if i not in gone]


def find_cycle(g: nx.DiGraph) -> list[str] | None:
    """The nodes along one cycle, the first repeated at the end; None when the graph is acyclic."""
    if nx.is_directed_acyclic_graph(g):
        return None
    cycle = nx.find_cycle(g)
    return [u for u, _ in cycle] + [cycle[0][0]]


def call_notes(g: nx.DiGraph, node: str) -> list[str]:
    """The block calls that made a node, innermost first, each located (as errors raised while building note them)."""
    return block_call_notes(node, g.graph.get("calls", {}), g.graph.get("scopes", {}))


def block_call_notes(node: str, calls: dict, scopes: dict) -> list[str]:
    """call_notes from a graph's `calls` and `scopes` (for passes that keep those, not the graph)."""
    parts = node.split(".")
    notes = []
    for depth in range(len(parts) - 1, 0, -1):
        scope = ".".join(parts[:depth])
        span = calls.get(scope)
        if span is not None:
            notes.append(f"in block '{scopes.get(scope, scope)}', called at {span.file}:{span.line}:{span.column}: "
                         f"{source_text(span)}")
    return notes


def topo_order(g: nx.DiGraph) -> list[str]:
    """Node names, producers before consumers, stable with respect to insertion order."""
    index = {name: i for i, name in enumerate(g.nodes)}
    return list(nx.lexicographical_topological_sort(g, key=index.__getitem__))


def consumers(g: nx.DiGraph, name: str) -> list[str]:
    """The nodes reading `name`."""
    return list(g.successors(name))


def copy_graph(g: nx.DiGraph) -> nx.DiGraph:
    """A deep copy: rewrites never alias the original's attribute dicts."""
    return copy.deepcopy(g)


def to_dict(g: nx.DiGraph) -> dict:
    """A JSON-ready description of the network: nodes in topological order, edges, outputs."""
    nodes = []
    for name in topo_order(g):
        d = g.nodes[name]
        span = d.get("span")
        nodes.append({
            "name": name,
            "op": d["op"],
            "attrs": d["attrs"],
            "inputs": d["inputs"],
            "shape": list(d["shape"]) if d.get("shape") is not None else None,
            "fixed": d.get("fixed", False),
            "choices": d.get("choices", {}),
            "span": list(span) if span else None,
        })
    return {
        "name": g.graph["name"],
        "inputs": list(g.graph["inputs"]),
        "outputs": dict(g.graph["outputs"]),
        "decisions": {k: list(v) for k, v in g.graph.get("decisions", {}).items()},
        "scopes": dict(g.graph.get("scopes", {})),
        "nodes": nodes,
        "edges": [[u, v] for u, v in g.edges],
    }


def from_dict(data: dict) -> nx.DiGraph:
    """Inverse of to_dict (shapes are kept as they were stored)."""
    g = new_graph(data["name"])
    for n in data["nodes"]:
        span = Span(*n["span"]) if n.get("span") else None
        add_node(g, n["name"], n["op"], n["attrs"], n["inputs"], span, n.get("fixed", False), n.get("choices"))
        if n.get("shape") is not None:
            g.nodes[n["name"]]["shape"] = tuple(n["shape"])
    g.graph["inputs"] = list(data["inputs"])
    g.graph["outputs"] = dict(data["outputs"])
    g.graph["decisions"] = {k: list(v) for k, v in data.get("decisions", {}).items()}
    g.graph["scopes"] = dict(data.get("scopes", {}))
    return g


def structure(g: nx.DiGraph) -> dict:
    """What makes two networks the same: names, ops, attrs, inputs, shapes, flags, outputs (no spans)."""
    d = to_dict(g)
    for n in d["nodes"]:
        del n["span"]
    del d["scopes"]
    d["edges"] = sorted(d["edges"])
    return d


def architecture_hash(g: nx.DiGraph) -> str:
    """A short stable hash of the architecture (names excluded from nothing: same text, same hash)."""
    text = json.dumps(structure(g), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
