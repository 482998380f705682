"""Comparing an imported network with the one it came from: the same graph up to the names of weightless nodes."""

from __future__ import annotations

import json

import networkx as nx

from compiler.cost import network_cost
from compiler.ir import copy_graph, remove_nodes, replace_uses
from compiler.ops import OPS
from compiler.shapes import conv_padding

COMMUTATIVE = frozenset({"add", "mul"})


def without(g: nx.DiGraph, op: str) -> nx.DiGraph:
    """A copy with every `op` node bypassed (its consumers read its input)."""
    g = copy_graph(g)
    for name in [n for n, d in g.nodes(data=True) if d["op"] == op]:
        replace_uses(g, name, g.nodes[name]["inputs"][0])
        remove_nodes(g, [name])
    return g


def explicit_padding(g: nx.DiGraph) -> nx.DiGraph:
    """A copy with padding="same" written as the number it means, as the exporters write it."""
    g = copy_graph(g)
    for _, d in g.nodes(data=True):
        if d["attrs"].get("padding") == "same":
            d["attrs"] = {**d["attrs"], "padding": conv_padding(d["attrs"])}
    return g


def onnx_view(g: nx.DiGraph) -> nx.DiGraph:
    """The network as ONNX describes it: for inference (no dropout), explicit padding, and an adaptive average pool
    to s x s (s > 1) as the fixed average pool PyTorch's exporter writes for it."""
    g = explicit_padding(without(g, "dropout"))
    for _, d in g.nodes(data=True):
        if d["op"] == "adaptive_avgpool" and d["attrs"]["size"] > 1:
            k = g.nodes[d["inputs"][0]]["shape"][1] // d["attrs"]["size"]
            d["op"], d["attrs"] = "avgpool", {"k": k, "stride": None, "padding": 0, "ceil_mode": False,
                                              "count_include_pad": False}
    return g


def _labelled(g: nx.DiGraph) -> nx.DiGraph:
    out = nx.DiGraph()
    outputs = {v: k for k, v in g.graph["outputs"].items()}
    for name, d in g.nodes(data=True):
        named = name if OPS[d["op"]].layer is not None else None
        attrs = d["attrs"] if d["op"] != "input" else {}
        out.add_node(name, key=(d["op"], json.dumps(attrs, sort_keys=True), tuple(d["shape"]), named,
                                name in outputs))
    for name, d in g.nodes(data=True):
        for i, src in enumerate(d["inputs"]):
            i = 0 if d["op"] in COMMUTATIVE else i  # the lowering may swap add's operands (it adds in place)
            positions = out.edges[src, name]["at"] + (i,) if out.has_edge(src, name) else (i,)
            out.add_edge(src, name, at=positions)
    return out


def same_graph(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Ops, attributes, shapes and wiring equal (add's and mul's operands in any order); layers also by name."""
    return nx.is_isomorphic(_labelled(a), _labelled(b), node_match=lambda x, y: x["key"] == y["key"],
                            edge_match=lambda x, y: x["at"] == y["at"])


def same_cost(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    ca, cb = network_cost(a), network_cost(b)
    return (ca.macs, ca.params) == (cb.macs, cb.params)
