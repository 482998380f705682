"""Strided convolutions: a stride-1 conv (or depthwise conv) given stride 2, so that everything after it runs at half
the resolution.

Where a network spends its MACs depends on resolution as much as on width: a 3 x 3 conv costs H x W times its
per-pixel MACs, so halving the resolution early cuts every later layer's MACs by four, and a MAC budget then
buys much wider layers (EfficientNet scales resolution for this reason; NAS spaces such as MnasNet's search
strides). A conv may be strided when the network stays valid and only spatial extents change: every node keeps
its channel count and rank, flat tensors keep their shape, and the outputs keep theirs, so every parameter
keeps its shape and a trained prototype's weights carry over unchanged. A skip connection or a flatten into a
linear layer that would see a different size makes the conv ineligible.
"""

from __future__ import annotations

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ir import copy_graph, topo_order
from compiler.ops import OPS
from compiler.shapes import conv_padding, infer_shapes, pair, symmetric_padding

STRIDE = 2


def _strided(g: nx.DiGraph, name: str) -> nx.DiGraph:
    """A copy of g with conv `name` at stride 2 ("same" padding made explicit), shapes re-inferred."""
    out = copy_graph(g)
    a = out.nodes[name]["attrs"]
    out.nodes[name]["attrs"] = {**a, "stride": STRIDE, "padding": conv_padding(a)}
    return infer_shapes(out)


def _same_layout(before: nx.DiGraph, after: nx.DiGraph) -> bool:
    """Only spatial extents changed: channels and rank everywhere, whole shapes of flat tensors and outputs."""
    outputs = set(before.graph["outputs"].values())
    for name, d in before.nodes(data=True):
        old, new = tuple(d["shape"]), tuple(after.nodes[name]["shape"])
        if len(old) != len(new) or old[:1] != new[:1] or min(new) < 1:
            return False
        if (len(old) == 1 or name in outputs) and old != new:
            return False
    return True


def _try_stride(g: nx.DiGraph, name: str) -> nx.DiGraph | None:
    """g with `name` strided, or None where that is not allowed."""
    d = g.nodes[name]
    a = d["attrs"]
    if not OPS[d["op"]].stridable or d.get("fixed") or d.get("choices") or a["stride"] != 1 or max(pair(a["k"])) < 2:
        return None
    if not symmetric_padding(a):  # "same" on an even kernel pads unequally, which no explicit padding can keep
        return None
    try:
        out = _strided(g, name)
    except NetError:
        return None
    return out if _same_layout(g, out) else None


def can_stride(g: nx.DiGraph, name: str) -> bool:
    """Whether conv or depthwise conv `name` (stride 1, larger than 1 x 1, not fixed, no declared choice) may be
    given stride 2."""
    return _try_stride(g, name) is not None


def stridable_convs(g: nx.DiGraph) -> list[str]:
    """The convs a rewrite may stride, each on its own (in topological order)."""
    return [name for name in topo_order(g) if can_stride(g, name)]


def stride_convs(g: nx.DiGraph, names: list[str]) -> tuple[nx.DiGraph, tuple[str, ...]]:
    """g with the named convs strided in topological order, skipping any that is no longer eligible once the
    ones before it are strided (resolution would run out, say); and the names it did stride."""
    done = []
    order = {name: i for i, name in enumerate(topo_order(g))}
    for name in sorted((n for n in names if n in g), key=order.__getitem__):
        strided = _try_stride(g, name)
        if strided is not None:
            g = strided
            done.append(name)
    return g, tuple(done)
