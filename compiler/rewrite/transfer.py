"""Weight transfer for synthesis: a narrowed child's weights are slices of its trained parent's.

The child IR has the parent's node names; some layers keep a subset of their output channels, some blocks are
gone (their readers rewired). `kept[node]` lists the parent output channels a layer keeps; every other node's
channels follow from its inputs (pass-through ops keep their input's channels, concat offsets, split slices,
add/mul operands share one set, flatten expands a channel into its H*W features). Each parametric layer then
takes the parent's tensors at those indices, on both its output and its input side. A conv the child holds
factorized (compiler.rewrite.factorize: a new depthwise conv before a 1 x 1 conv of the original's name) gets the best
depthwise-separable approximation of its kept kernel. Only the mechanism is here; which channels to keep is
synthesis's policy. Tensors are indexed with plain lists, so torch tensors and numpy arrays both work and this
module needs no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ir import topo_order
from compiler.rewrite.factorize import factorized_pairs, separable_factors
from compiler.shapes import split_sizes

Index = list[int]
FREE_WIDTH_OPS = frozenset({"conv", "conv_transpose", "linear"})  # ops whose kept channels are chosen
PASS_THROUGH_OPS = frozenset({
    "bn", "relu", "relu6", "leaky_relu", "sigmoid", "hardswish", "hardsigmoid", "silu", "gelu", "softmax",
    "maxpool", "avgpool", "gap", "adaptive_avgpool", "dropout", "upsample", "identity"})


def _fail(g: nx.DiGraph, name: str, message: str) -> NetError:
    node = g.nodes[name] if name in g else {}
    return NetError(f"weight transfer: {node.get('op', 'node')} '{name}': {message}", node.get("span"))


def _shared(child_g: nx.DiGraph, name: str, sets: dict[str, Index]) -> Index:
    """The one channel set of an add/mul's (or non-channel concat's) full-size operands, which must agree."""
    d = child_g.nodes[name]
    rank, channels = len(d["shape"]), d["shape"][0]
    full = [i for i in d["inputs"] if len(child_g.nodes[i]["shape"]) == rank and child_g.nodes[i]["shape"][0] == channels]
    if not full:
        return list(range(channels))
    for other in full[1:]:
        if sets[other] != sets[full[0]]:
            raise _fail(child_g, name, f"its operands '{full[0]}' and '{other}' keep different channels; "
                                       "operands of an elementwise op must keep the same ones")
    return list(sets[full[0]])


def _depthwise_conv(g: nx.DiGraph, name: str) -> bool:
    d = g.nodes[name]
    return d["op"] == "conv" and 1 < d["attrs"]["groups"] == g.nodes[d["inputs"][0]]["shape"][0] == d["shape"][0]


def _channel_set(parent_g: nx.DiGraph, child_g: nx.DiGraph, name: str, sets: dict[str, Index],
                 kept: Mapping[str, Index]) -> Index:
    """The parent output channels carried by each of a child node's output channels, in order."""
    d, p = child_g.nodes[name], parent_g.nodes[name]
    op, a = d["op"], d["attrs"]
    ins = [sets[i] for i in d["inputs"]]
    if op == "input":
        return list(range(p["shape"][0]))
    if op in FREE_WIDTH_OPS and name not in kept and _depthwise_conv(parent_g, name):
        return list(ins[0])  # a conv with groups = in = out channels follows its input, as a dwconv does
    if op in FREE_WIDTH_OPS:
        return [int(c) for c in kept.get(name, range(p["shape"][0]))]
    if op == "dwconv":
        m = a["multiplier"]
        return [c * m + j for c in ins[0] for j in range(m)]
    if op in PASS_THROUGH_OPS:
        return list(ins[0])
    if op == "flatten":
        block = math.prod(parent_g.nodes[p["inputs"][0]]["shape"][1:])
        if math.prod(child_g.nodes[d["inputs"][0]]["shape"][1:]) != block:
            raise _fail(child_g, name, "its input's spatial size differs from the parent's")
        return [c * block + j for c in ins[0] for j in range(block)]
    if op in ("add", "mul"):
        return _shared(child_g, name, sets)
    if op == "concat":
        if a["dim"] % len(d["shape"]) != 0:
            return _shared(child_g, name, sets)
        if len(d["inputs"]) != len(p["inputs"]):
            raise _fail(child_g, name, f"it has {len(d['inputs'])} operands, the parent's has {len(p['inputs'])}")
        out, offset = [], 0
        for parent_input, index in zip(p["inputs"], ins):
            out += [offset + c for c in index]
            offset += parent_g.nodes[parent_input]["shape"][0]
        return out
    if op == "split":
        parent_sizes = split_sizes(p["attrs"]["sections"], parent_g.nodes[p["inputs"][0]]["shape"][0])
        child_sizes = split_sizes(a["sections"], len(ins[0]))
        start, size = sum(parent_sizes[:a["part"]]), parent_sizes[a["part"]]
        first = sum(child_sizes[:a["part"]])
        part = ins[0][first:first + child_sizes[a["part"]]]
        if any(not start <= c < start + size for c in part):
            raise _fail(child_g, name, f"part {a['part']} would take channels from outside the parent's part")
        return [c - start for c in part]
    if op == "channel_shuffle":
        g, per_child, per_parent = a["groups"], len(ins[0]) // a["groups"], p["shape"][0] // a["groups"]
        carried = [ins[0][(j % g) * per_child + j // g] for j in range(len(ins[0]))]
        return [(c % per_parent) * g + c // per_parent for c in carried]
    raise _fail(child_g, name, "no channel rule for this op")


def channel_index_sets(parent_g: nx.DiGraph, child_g: nx.DiGraph, kept: Mapping[str, Index]) -> dict[str, Index]:
    """For every child node, the parent output channels (dim 0 indices) that its output channels carry."""
    for name in kept:
        if name not in child_g:
            raise NetError(f"weight transfer: kept channels given for '{name}', which the child does not have")
    sets: dict[str, Index] = {}
    depthwise_halves = set(factorized_pairs(parent_g, child_g).values())
    for name in topo_order(child_g):
        d = child_g.nodes[name]
        if name in depthwise_halves:  # carries its input's channels, one filter each
            sets[name] = list(sets[d["inputs"][0]])
            continue
        if name not in parent_g:
            raise _fail(child_g, name, "the parent has no node of this name")
        p = parent_g.nodes[name]
        if p["op"] != d["op"]:
            raise _fail(child_g, name, f"it is a {p['op']} in the parent")
        index = _channel_set(parent_g, child_g, name, sets, kept)
        if name in kept and d["op"] not in FREE_WIDTH_OPS and [int(c) for c in kept[name]] != index:
            raise _fail(child_g, name, "its kept channels disagree with those its input carries")
        if len(index) != d["shape"][0]:
            raise _fail(child_g, name, f"it has {d['shape'][0]} channels but keeps {len(index)} of the parent's")
        if len(set(index)) != len(index) or any(not 0 <= c < p["shape"][0] for c in index):
            raise _fail(child_g, name, f"kept channels must be distinct indices below {p['shape'][0]}")
        sets[name] = index
    return sets


def _grouped_columns(g: nx.DiGraph, name: str, rows: Index, cols: Index, parent_rows: int, parent_cols: int,
                     parent_groups: int, child_groups: int) -> list[Index]:
    """For each kept row (a grouped weight's dim 0), the group-local parent indices of its kept columns."""
    rows_per_child, cols_per_child = len(rows) // child_groups, len(cols) // child_groups
    rows_per_parent, cols_per_parent = parent_rows // parent_groups, parent_cols // parent_groups
    out = []
    for position, row in enumerate(rows):
        group = row // rows_per_parent
        start = (position // rows_per_child) * cols_per_child
        local = []
        for col in cols[start:start + cols_per_child]:
            if col // cols_per_parent != group:
                raise _fail(g, name, f"channel {col} is not in the parent's group {group} of this grouped conv")
            local.append(col - group * cols_per_parent)
        out.append(local)
    return out


def _take(tensor, rows: Index, cols: list[Index] | Index | None = None):
    """tensor[rows] (and, per row, [cols] on dim 1): a copy, for torch tensors and numpy arrays alike."""
    if cols is None:
        return tensor[list(rows)]
    if cols and isinstance(cols[0], list):
        return tensor[[[r] for r in rows], cols]
    return tensor[list(rows)][:, list(cols)]


def _fit_kernel(weight, kernel: int):
    """A conv kernel centre-cropped or zero-padded to kernel x kernel: a 3x3 kernel inside 5x5 zeros computes
    the same function under "same" padding, so a choice(3, 5) of kernel size inherits trained weights."""
    size = weight.shape[-1]
    if size == kernel:
        return weight
    if size > kernel:
        lo = (size - kernel) // 2
        return weight[..., lo:lo + kernel, lo:lo + kernel]
    lo = (kernel - size) // 2
    if hasattr(weight, "new_zeros"):
        out = weight.new_zeros((*weight.shape[:-2], kernel, kernel))
    else:
        import numpy as np

        out = np.zeros((*weight.shape[:-2], kernel, kernel), dtype=weight.dtype)
    out[..., lo:lo + size, lo:lo + size] = weight
    return out


def _groups(g: nx.DiGraph, name: str) -> int:
    d = g.nodes[name]
    return g.nodes[d["inputs"][0]]["shape"][0] if d["op"] == "dwconv" else d["attrs"]["groups"]


def transfer_weights(parent_g: nx.DiGraph, parent_state: Mapping, child_g: nx.DiGraph,
                     kept: Mapping[str, Index]) -> dict:
    """The child's state dict: the parent's tensors sliced to the channels each child layer keeps."""
    sets = channel_index_sets(parent_g, child_g, kept)
    factorized = factorized_pairs(parent_g, child_g)
    state = {}

    def get(key: str):
        if key not in parent_state:
            raise NetError(f"weight transfer: the parent's weights have no '{key}'")
        return parent_state[key]

    for name in topo_order(child_g):
        d = child_g.nodes[name]
        op, a = d["op"], d["attrs"]
        if op not in FREE_WIDTH_OPS | {"dwconv", "bn"} or name in factorized.values():
            continue
        out_index = sets[name]
        in_index = sets[d["inputs"][0]]
        p = parent_g.nodes[name]
        parent_in = parent_g.nodes[p["inputs"][0]]["shape"][0]
        if op == "bn":
            keys = (["weight", "bias"] if a["affine"] else []) + ["running_mean", "running_var"]
            state.update({f"{name}.{k}": _take(get(f"{name}.{k}"), in_index) for k in keys})
            state[f"{name}.num_batches_tracked"] = get(f"{name}.num_batches_tracked")
            continue
        weight = get(f"{name}.weight")
        if op == "linear":
            state[f"{name}.weight"] = _take(weight, out_index, in_index)
        elif op == "conv_transpose":
            cols = _grouped_columns(child_g, name, in_index, out_index, parent_in, p["shape"][0],
                                    _groups(parent_g, name), _groups(child_g, name))
            state[f"{name}.weight"] = _take(weight, in_index, cols)
        else:
            parent_groups, child_groups = _groups(parent_g, name), _groups(child_g, name)
            if parent_groups == child_groups == 1:
                state[f"{name}.weight"] = _take(weight, out_index, in_index)
            else:
                cols = _grouped_columns(child_g, name, out_index, in_index, p["shape"][0], parent_in,
                                        parent_groups, child_groups)
                state[f"{name}.weight"] = _take(weight, out_index, cols)
        if name in factorized:
            state[f"{factorized[name]}.weight"], state[f"{name}.weight"] = separable_factors(state[f"{name}.weight"])
        elif op != "linear":
            state[f"{name}.weight"] = _fit_kernel(state[f"{name}.weight"], a["k"])
        if a["bias"]:
            state[f"{name}.bias"] = _take(get(f"{name}.bias"), out_index)
    return state
