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
from compiler.ops import OPS
from compiler.rewrite.coupling import is_depthwise_conv
from compiler.rewrite.factorize import factorized_pairs, separable_factors
from compiler.shapes import conv_groups, pair, split_sizes

Index = list[int]
CHOSEN = frozenset({"conv", "width"})  # channels traits whose kept channels are chosen (`kept`), not derived


def _fail(g: nx.DiGraph, name: str, message: str) -> NetError:
    node = g.nodes[name] if name in g else {}
    return NetError(f"weight transfer: {node.get('op', 'node')} '{name}': {message}", node.get("span"))


def _shared(parent_g: nx.DiGraph, child_g: nx.DiGraph, name: str, ins: list[Index], sets: dict[str, Index],
            kept: Mapping[str, Index]) -> Index:
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


def _source(parent_g, child_g, name, ins, sets, kept) -> Index:
    return list(range(parent_g.nodes[name]["shape"][0]))


def _conv(parent_g, child_g, name, ins, sets, kept) -> Index:
    p = parent_g.nodes[name]
    if name not in kept and is_depthwise_conv(p, parent_g.nodes[p["inputs"][0]]["shape"]):
        return list(ins[0])  # a conv with groups = in = out channels follows its input, as a dwconv does
    return _width(parent_g, child_g, name, ins, sets, kept)


def _width(parent_g, child_g, name, ins, sets, kept) -> Index:
    return [int(c) for c in kept.get(name, range(parent_g.nodes[name]["shape"][0]))]


def _depthwise(parent_g, child_g, name, ins, sets, kept) -> Index:
    m = child_g.nodes[name]["attrs"]["multiplier"]
    return [c * m + j for c in ins[0] for j in range(m)]


def _same(parent_g, child_g, name, ins, sets, kept) -> Index:
    return list(ins[0])


def _flatten(parent_g, child_g, name, ins, sets, kept) -> Index:
    block = math.prod(parent_g.nodes[parent_g.nodes[name]["inputs"][0]]["shape"][1:])
    if math.prod(child_g.nodes[child_g.nodes[name]["inputs"][0]]["shape"][1:]) != block:
        raise _fail(child_g, name, "its input's spatial size differs from the parent's")
    return [c * block + j for c in ins[0] for j in range(block)]


def _concat(parent_g, child_g, name, ins, sets, kept) -> Index:
    d, p = child_g.nodes[name], parent_g.nodes[name]
    if d["attrs"]["dim"] % len(d["shape"]) != 0:
        return _shared(parent_g, child_g, name, ins, sets, kept)
    if len(d["inputs"]) != len(p["inputs"]):
        raise _fail(child_g, name, f"it has {len(d['inputs'])} operands, the parent's has {len(p['inputs'])}")
    out, offset = [], 0
    for parent_input, index in zip(p["inputs"], ins):
        out += [offset + c for c in index]
        offset += parent_g.nodes[parent_input]["shape"][0]
    return out


def _split(parent_g, child_g, name, ins, sets, kept) -> Index:
    a, p = child_g.nodes[name]["attrs"], parent_g.nodes[name]
    parent_sizes = split_sizes(p["attrs"]["sections"], parent_g.nodes[p["inputs"][0]]["shape"][0])
    child_sizes = split_sizes(a["sections"], len(ins[0]))
    start, size = sum(parent_sizes[:a["part"]]), parent_sizes[a["part"]]
    first = sum(child_sizes[:a["part"]])
    part = ins[0][first:first + child_sizes[a["part"]]]
    if any(not start <= c < start + size for c in part):
        raise _fail(child_g, name, f"part {a['part']} would take channels from outside the parent's part")
    return [c - start for c in part]


