"""Shape inference: every node's per-sample output shape, with errors that name the layer and shapes."""

from __future__ import annotations

import math

import networkx as nx

from compiler.diagnostics import NetError, count
from compiler.ir import topo_order
from compiler.ops import OPS

# Elements of one tensor per sample: far beyond any real network, and small enough that every count the cost
# model derives from it stays inside 64-bit integers; a larger shape is refused where it first appears.
MAX_ELEMENTS = 2**48


def fmt(shape) -> str:
    return "[" + ", ".join(str(s) if abs(s) < 10**15 else count(s) for s in shape) + "]"


def _fail(name: str, node: dict, message: str) -> NetError:
    return NetError(f"{node['op']} '{name}': {message}", node.get("span"))


def _image(name: str, node: dict, shape: tuple) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise _fail(name, node, f"expects an image input [C, H, W], got {fmt(shape)}")
    return shape


def _window(size: int, k: int, stride: int, pad: int, dilation: int, ceil_mode: bool = False) -> int:
    span = size + 2 * pad - dilation * (k - 1) - 1
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # PyTorch: the last window must start inside the input or left padding
    return out


def pair(v) -> tuple[int, int]:
    """(h, w) of a kernel, stride, padding or dilation given as one number or an [h, w] pair."""
    return (v[0], v[1]) if isinstance(v, (list, tuple)) else (v, v)


def one_or_pair(h: int, w: int):
    """The canonical value of (h, w): one number when equal, else [h, w]."""
    return h if h == w else [h, w]


def conv_padding(attrs: dict):
    """The padding before each spatial dim of a conv-like node ("same" resolved; needs stride 1): a number, or
    [h, w]. Under "same" an odd total pads one more after than before, as PyTorch does (see same_padding)."""
    pad = attrs["padding"]
    if pad == "same":
        (top, _), (left, _) = same_padding(attrs)
        return one_or_pair(top, left)
    return pad


