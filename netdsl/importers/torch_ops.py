"""The ATen ops netdsl imports from PyTorch: one handler per op, mapping a torch.export node onto netdsl IR.

A handler takes the converter (netdsl.importers.from_torch), the fx node and its arguments bound by schema name,
and returns the IR node holding the result, or a pending value (Parts of a split, a Shuffling in progress).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from compiler.shapes import fmt
from netdsl.importers.imported import Shuffling, unsupported, window_value

EXAMPLE_BATCH = 2  # a batch of 2 shows where a model mixes the batch dimension into others
PASS_THROUGH = frozenset({"clone", "contiguous", "alias", "detach", "lift_fresh_copy", "expand", "expand_as"})
IGNORED = frozenset({"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size"})
SUPPORTED = [
    "nn.Conv2d (any groups, dilation, padding; square or not)", "nn.ConvTranspose2d (square)", "nn.Linear", "nn.BatchNorm1d/2d",
    "ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Hardswish", "Hardsigmoid", "SiLU", "GELU", "Softmax",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d (square)", "mean((2, 3))", "flatten/view/reshape to [N, features]",
    "+ / += / torch.add", "* (tensor by tensor)", "torch.cat", "chunk/split on channels",
    "channel shuffle (view-transpose-view or nn.ChannelShuffle)", "F.interpolate / nn.Upsample (nearest, bilinear; one factor or a square size)",
    "Dropout", "Identity",
]


@dataclass(frozen=True)
class Param:
    """A parameter or buffer the graph reads: its state_dict key and value."""

    key: str
    tensor: torch.Tensor


@dataclass(frozen=True)
class Parts:
    """The result of chunk/split along channels, before getitem picks a part."""

    source: str
    sections: object  # an int (equal parts) or a list of sizes


def _square(name: str, value, what: str, origin: str) -> int:
    """One int from an int or a [h, w] pair that must be equal."""
    if isinstance(value, int):
        return value
    values = list(value)
    if len(values) == 1 or len(set(values)) == 1:
        return int(values[0])
    raise unsupported(f"{what} with a non-square {name} {values}", origin, SUPPORTED)


# ---- handlers: (converter, fx node, bound arguments) -> IR node name or a pending value ---------------------------
def _conv(c, node, a: dict) -> str:
    if a.get("transposed"):
        return _conv_transpose(c, node, a)
    x = c.tensor(a["input"], node)
    w = c.param(a["weight"])
    if w is None:
        raise unsupported("convolves with a weight computed by the network", c.origin(node), SUPPORTED)
    k, stride, dilation = window_value(w.tensor.shape[2:]), window_value(a["stride"]), window_value(a["dilation"])
    padding = a["padding"]
    if padding == "valid":
        padding = 0
    elif padding != "same":
        padding = window_value(padding)
    cin, cout, groups = c.b.g.nodes[x]["shape"][0], int(w.tensor.shape[0]), int(a["groups"])
    bias = c.param(a["bias"]) if a.get("bias") is not None else None
    common = {"stride": stride, "padding": padding, "dilation": dilation, "bias": bias is not None}
    if groups > 1 and groups == cin and cout % cin == 0:
        op, attrs = "dwconv", {"k": k, **common, "multiplier": cout // cin}
    else:
        op, attrs = "conv", {"out": cout, "k": k, **common, "groups": groups}
    attrs = {key: attrs[key] for key in _ORDER[op]}
    return c.layer(node, op, attrs, x, {"weight": w, "bias": bias})


_ORDER = {
    "conv": ("out", "k", "stride", "padding", "dilation", "groups", "bias"),
    "dwconv": ("k", "stride", "padding", "dilation", "multiplier", "bias"),
}


def _conv_transpose(c, node, a: dict) -> str:
    x = c.tensor(a["input"], node)
    w = c.param(a["weight"])
    if w is None:
        raise unsupported("convolves with a weight computed by the network", c.origin(node), SUPPORTED)
    origin = c.origin(node)
    groups = int(a["groups"])
    attrs = {"out": int(w.tensor.shape[1]) * groups, "k": _square("kernel", w.tensor.shape[2:], "a convolution", origin),
             "stride": _square("stride", a["stride"], "a convolution", origin),
             "padding": _square("padding", a["padding"], "a convolution", origin),
             "output_padding": _square("output_padding", a["output_padding"], "a convolution", origin),
             "dilation": _square("dilation", a["dilation"], "a convolution", origin), "groups": groups}
    bias = c.param(a["bias"]) if a.get("bias") is not None else None
    attrs["bias"] = bias is not None
    return c.layer(node, "conv_transpose", attrs, x, {"weight": w, "bias": bias})


def _linear(c, node, a: dict) -> str:
    x = c.tensor(a["input"], node)
    if len(c.b.g.nodes[x]["shape"]) != 1:
        raise unsupported(f"applies a linear layer to a [N, {', '.join(map(str, c.b.g.nodes[x]['shape']))}] tensor "
                          "(netdsl's linear takes [N, features])", c.origin(node), SUPPORTED)
    w = c.param(a["weight"])
    if w is None:
        raise unsupported("multiplies by a weight computed by the network", c.origin(node), SUPPORTED)
    bias = c.param(a["bias"]) if a.get("bias") is not None else None
    return c.layer(node, "linear", {"out": int(w.tensor.shape[0]), "bias": bias is not None}, x,
                   {"weight": w, "bias": bias})


def _batch_norm(c, node, a: dict):
    x = c.tensor(a["input"], node)
    mean, var = c.param(a["running_mean"]), c.param(a["running_var"])
    if mean is None or var is None:
        raise unsupported("normalises with batch statistics only (track_running_stats=False)", c.origin(node),
                          SUPPORTED)
    weight = c.param(a["weight"]) if a.get("weight") is not None else None
    bias = c.param(a["bias"]) if a.get("bias") is not None else None
    attrs = {"eps": float(a["eps"]), "momentum": float(a["momentum"]) if a["momentum"] is not None else 0.1,
             "affine": weight is not None}
    name = c.layer(node, "bn", attrs, x, {"weight": weight, "bias": bias, "running_mean": mean, "running_var": var})
    return (name, None, None) if "no_training" in str(node.target) else name


def _activation(op: str, **fixed):
    def handler(c, node, a: dict) -> str:
        return c.add(node, op, dict(fixed), [c.tensor(a.get("self", a.get("input")), node)])

    return handler


def _hardtanh(c, node, a: dict) -> str:
    if (float(a["min_val"]), float(a["max_val"])) != (0.0, 6.0):
        raise unsupported(f"clamps to [{a['min_val']}, {a['max_val']}] (only ReLU6's [0, 6] is a netdsl op)",
                          c.origin(node), SUPPORTED)
    return c.add(node, "relu6", {}, [c.tensor(a["self"], node)])


def _leaky_relu(c, node, a: dict) -> str:
    return c.add(node, "leaky_relu", {"slope": float(a["negative_slope"])}, [c.tensor(a["self"], node)])


def _gelu(c, node, a: dict) -> str:
    return c.add(node, "gelu", {"approximate": a.get("approximate") or "none"}, [c.tensor(a["self"], node)])


def _softmax(c, node, a: dict) -> str:
    x = c.tensor(a["self"], node)
    dim = int(a["dim"])
    if dim == 0 or dim == -len(c.shape(node)):
        raise unsupported("takes a softmax over the batch", c.origin(node), SUPPORTED)
    return c.add(node, "softmax", {"dim": dim - 1 if dim > 0 else dim}, [x])


def _dropout(c, node, a: dict) -> str:
    return c.add(node, "dropout", {"p": float(a["p"])}, [c.tensor(a["input"], node)])


def _pool(op: str):
    def handler(c, node, a: dict) -> str:
        origin = c.origin(node)
        x = c.tensor(a["self"], node)
        k = window_value(a["kernel_size"])
        stride = window_value(a["stride"]) if a["stride"] else None
        attrs = {"k": k, "stride": None if stride == k else stride,
                 "padding": window_value(a["padding"])}
        if op == "maxpool":
            attrs["dilation"] = window_value(a["dilation"])
            attrs["ceil_mode"] = bool(a["ceil_mode"])
        else:
            if a.get("divisor_override") is not None:
                raise unsupported("averages with divisor_override", origin, SUPPORTED)
            attrs["ceil_mode"] = bool(a["ceil_mode"])
            attrs["count_include_pad"] = bool(a["count_include_pad"])
        return c.add(node, op, attrs, [x])

    return handler


def _adaptive_avg_pool(c, node, a: dict) -> str:
    size = _square("output size", a["output_size"], "adaptive pooling", c.origin(node))
    return c.add(node, "adaptive_avgpool", {"size": size}, [c.tensor(a["self"], node)])


def _mean(c, node, a: dict) -> str:
    x = c.tensor(a["self"], node)
    rank = len(c.b.g.nodes[x]["shape"]) + 1
    dims = sorted(d % rank for d in (a["dim"] or []))
    if rank != 4 or dims != [2, 3]:
        raise unsupported(f"averages over dims {a['dim']} (netdsl's global average pool averages H and W)",
                          c.origin(node), SUPPORTED)
    if a.get("keepdim"):
        return c.add(node, "adaptive_avgpool", {"size": 1}, [x])
    return c.add(node, "gap", {}, [x])


def _reshape(c, node, a: dict):
    source = c.values.get(a["self"].name) if isinstance(a["self"], torch.fx.Node) else None
    out = c.shape(node)
    if isinstance(source, Shuffling):
        shape = c.b.g.nodes[source.source]["shape"]
        if source.swapped and out == (EXAMPLE_BATCH, *shape):
            return c.add(node, "channel_shuffle", {"groups": source.groups}, [source.source])
        raise unsupported("reshapes channels in a way that is not a channel shuffle", c.origin(node), SUPPORTED)
    x = c.tensor(a["self"], node)
    shape = c.b.g.nodes[x]["shape"]
    if out == (EXAMPLE_BATCH, *shape):
        return x
    if out == (EXAMPLE_BATCH, math.prod(shape)):
        return c.add(node, "flatten", {}, [x])
    if len(shape) == 3 and len(out) == 5 and out[3:] == shape[1:] and out[1] * out[2] == shape[0]:
        return Shuffling(x, out[1], False)
    raise unsupported(f"reshapes {fmt((EXAMPLE_BATCH, *shape))} to {fmt(out)} (netdsl reshapes only to "
                      "[N, features] before a linear layer, and in a channel shuffle)", c.origin(node), SUPPORTED)


def _flatten(c, node, a: dict):
    source = c.values.get(a["self"].name)
    if isinstance(source, Shuffling):
        return _reshape(c, node, a)
    x = c.tensor(a["self"], node)
    if c.shape(node) == (EXAMPLE_BATCH, *c.b.g.nodes[x]["shape"]):
        return x
    if c.shape(node) != (EXAMPLE_BATCH, math.prod(c.b.g.nodes[x]["shape"])):
        raise unsupported(f"flattens dims {a['start_dim']}..{a['end_dim']} (netdsl flattens everything but the "
                          "batch)", c.origin(node), SUPPORTED)
    return c.add(node, "flatten", {}, [x])


def _transpose(c, node, a: dict):
    source = c.values.get(a["self"].name)
    dims = sorted(d % 5 for d in (a["dim0"], a["dim1"])) if "dim0" in a else None
    if "dims" in a:
        dims = [1, 2] if [d % 5 for d in a["dims"]] == [0, 2, 1, 3, 4] else None
    if isinstance(source, Shuffling) and not source.swapped and dims == [1, 2]:
        return Shuffling(source.source, source.groups, True)
    raise unsupported("transposes dims (netdsl transposes only inside a channel shuffle)", c.origin(node), SUPPORTED)


def _unflatten(c, node, a: dict):
    x = c.tensor(a["self"], node)
    shape = c.b.g.nodes[x]["shape"]
    sizes = list(c.shape(node))
    if int(a["dim"]) % 4 == 1 and len(shape) == 3 and len(sizes) == 5 and sizes[1] * sizes[2] == shape[0]:
        return Shuffling(x, sizes[1], False)
    raise unsupported("unflattens dims (netdsl does so only inside a channel shuffle)", c.origin(node), SUPPORTED)


def _channel_shuffle(c, node, a: dict) -> str:
    return c.add(node, "channel_shuffle", {"groups": int(a["groups"])}, [c.tensor(a["self"], node)])


def _binary(op: str):
    def handler(c, node, a: dict) -> str:
        if a.get("alpha", 1) != 1:
            raise unsupported(f"adds with alpha={a['alpha']}", c.origin(node), SUPPORTED)
        left = c.tensor(a["self"], node, "operand")
        right = c.tensor(a["other"], node, "operand")
        return c.add(node, op, {}, [left, right])

    return handler


def _cat(c, node, a: dict) -> str:
    tensors = [c.tensor(t, node) for t in a["tensors"]]
    rank = len(c.shape(node))
    dim = int(a["dim"])
    if dim % rank == 0:
        raise unsupported("concatenates along the batch", c.origin(node), SUPPORTED)
    if len(tensors) == 1:
        return tensors[0]
    return c.add(node, "concat", {"dim": dim - 1 if dim > 0 else dim}, tensors)


def _split(c, node, a: dict) -> Parts:
    x = c.tensor(a["self"], node)
    rank = len(c.b.g.nodes[x]["shape"]) + 1
    if int(a.get("dim", 0)) % rank != 1:
        raise unsupported("splits along a dim other than the channels", c.origin(node), SUPPORTED)
    sizes = [int(v.shape[1]) for v in node.meta["val"]]
    return Parts(x, len(sizes) if len(set(sizes)) == 1 else sizes)


def _narrow(c, node, a: dict) -> str:
    """x.narrow(1, start, length) or x[:, start:end]: one part of a channel split."""
    x = c.tensor(a["self"], node)
    channels = c.b.g.nodes[x]["shape"][0]
    rank = len(c.b.g.nodes[x]["shape"]) + 1
    if "length" in a:
        start, end, step = int(a["start"]), int(a["start"]) + int(a["length"]), 1
    else:
        start, end, step = int(a["start"] or 0), min(int(a["end"]), channels), int(a["step"])
    if int(a["dim"]) % rank == 0 and (start, end, step) == (0, EXAMPLE_BATCH, 1) or start == 0 and end == channels:
        return x
    if int(a["dim"]) % rank != 1 or step != 1:
        raise unsupported("slices a tensor other than along the channels", c.origin(node), SUPPORTED)
    sizes = [s for s in (start, end - start, channels - end) if s > 0]
    return c.add(node, "split", {"sections": len(sizes) if len(set(sizes)) == 1 else sizes,
                                 "part": 0 if start == 0 else 1}, [x])


def _upsample(mode: str):
    def handler(c, node, a: dict) -> str:
        x = c.tensor(a["input"] if "input" in a else a["self"], node)
        origin = c.origin(node)
        scales = a.get("scale_factors")
        if scales is None and a.get("scales_h") is not None:
            scales = [a["scales_h"], a["scales_w"]]
        attrs = {"scale": None, "size": None, "mode": mode,
                 "align_corners": True if a.get("align_corners") else None}
        if scales:
            if len(set(float(s) for s in scales)) != 1:
                raise unsupported(f"resizes by different factors {list(scales)}", origin, SUPPORTED)
            scale = float(scales[0])
            attrs["scale"] = int(scale) if scale.is_integer() else scale
        else:
            attrs["size"] = _square("size", a["output_size"], "resizing", origin)
        return c.add(node, "upsample", attrs, [x])

    return handler


HANDLERS = {
    "conv2d": _conv, "convolution": _conv, "conv_transpose2d": _conv_transpose, "linear": _linear,
    "batch_norm": _batch_norm, "native_batch_norm_legit_no_training": _batch_norm,
    "relu": _activation("relu"), "relu6": _activation("relu6"), "hardtanh": _hardtanh,
    "sigmoid": _activation("sigmoid"), "hardswish": _activation("hardswish"),
    "hardsigmoid": _activation("hardsigmoid"), "silu": _activation("silu"), "gelu": _gelu,
    "leaky_relu": _leaky_relu, "softmax": _softmax, "dropout": _dropout,
    "max_pool2d": _pool("maxpool"), "avg_pool2d": _pool("avgpool"), "adaptive_avg_pool2d": _adaptive_avg_pool,
    "mean": _mean, "view": _reshape, "reshape": _reshape, "unsafe_view": _reshape, "flatten": _flatten,
    "transpose": _transpose, "permute": _transpose, "unflatten": _unflatten,
    "channel_shuffle": _channel_shuffle, "native_channel_shuffle": _channel_shuffle,
    "add": _binary("add"), "mul": _binary("mul"), "cat": _cat, "concat": _cat,
    "chunk": _split, "split": _split, "split_with_sizes": _split, "narrow": _narrow, "slice": _narrow,
    "upsample_nearest2d": _upsample("nearest"), "upsample_bilinear2d": _upsample("bilinear"),
}