def _shuffle(parent_g, child_g, name, ins, sets, kept) -> Index:
    g = child_g.nodes[name]["attrs"]["groups"]
    per_child, per_parent = len(ins[0]) // g, parent_g.nodes[name]["shape"][0] // g
    carried = [ins[0][(j % g) * per_child + j // g] for j in range(len(ins[0]))]
    return [(c % per_parent) * g + c // per_parent for c in carried]


# channels trait (compiler.ops.TRAITS["channels"]) -> rule(parent, child, name, input sets, all sets, kept)
#   -> the parent output channels the child node's output channels carry
CHANNEL_RULES = {
    "source": _source, "conv": _conv, "width": _width, "depthwise": _depthwise, "same": _same, "shuffle": _shuffle,
    "flatten": _flatten, "split": _split, "concat": _concat, "broadcast": _shared,
}


def _channel_set(parent_g: nx.DiGraph, child_g: nx.DiGraph, name: str, sets: dict[str, Index],
                 kept: Mapping[str, Index]) -> Index:
    """The parent output channels carried by each of a child node's output channels, in order."""
    d = child_g.nodes[name]
    rule = CHANNEL_RULES.get(OPS[d["op"]].channels)
    if rule is None:
        raise _fail(child_g, name, "no channel rule for this op")
    return rule(parent_g, child_g, name, [sets[i] for i in d["inputs"]], sets, kept)


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
        if name in kept and OPS[d["op"]].channels not in CHOSEN and [int(c) for c in kept[name]] != index:
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


def _fit_kernel(weight, kernel):
    """A conv kernel centre-cropped or zero-padded to the kernel size (a number, or [h, w]): a 3x3 kernel inside 5x5
    zeros computes the same function under "same" padding, so a choice(3, 5) of kernel size inherits trained weights."""
    kh, kw = pair(kernel)
    if tuple(weight.shape[-2:]) == (kh, kw):
        return weight
    if hasattr(weight, "new_zeros"):
        out = weight.new_zeros((*weight.shape[:-2], kh, kw))
    else:
        import numpy as np

        out = np.zeros((*weight.shape[:-2], kh, kw), dtype=weight.dtype)
    (sh, sw) = weight.shape[-2:]
    # per axis: crop the centre of a larger kernel, or place a smaller one in the centre of zeros
    src = [slice(max(0, (s - k) // 2), max(0, (s - k) // 2) + min(s, k)) for s, k in ((sh, kh), (sw, kw))]
    dst = [slice(max(0, (k - s) // 2), max(0, (k - s) // 2) + min(s, k)) for s, k in ((sh, kh), (sw, kw))]
    out[..., dst[0], dst[1]] = weight[..., src[0], src[1]]
    return out


class _Source:
    """What a layer's tensor rule reads: both graphs, the channel sets, the parent's tensors, the factorized pairs."""

    def __init__(self, parent_g: nx.DiGraph, child_g: nx.DiGraph, sets: dict[str, Index], parent_state: Mapping,
                 factorized: dict[str, str]):
        self.parent_g, self.child_g, self.sets = parent_g, child_g, sets
        self.parent_state, self.factorized = parent_state, factorized

    def get(self, key: str):
        if key not in self.parent_state:
            raise NetError(f"weight transfer: the parent's weights have no '{key}'")
        return self.parent_state[key]

    def channels(self, name: str) -> tuple[Index, Index, int, int]:
        """A node's kept output and input channels, and the parent's output and input channel counts."""
        p = self.parent_g.nodes[name]
        return (self.sets[name], self.sets[self.child_g.nodes[name]["inputs"][0]], p["shape"][0],
                self.parent_g.nodes[p["inputs"][0]]["shape"][0])

    def grouped(self, name: str, weight, rows: Index, cols: Index, parent_rows: int, parent_cols: int):
        """weight[rows] with, per row, its kept columns inside its group (plain rows x cols when ungrouped)."""
        parent_groups, child_groups = conv_groups(self.parent_g, name), conv_groups(self.child_g, name)
        if parent_groups == child_groups == 1:
            return _take(weight, rows, cols)
        return _take(weight, rows, _grouped_columns(self.child_g, name, rows, cols, parent_rows, parent_cols,
                                                    parent_groups, child_groups))

    def bias(self, name: str) -> dict:
        return {f"{name}.bias": _take(self.get(f"{name}.bias"), self.sets[name])} if \
            self.child_g.nodes[name]["attrs"]["bias"] else {}


def _conv_tensors(src: _Source, name: str) -> dict:
    out, inp, parent_out, parent_in = src.channels(name)
    weight = src.grouped(name, src.get(f"{name}.weight"), out, inp, parent_out, parent_in)
    if name in src.factorized:
        depthwise, pointwise = separable_factors(weight)
        tensors = {f"{src.factorized[name]}.weight": depthwise, f"{name}.weight": pointwise}
    else:
        tensors = {f"{name}.weight": _fit_kernel(weight, src.child_g.nodes[name]["attrs"]["k"])}
    return tensors | src.bias(name)


def _conv_transpose_tensors(src: _Source, name: str) -> dict:
    out, inp, parent_out, parent_in = src.channels(name)
    weight = src.grouped(name, src.get(f"{name}.weight"), inp, out, parent_in, parent_out)  # [in, out / groups]
    return {f"{name}.weight": _fit_kernel(weight, src.child_g.nodes[name]["attrs"]["k"])} | src.bias(name)


def _linear_tensors(src: _Source, name: str) -> dict:
    out, inp, _, _ = src.channels(name)
    return {f"{name}.weight": _take(src.get(f"{name}.weight"), out, inp)} | src.bias(name)


def _batchnorm_tensors(src: _Source, name: str) -> dict:
    keys = (["weight", "bias"] if src.child_g.nodes[name]["attrs"]["affine"] else []) + ["running_mean", "running_var"]
    tensors = {f"{name}.{k}": _take(src.get(f"{name}.{k}"), src.sets[name]) for k in keys}
    return tensors | {f"{name}.num_batches_tracked": src.get(f"{name}.num_batches_tracked")}


# layer trait (compiler.ops.TRAITS["layer"]) -> rule(source, name) -> the child layer's tensors by state-dict key
WEIGHT_RULES = {
    "conv": _conv_tensors, "conv_transpose": _conv_transpose_tensors, "linear": _linear_tensors,
    "batchnorm": _batchnorm_tensors,
}


def transfer_weights(parent_g: nx.DiGraph, parent_state: Mapping, child_g: nx.DiGraph,
                     kept: Mapping[str, Index]) -> dict:
    """The child's state dict: the parent's tensors sliced to the channels each child layer keeps."""
    factorized = factorized_pairs(parent_g, child_g)
    src = _Source(parent_g, child_g, channel_index_sets(parent_g, child_g, kept), parent_state, factorized)
    state = {}
    for name in topo_order(child_g):
        layer = OPS[child_g.nodes[name]["op"]].layer
        if layer is not None and name not in factorized.values():  # a depthwise half comes with its 1 x 1 conv
            state.update(WEIGHT_RULES[layer](src, name))
    return state