def same_padding(attrs: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """padding="same" as PyTorch resolves it, per axis ((top, bottom), (left, right)): d(k-1) in all, half before
    and the rest after."""
    sides = []
    for k, d in zip(pair(attrs["k"]), pair(attrs["dilation"])):
        total = d * (k - 1)
        sides.append((total // 2, total - total // 2))
    return sides[0], sides[1]


def symmetric_padding(attrs: dict) -> bool:
    """Whether a conv-like node pads each side equally (not "same" around an even effective kernel)."""
    return attrs["padding"] != "same" or all(before == after for before, after in same_padding(attrs))


def in_channels(g: nx.DiGraph, name: str) -> int:
    """Channels (dim 0) of a node's first input."""
    return g.nodes[g.nodes[name]["inputs"][0]]["shape"][0]


def conv_groups(g: nx.DiGraph, name: str) -> int:
    """The groups of a conv-like node (a dwconv's are its input channels; 1 where the op has none)."""
    d = g.nodes[name]
    return in_channels(g, name) if OPS[d["op"]].shape == "dwconv" else d["attrs"].get("groups", 1)


def _conv_window(name, node, shape, groups, out):
    """A conv's output shape given its groups and output channels."""
    c, h, w = shape
    a = node["attrs"]
    if c % groups or out % groups:
        raise _fail(name, node, f"groups={groups} must divide input channels ({c}) and output channels ({out})")
    k, stride, dilation = pair(a["k"]), pair(a["stride"]), pair(a["dilation"])
    if a["padding"] == "same":
        if stride != (1, 1):
            raise _fail(name, node, 'padding="same" needs stride=1 (as in PyTorch)')
        return (out, h, w)  # PyTorch pads d(k-1) per axis in all, an odd total one more after than before
    pad = conv_padding(a)
    oh, ow = (_window(size, *args) for size, args in zip((h, w), zip(k, stride, pair(pad), dilation)))
    if oh < 1 or ow < 1:
        raise _fail(name, node, f"kernel {a['k']} (dilation {a['dilation']}, padding {pad}) is larger than its input {fmt((c, h, w))}")
    return (out, oh, ow)


def _dwconv(g, name, node, shapes):
    c = _image(name, node, shapes[0])[0]
    return _conv_window(name, node, shapes[0], c, c * node["attrs"]["multiplier"])


def _conv(g, name, node, shapes):
    _image(name, node, shapes[0])
    return _conv_window(name, node, shapes[0], node["attrs"]["groups"], node["attrs"]["out"])


def _conv_transpose(g, name, node, shapes):
    c, h, w = _image(name, node, shapes[0])
    a = node["attrs"]
    if c % a["groups"] or a["out"] % a["groups"]:
        raise _fail(name, node, f"groups={a['groups']} must divide input channels ({c}) and output channels ({a['out']})")
    if a["output_padding"] >= max(a["stride"], a["dilation"]):
        raise _fail(name, node, "output_padding must be smaller than stride or dilation")

    def size(x):
        return (x - 1) * a["stride"] - 2 * a["padding"] + a["dilation"] * (a["k"] - 1) + a["output_padding"] + 1

    oh, ow = size(h), size(w)
    if oh < 1 or ow < 1:
        raise _fail(name, node, f"output would be empty for input {fmt((c, h, w))}")
    return (a["out"], oh, ow)


def _pool(g, name, node, shapes):
    c, h, w = _image(name, node, shapes[0])
    a = node["attrs"]
    k, pad = pair(a["k"]), pair(a["padding"])
    stride, dilation = pair(a["stride"] or a["k"]), pair(a.get("dilation", 1))
    if any(p * 2 > n for p, n in zip(pad, k)):
        raise _fail(name, node, f"padding {a['padding']} must be at most half the kernel size {a['k']}")
    oh, ow = (_window(size, *args, a["ceil_mode"]) for size, args in zip((h, w), zip(k, stride, pad, dilation)))
    if oh < 1 or ow < 1:
        raise _fail(name, node, f"window {a['k']} is larger than its input {fmt((c, h, w))}")
    return (c, oh, ow)


def _linear(g, name, node, shapes):
    if len(shapes[0]) != 1:
        raise _fail(name, node, f"expects a flat input [features], got {fmt(shapes[0])}; add flatten or gap before it")
    return (node["attrs"]["out"],)


def _broadcast(g, name, node, shapes):
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            operands = ", ".join(f"'{i}' {fmt(s)}" for i, s in zip(node["inputs"], shapes))
            raise _fail(name, node, f"operand shapes do not match: {operands}")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _concat(g, name, node, shapes):
    dim = node["attrs"]["dim"]
    rank = len(shapes[0])
    if not -rank <= dim < rank:
        raise _fail(name, node, f"dim {dim} is out of range for rank-{rank} inputs")
    dim %= rank
    for s in shapes:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != dim):
            operands = ", ".join(f"'{i}' {fmt(x)}" for i, x in zip(node["inputs"], shapes))
            raise _fail(name, node, f"operands must agree on every dim but {dim}: {operands}")
    out = list(shapes[0])
    out[dim] = sum(s[dim] for s in shapes)
    return tuple(out)


def split_sizes(sections, channels: int) -> list[int]:
    """The part sizes of a channel split, or raise ValueError saying why it does not fit."""
    if isinstance(sections, int):
        if channels % sections:
            raise ValueError(f"{channels} channels do not split into {sections} equal parts")
        return [channels // sections] * sections
    if sum(sections) != channels:
        raise ValueError(f"sizes {sections} add up to {sum(sections)}, not the {channels} input channels")
    return list(sections)


def _split(g, name, node, shapes):
    a = node["attrs"]
    try:
        sizes = split_sizes(a["sections"], shapes[0][0])
    except ValueError as err:
        raise _fail(name, node, str(err)) from None
    if a["part"] >= len(sizes):
        raise _fail(name, node, f"part {a['part']} does not exist; the split has {len(sizes)} parts")
    return (sizes[a["part"]], *shapes[0][1:])


def _channel_shuffle(g, name, node, shapes):
    c = _image(name, node, shapes[0])[0]
    if c % node["attrs"]["groups"]:
        raise _fail(name, node, f"{c} channels do not divide into {node['attrs']['groups']} groups")
    return shapes[0]


def _upsample(g, name, node, shapes):
    c, h, w = _image(name, node, shapes[0])
    a = node["attrs"]
    if (a["scale"] is None) == (a["size"] is None):
        raise _fail(name, node, "give exactly one of scale or size")
    if a["mode"] == "nearest" and a["align_corners"] is not None:
        raise _fail(name, node, "align_corners only applies to mode=\"bilinear\"")
    if a["size"] is not None:
        return (c, a["size"], a["size"])
    return (c, int(math.floor(h * a["scale"])), int(math.floor(w * a["scale"])))


def _softmax(g, name, node, shapes):
    rank = len(shapes[0])
    if not -rank <= node["attrs"]["dim"] < rank:
        raise _fail(name, node, f"dim {node['attrs']['dim']} is out of range for {fmt(shapes[0])}")
    return shapes[0]


def _bn(g, name, node, shapes):
    if len(shapes[0]) not in (1, 3):
        raise _fail(name, node, f"expects [C, H, W] or [C], got {fmt(shapes[0])}")
    return shapes[0]


def _same(g, name, node, shapes):
    return shapes[0]


# shape trait (compiler.ops.TRAITS["shape"]) -> rule(g, name, node, input shapes) -> output shape
SHAPE_RULES = {
    "input": lambda g, name, node, shapes: tuple(node["attrs"]["shape"]),
    "conv": _conv,
    "dwconv": _dwconv,
    "conv_transpose": _conv_transpose,
    "linear": _linear,
    "pool": _pool,
    "gap": lambda g, name, node, shapes: (_image(name, node, shapes[0])[0],),
    "adaptive_avgpool": lambda g, name, node, shapes: (_image(name, node, shapes[0])[0],) + (node["attrs"]["size"],) * 2,
    "flatten": lambda g, name, node, shapes: (math.prod(shapes[0]),),
    "upsample": _upsample,
    "broadcast": _broadcast,
    "concat": _concat,
    "split": _split,
    "channel_shuffle": _channel_shuffle,
    "softmax": _softmax,
    "bn": _bn,
    "same": _same,
}


def infer_node_shape(g: nx.DiGraph, name: str) -> tuple[int, ...]:
    """The output shape of one node whose inputs' shapes are known."""
    node = g.nodes[name]
    spec = OPS.get(node["op"])
    rule = SHAPE_RULES.get(spec.shape) if spec else None
    if rule is None:
        raise NetError(f"no shape rule for op '{node['op']}' (node '{name}')", node.get("span"))
    shapes = [g.nodes[i]["shape"] for i in node["inputs"]]
    shape = tuple(rule(g, name, node, shapes))
    elements = math.prod(shape)
    if elements > MAX_ELEMENTS:
        what = "its shape" if node["op"] == "input" else "its output"
        raise _fail(name, node, f"{what} {fmt(shape)} would hold {count(elements)} elements per sample, "
                                f"more than netdsl handles ({count(MAX_ELEMENTS)})")
    return shape


def infer_shapes(g: nx.DiGraph) -> nx.DiGraph:
    """Set every node's `shape` in place (and return the graph), in topological order."""
    for name in topo_order(g):
        g.nodes[name]["shape"] = infer_node_shape(g, name)
    return g
