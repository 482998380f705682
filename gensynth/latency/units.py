"""A network as latency units: each costly or structural op with the bn, activations and views that follow it
alone (conv -> bn -> relu), which runtimes fuse into one kernel (onnxruntime) or run back to back (PyTorch).

A unit's latency depends on its ops, their attributes, the spatial sizes it reads and two channel counts: `ci`
(its first input's) and `co` (its output's). The *signature* is everything but the channel counts: units of one
signature share one fitted curve over (ci, co). `unit_graph` builds a unit alone as a network, at given channel
counts, for profiling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import networkx as nx

from compiler.ir import add_node, new_graph
from compiler.rewrite.coupling import ChannelPlan
from compiler.shapes import infer_shapes

# ops a unit absorbs after its head when they read it alone and nothing else reads the head
FOLLOWERS = frozenset({"bn", "relu", "relu6", "leaky_relu", "sigmoid", "hardswish", "hardsigmoid", "silu", "gelu",
                       "dropout", "identity", "flatten"})
DENSE = frozenset({"conv", "conv_transpose", "linear"})  # heads whose cost is bilinear in (ci, co)
CHANNEL_ATTRS = ("out",)  # attributes that follow the channel counts (and the groups of a depthwise conv)


@dataclass(frozen=True)
class Unit:
    """Nodes that run as one kernel: `nodes[0]` is the head, the last node's output leaves the unit."""

    nodes: tuple[str, ...]
    inputs: tuple[str, ...]  # the head's inputs (nodes outside the unit)
    signature: str  # canonical JSON: ops, attributes without channel counts, spatial sizes read
    dense: bool  # a conv, conv_transpose or linear (not depthwise): latency over (ci, co); else over co

    @property
    def head(self) -> str:
        return self.nodes[0]

    @property
    def last(self) -> str:
        return self.nodes[-1]


def depthwise(g: nx.DiGraph, name: str) -> bool:
    """A conv whose groups equal its input and output channels (or a dwconv)."""
    d = g.nodes[name]
    if d["op"] == "dwconv":
        return True
    return d["op"] == "conv" and 1 < d["attrs"]["groups"] == g.nodes[d["inputs"][0]]["shape"][0] == d["attrs"]["out"]


def _attrs(g: nx.DiGraph, name: str) -> dict:
    d = g.nodes[name]
    skip = set(CHANNEL_ATTRS) | ({"groups"} if d["op"] == "conv" and depthwise(g, name) else set())
    return {k: v for k, v in sorted(d["attrs"].items()) if k not in skip}


def network_units(g: nx.DiGraph, order: list[str] | None = None) -> list[Unit]:
    """Partition the network's non-input nodes into units, in execution order."""
    order = order or list(nx.topological_sort(g))
    outputs = set(g.graph["outputs"].values())
    unit_of: dict[str, list[str]] = {}
    heads: list[list[str]] = []
    for name in order:
        d = g.nodes[name]
        if d["op"] == "input":
            continue
        src = d["inputs"][0] if len(d["inputs"]) == 1 else None
        if (d["op"] in FOLLOWERS and src in unit_of and unit_of[src][-1] == src and src not in outputs
                and g.out_degree(src) == 1):
            unit_of[src].append(name)
            unit_of[name] = unit_of[src]
            continue
        unit_of[name] = [name]
        heads.append(unit_of[name])
    return [_unit(g, tuple(nodes)) for nodes in heads]


def _unit(g: nx.DiGraph, nodes: tuple[str, ...]) -> Unit:
    head = g.nodes[nodes[0]]
    dense = head["op"] in DENSE and not depthwise(g, nodes[0])
    sig = {
        "ops": [[g.nodes[n]["op"], _attrs(g, n)] for n in nodes],
        "depthwise": head["op"] == "conv" and depthwise(g, nodes[0]),
        "reads": [list(g.nodes[i]["shape"][1:]) for i in head["inputs"]],
        "same": [head["inputs"].index(i) for i in head["inputs"]],  # which inputs are one tensor read twice
    }
    return Unit(nodes, tuple(head["inputs"]), json.dumps(sig, sort_keys=True, separators=(",", ":")), dense)


def kind(signature: str) -> str:
    """The unit's head op ("conv", "conv depthwise", "add", ...): what network-level calibration scales together."""
    sig = json.loads(signature)
    return sig["ops"][0][0] + (" depthwise" if sig["depthwise"] else "")


def describe(signature: str) -> str:
    """A signature in words: 'conv k=3 s=1 + bn + relu on 28x28'."""
    sig = json.loads(signature)
    parts = []
    for op, attrs in sig["ops"]:
        words = [f"{k}={attrs[k]}" for k in ("k", "stride", "groups") if k in attrs and attrs[k] != 1]
        if op == "conv" and sig["depthwise"]:
            words.append("depthwise")
        parts.append(" ".join([op, *words]))
    reads = ", ".join("x".join(map(str, r)) or "flat" for r in sig["reads"])
    return f"{' + '.join(parts)} on {reads}"


def unit_channels(g: nx.DiGraph, plan: ChannelPlan, unit: Unit) -> tuple[tuple, ...]:
    """The channel expressions (compiler.rewrite.coupling) of the unit's inputs and of its output."""
    return tuple(plan.exprs[i] for i in unit.inputs) + (plan.exprs[unit.last],)


def unit_graph(g: nx.DiGraph, unit: Unit, channels: tuple[int, ...]) -> nx.DiGraph:
    """The unit alone as a network whose inputs have `channels[:-1]` channels and whose output has
    `channels[-1]` (the layout of unit_channels)."""
    out = new_graph("Unit")
    names: dict[str, str] = {}
    for k, src in enumerate(dict.fromkeys(unit.inputs)):
        shape = [channels[unit.inputs.index(src)], *g.nodes[src]["shape"][1:]]
        names[src] = add_node(out, f"in{k}", "input", {"shape": shape}, [])
    co = channels[-1]
    for name in unit.nodes:
        d = g.nodes[name]
        attrs = dict(d["attrs"])
        if "out" in attrs:
            attrs["out"] = co
        if d["op"] == "conv" and depthwise(g, name):
            attrs["groups"] = attrs["out"] = channels[0]
        names[name] = add_node(out, f"n{len(names)}", d["op"], attrs, [names[i] for i in d["inputs"]])
    out.graph["outputs"] = {"y": names[unit.last]}
    return infer_shapes(out)
