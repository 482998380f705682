"""Factorized convolutions: a k x k conv rewritten as a depthwise k x k conv followed by a 1 x 1 conv.

This is MobileNet's depthwise-separable layer without a nonlinearity between the two halves (as in Xception):
at the same widths it costs about k² times fewer MACs (a 64 -> 64 3x3 conv: 36,864 MACs per pixel against
4,672), so a MAC budget buys much wider layers. The 1 x 1 conv keeps the original node's name, so channel
coupling, `kept` channels and the node's readers are unchanged; the depthwise conv is a new node before it
(`<name>_dw`) that carries its input's channels. A trained k x k kernel has a best depthwise-separable
approximation (a rank-one factor per input channel, `separable_factors`), which weight transfer uses.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from compiler.ir import add_node, copy_graph, set_inputs
from compiler.ops import OPS
from compiler.shapes import infer_shapes, pair


def factorizable_convs(g: nx.DiGraph) -> list[str]:
    """The convs a rewrite may factorize: ungrouped, larger than 1 x 1, reading more than one channel, not
    fixed and with no declared choice (a choice of kernel size is the user's decision, not the rewrite's)."""
    found = []
    for name, d in g.nodes(data=True):
        if not OPS[d["op"]].factorizable or d.get("fixed") or d.get("choices"):
            continue
        a = d["attrs"]
        if a["groups"] != 1 or max(pair(a["k"])) <= 1 or g.nodes[d["inputs"][0]]["shape"][0] < 2:
            continue
        found.append(name)
    return found


def depthwise_name(g: nx.DiGraph, name: str) -> str:
    """The new depthwise node's name: `<name>_dw`, numbered if the network already uses it."""
    candidate, i = f"{name}_dw", 1
    while candidate in g:
        i += 1
        candidate = f"{name}_dw{i}"
    return candidate


def factorize_convs(g: nx.DiGraph, names: list[str]) -> nx.DiGraph:
    """A copy of g with each named conv split into dwconv(k, stride, padding, dilation) -> conv(out, k=1)."""
    out = copy_graph(g)
    for name in names:
        d = out.nodes[name]
        a = d["attrs"]
        source = d["inputs"][0]
        dw = add_node(out, depthwise_name(out, name), "dwconv", {
            "k": a["k"], "stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"],
            "multiplier": 1, "bias": False}, [source], d.get("span"))
        set_inputs(out, name, [dw])
        d["attrs"] = {**a, "k": 1, "stride": 1, "padding": 0, "dilation": 1}
    return infer_shapes(out)


def factorized_pairs(parent: nx.DiGraph, child: nx.DiGraph) -> dict[str, str]:
    """{1 x 1 conv: its depthwise conv} for every conv of the parent that the child holds factorized: a child
    dwconv the parent lacks, read only by a 1 x 1 conv that is a larger conv in the parent."""
    pairs = {}
    for name, d in child.nodes(data=True):
        if d["op"] != "dwconv" or name in parent:
            continue
        readers = list(child.successors(name))
        if len(readers) != 1:
            continue
        pw = readers[0]
        p = parent.nodes.get(pw)
        c = child.nodes[pw]
        if p is not None and p["op"] == c["op"] == "conv" and c["attrs"]["k"] == 1 < max(pair(p["attrs"]["k"])):
            pairs[pw] = name
    return pairs


def separable_factors(weight):
    """The depthwise [in, 1, k, k] and pointwise [out, in, 1, 1] kernels whose composition best approximates a
    conv kernel [out, in, k, k] (per input channel, the leading singular pair of its out x k² matrix, its
    singular value split evenly between the two). Works on numpy arrays and torch tensors alike."""
    w = np.asarray(weight.detach().cpu() if hasattr(weight, "detach") else weight, dtype=np.float64)
    out, inp, kh, kw = w.shape
    depthwise = np.zeros((inp, 1, kh, kw))
    pointwise = np.zeros((out, inp, 1, 1))
    for i in range(inp):
        u, s, vt = np.linalg.svd(w[:, i].reshape(out, kh * kw), full_matrices=False)
        root = np.sqrt(s[0])
        sign = 1.0 if vt[0].sum() >= 0 else -1.0  # a deterministic sign: the kernel's mass positive
        depthwise[i, 0] = (sign * root * vt[0]).reshape(kh, kw)
        pointwise[:, i, 0, 0] = sign * root * u[:, 0]
    if hasattr(weight, "new_tensor"):
        return weight.new_tensor(depthwise), weight.new_tensor(pointwise)
    dtype = np.asarray(weight).dtype
    return depthwise.astype(dtype), pointwise.astype(dtype)
