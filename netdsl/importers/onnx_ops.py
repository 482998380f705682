"""The ONNX ops netdsl imports: one handler per op type, mapping a node onto netdsl IR.

A handler takes the converter (netdsl.importers.from_onnx), the node and its attributes, and records the IR node
(or a pending Shuffling) that each of the node's outputs names.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.shapes import fmt, one_or_pair, pair
from netdsl.importers.imported import Shuffling, unsupported, window_value

BATCH = 7919  # a batch size no layer has: shape arithmetic on it shows where the batch dim goes
SUPPORTED = ["Conv", "ConvTranspose", "Gemm", "MatMul (+ Add)", "BatchNormalization", "Relu", "Clip (0, 6)",
             "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Gelu", "Softmax", "MaxPool", "AveragePool",
             "GlobalAveragePool", "ReduceMean over H, W", "Flatten", "Reshape (to [N, features], channel shuffle)",
             "Transpose (channel shuffle)", "Add", "Sum", "Mul", "Concat", "Split", "Slice (channels)", "Resize",
             "Upsample", "Dropout", "Identity", "Constant, Shape, Gather, Unsqueeze, ... (folded)"]

def _round(v: float) -> float:
    """A float32 attribute as the decimal it was written as (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(v)))


def _momentum(onnx_momentum: float) -> float:
    """PyTorch's momentum (the new statistics' weight) from ONNX's (the old ones'): 0.99 -> 0.01."""
    return float(f"{1 - _round(onnx_momentum):.12g}")


def _square(c, node, values, what: str) -> int:
    values = [int(v) for v in values]
    if len(set(values)) != 1:
        raise unsupported(f"has a non-square {what} {values}", c.origin(node), SUPPORTED)
    return values[0]


def _pads(c, node, a: dict, k, dilation=1):
    """The padding of a Conv or pool node as netdsl writes it (ONNX's pads are [top, left, bottom, right])."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if any((d * (n - 1)) % 2 for d, n in zip(pair(dilation), pair(k))):
            raise unsupported(f"pads asymmetrically ({auto} with an even kernel)", c.origin(node), SUPPORTED)
        return one_or_pair(*(d * (n - 1) // 2 for d, n in zip(pair(dilation), pair(k))))
    if auto == "VALID":
        return 0
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    if pads[:2] != pads[2:]:
        raise unsupported(f"pads asymmetrically {pads} (netdsl pads each side of an axis alike)", c.origin(node),
                          SUPPORTED)
    return window_value(pads[:2])


# ---- handlers -------------------------------------------------------------------------------------------------------
def _conv(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    w = c.const(node.input[1], node, "weight")
    b = c.const(node.input[2], node, "bias") if len(node.input) > 2 else None
    k, dilation = window_value(w.shape[2:]), window_value(a.get("dilations", [1, 1]))
    common = {"stride": window_value(a.get("strides", [1, 1])), "padding": _pads(c, node, a, k, dilation),
              "dilation": dilation, "bias": b is not None}
    cin, cout, groups = c.shape(x)[0], int(w.shape[0]), int(a.get("group", 1))
    if groups > 1 and groups == cin and cout % cin == 0:
        attrs = {"k": k, "stride": common["stride"], "padding": common["padding"], "dilation": dilation,
                 "multiplier": cout // cin, "bias": b is not None}
        name = c.add(node, "dwconv", attrs, [x], node.input[1])
    else:
        name = c.add(node, "conv", {"out": cout, "k": k, **{k2: common[k2] for k2 in ("stride", "padding", "dilation")},
                                    "groups": groups, "bias": b is not None}, [x], node.input[1])
    c.keep(name, weight=w, bias=b)


def _conv_transpose(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    w = c.const(node.input[1], node, "weight")
    b = c.const(node.input[2], node, "bias") if len(node.input) > 2 else None
    if "output_shape" in a:
        raise unsupported("sets output_shape", c.origin(node), SUPPORTED)
    groups = int(a.get("group", 1))
    k = _square(c, node, w.shape[2:], "kernel")
    attrs = {"out": int(w.shape[1]) * groups, "k": k, "stride": _square(c, node, a.get("strides", [1, 1]), "stride"),
             "padding": _square(c, node, a.get("pads", [0, 0, 0, 0]), "padding"),
             "output_padding": _square(c, node, a.get("output_padding", [0, 0]), "output padding"),
             "dilation": _square(c, node, a.get("dilations", [1, 1]), "dilation"), "groups": groups, "bias": b is not None}
    name = c.add(node, "conv_transpose", attrs, [x], node.input[1])
    c.keep(name, weight=w, bias=b)


def _flat(c, node, x: str) -> None:
    if len(c.shape(x)) != 1:
        raise unsupported(f"multiplies a {fmt(c.shape(x))} tensor by a matrix (netdsl's linear takes [features])",
                          c.origin(node), SUPPORTED)


def _gemm(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    _flat(c, node, x)
    w = c.const(node.input[1], node, "weight")
    b = c.const(node.input[2], node, "bias") if len(node.input) > 2 else None
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise unsupported("uses transA, alpha or beta", c.origin(node), SUPPORTED)
    w = w if a.get("transB", 0) else w.T
    name = c.add(node, "linear", {"out": int(w.shape[0]), "bias": b is not None}, [x], node.input[1])
    c.keep(name, weight=w, bias=None if b is None else np.broadcast_to(b, (w.shape[0],)))


def _matmul(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    _flat(c, node, x)
    w = c.const(node.input[1], node, "weight").T
    name = c.add(node, "linear", {"out": int(w.shape[0]), "bias": False}, [x], node.input[1])
    c.keep(name, weight=w)


def _batch_norm(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    scale, bias, mean, var = (c.const(i, node, "statistic") for i in node.input[1:5])
    attrs = {"eps": _round(a.get("epsilon", 1e-5)), "momentum": _momentum(a.get("momentum", 0.9)), "affine": True}
    name = c.add(node, "bn", attrs, [x], node.input[1])
    c.keep(name, weight=scale, bias=bias, running_mean=mean, running_var=var,
           num_batches_tracked=np.zeros((), dtype=np.int64))


def _unary(op: str, **fixed):
    def handler(c, node, a: dict) -> None:
        c.add(node, op, dict(fixed), [c.tensor(node.input[0], node)])

    return handler


def _clip(c, node, a: dict) -> None:
    low = a.get("min", c.const(node.input[1], node) if len(node.input) > 1 and node.input[1] else -math.inf)
    high = a.get("max", c.const(node.input[2], node) if len(node.input) > 2 and node.input[2] else math.inf)
    bounds = (float(low), float(high))
    if bounds not in ((0.0, 6.0), (0.0, math.inf)):
        raise unsupported(f"clips to [{bounds[0]}, {bounds[1]}] (only ReLU6's [0, 6] is a netdsl op)", c.origin(node),
                          SUPPORTED)
    c.add(node, "relu6" if bounds[1] == 6 else "relu", {}, [c.tensor(node.input[0], node)])


def _hard_sigmoid(c, node, a: dict) -> None:
    if (_round(a.get("alpha", 0.2)), _round(a.get("beta", 0.5))) != (_round(1 / 6), 0.5):
        raise unsupported("uses a HardSigmoid slope other than PyTorch's 1/6", c.origin(node), SUPPORTED)
    c.add(node, "hardsigmoid", {}, [c.tensor(node.input[0], node)])


def _softmax(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    axis = int(a.get("axis", -1))
    if axis == 0 or axis == -(len(c.shape(x)) + 1):
        raise unsupported("takes a softmax over the batch", c.origin(node), SUPPORTED)
    c.add(node, "softmax", {"dim": axis - 1 if axis > 0 else axis}, [x])


def _pool(op: str):
    def handler(c, node, a: dict) -> None:
        x = c.tensor(node.input[0], node)
        k = window_value(a["kernel_shape"])
        stride = window_value(a.get("strides", [1, 1]))
        dilation = window_value(a.get("dilations", [1, 1]))
        attrs = {"k": k, "stride": None if stride == k else stride, "padding": _pads(c, node, a, k, dilation)}
        if op == "maxpool":
            attrs.update(dilation=dilation, ceil_mode=bool(a.get("ceil_mode", 0)))
        else:
            attrs.update(ceil_mode=bool(a.get("ceil_mode", 0)), count_include_pad=bool(a.get("count_include_pad", 0)))
        c.add(node, op, attrs, [x])

    return handler


def _reduce_mean(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1:
        axes = c.const(node.input[1], node, "axes").tolist()
    if sorted(int(d) % 4 for d in axes or []) != [2, 3] or len(c.shape(x)) != 3:
        raise unsupported(f"averages over axes {axes} (netdsl's global average pool averages H and W)",
                          c.origin(node), SUPPORTED)
    if a.get("keepdims", 1):
        c.add(node, "adaptive_avgpool", {"size": 1}, [x])
    else:
        c.add(node, "gap", {}, [x])


def _flatten(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    if int(a.get("axis", 1)) != 1:
        raise unsupported(f"flattens from axis {a.get('axis')} (netdsl flattens everything but the batch)",
                          c.origin(node), SUPPORTED)
    if len(c.shape(x)) == 1:
        c.values[node.output[0]] = x
    else:
        c.add(node, "flatten", {}, [x])


def _reshape(c, node, a: dict) -> None:
    source = c.values.get(node.input[0])
    target = [int(d) for d in c.const(node.input[1], node, "shape")]
    if isinstance(source, Shuffling):
        shape = (BATCH, *c.shape(source.source))
        if source.swapped and _resolve(target, (BATCH, source.groups, shape[1] // source.groups, *shape[2:]), a) == shape:
            c.add(node, "channel_shuffle", {"groups": source.groups}, [source.source])
            return
        raise unsupported("reshapes channels in a way that is not a channel shuffle", c.origin(node), SUPPORTED)
    x = c.tensor(node.input[0], node)
    shape = (BATCH, *c.shape(x))
    out = _resolve(target, shape, a)
    if out == shape:
        c.values[node.output[0]] = x
    elif out == (BATCH, math.prod(shape[1:])):
        c.add(node, "flatten", {}, [x])
    elif len(shape) == 4 and len(out) == 5 and out[3:] == shape[2:] and out[1] * out[2] == shape[1] and out[0] == BATCH:
        c.values[node.output[0]] = Shuffling(x, out[1], False)
    else:
        raise unsupported(f"reshapes {fmt(shape)} to {fmt(out)} (the first dim is the batch; netdsl reshapes only to "
                          "[N, features] and in a channel shuffle)", c.origin(node), SUPPORTED)


def _resolve(target: list[int], shape: tuple[int, ...], a: dict) -> tuple[int, ...]:
    """ONNX Reshape's target with 0 (copy) and -1 (infer) worked out."""
    dims = [shape[i] if d == 0 and not a.get("allowzero") else d for i, d in enumerate(target)]
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(shape) // known if known else 0
    return tuple(dims)


def _transpose(c, node, a: dict) -> None:
    source = c.values.get(node.input[0])
    if isinstance(source, Shuffling) and not source.swapped and list(a.get("perm", [])) == [0, 2, 1, 3, 4]:
        c.values[node.output[0]] = Shuffling(source.source, source.groups, True)
        return
    raise unsupported(f"transposes dims {a.get('perm')} (netdsl transposes only inside a channel shuffle)",
                      c.origin(node), SUPPORTED)


def _binary(op: str):
    def handler(c, node, a: dict) -> None:
        values = [c.values.get(i) for i in node.input]
        constants = [i for i, v in zip(node.input, values) if isinstance(v, np.ndarray)]
        if op == "add" and len(node.input) == 2 and len(constants) == 1:
            tensor = node.input[1 - list(node.input).index(constants[0])]
            if _fold_bias(c, node, c.tensor(tensor, node), c.values[constants[0]]):
                return
        c.add(node, op, {}, [c.tensor(i, node) for i in node.input])

    return handler


def _fold_bias(c, node, x: str, bias: np.ndarray) -> bool:
    """MatMul then Add(constant): the linear layer's bias."""
    d = c.b.g.nodes[x]
    if d["op"] != "linear" or d["attrs"]["bias"] or c.b.g.out_degree(x) or bias.size != d["attrs"]["out"]:
        raise unsupported("adds a constant tensor (only a linear layer's bias is a netdsl weight)", c.origin(node),
                          SUPPORTED)
    d["attrs"]["bias"] = True
    c.keep(x, bias=bias.reshape(-1))
    c.values[node.output[0]] = x
    return True


def _concat(c, node, a: dict) -> None:
    xs = [c.tensor(i, node) for i in node.input]
    axis = int(a["axis"])
    if axis % (len(c.shape(xs[0])) + 1) == 0:
        raise unsupported("concatenates along the batch", c.origin(node), SUPPORTED)
    if len(xs) == 1:
        c.values[node.output[0]] = xs[0]
    else:
        c.add(node, "concat", {"dim": axis - 1 if axis > 0 else axis}, xs)


def _sections(sizes: list[int]):
    return len(sizes) if len(set(sizes)) == 1 else sizes


def _split(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    channels = c.shape(x)[0]
    if int(a.get("axis", 0)) % (len(c.shape(x)) + 1) != 1:
        raise unsupported("splits along an axis other than the channels", c.origin(node), SUPPORTED)
    sizes = a.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        sizes = c.const(node.input[1], node, "split sizes").tolist()
    if sizes is None:
        parts = int(a.get("num_outputs", len(node.output)))
        sizes = [channels // parts] * parts
    sections = _sections([int(s) for s in sizes])
    for i, out in enumerate(node.output):
        if out:
            c.values[out] = c.b.add(c.base(node, "split"), "split", {"sections": sections, "part": i}, [x], None,
                                    c.origin(node))


def _slice(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    channels = c.shape(x)[0]
    starts, ends = (c.const(i, node).tolist() for i in node.input[1:3])
    axes = c.const(node.input[3], node).tolist() if len(node.input) > 3 and node.input[3] else [0]
    steps = c.const(node.input[4], node).tolist() if len(node.input) > 4 and node.input[4] else [1]
    if len(starts) != 1 or int(axes[0]) % (len(c.shape(x)) + 1) != 1 or int(steps[0]) != 1:
        raise unsupported("slices other than a channel range", c.origin(node), SUPPORTED)
    start, end = (max(0, min(channels, int(v) if v >= 0 else channels + int(v))) for v in (starts[0], ends[0]))
    sizes = [s for s in (start, end - start, channels - end) if s > 0]
    part = 0 if start == 0 else 1
    c.add(node, "split", {"sections": _sections(sizes), "part": part}, [x])


def _resize(c, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    mode = a.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise unsupported(f"resizes with mode {mode}", c.origin(node), SUPPORTED)
    transform = a.get("coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" else "asymmetric")
    inputs = list(node.input) + [""] * 4
    scales = c.const(inputs[2], node, "scales") if node.op_type == "Resize" else c.const(inputs[1], node, "scales")
    sizes = c.const(inputs[3], node, "sizes") if node.op_type == "Resize" else None
    attrs = {"scale": None, "size": None, "mode": "bilinear" if mode == "linear" else "nearest",
             "align_corners": True if transform == "align_corners" else None}
    if scales is not None and scales.size:
        s = [float(v) for v in scales[2:]]
        if len(set(s)) != 1:
            raise unsupported(f"resizes by different factors {s}", c.origin(node), SUPPORTED)
        attrs["scale"] = int(s[0]) if s[0].is_integer() else s[0]
    elif sizes is not None:
        attrs["size"] = _square(c, node, sizes[2:], "size")
    c.add(node, "upsample", attrs, [x])


def _pass(c, node, a: dict) -> None:
    c.values[node.output[0]] = c.values.get(node.input[0])


def _dropout(c, node, a: dict) -> None:
    ratio = a.get("ratio")
    if ratio is None and len(node.input) > 1 and node.input[1]:
        ratio = float(c.const(node.input[1], node, "ratio"))
    c.add(node, "dropout", {"p": _round(0.5 if ratio is None else ratio)}, [c.tensor(node.input[0], node)])


HANDLERS = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm, "MatMul": _matmul,
    "BatchNormalization": _batch_norm, "Relu": _unary("relu"), "Clip": _clip, "Sigmoid": _unary("sigmoid"),
    "HardSwish": _unary("hardswish"), "HardSigmoid": _hard_sigmoid,
    "LeakyRelu": lambda c, node, a: c.add(node, "leaky_relu", {"slope": _round(a.get("alpha", 0.01))},
                                          [c.tensor(node.input[0], node)]),
    "Gelu": lambda c, node, a: c.add(node, "gelu", {"approximate": a.get("approximate", "none")},
                                     [c.tensor(node.input[0], node)]),
    "Softmax": _softmax, "MaxPool": _pool("maxpool"), "AveragePool": _pool("avgpool"),
    "GlobalAveragePool": lambda c, node, a: c.add(node, "adaptive_avgpool", {"size": 1}, [c.tensor(node.input[0], node)]),
    "ReduceMean": _reduce_mean, "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose,
    "Add": _binary("add"), "Sum": _binary("add"), "Mul": _binary("mul"), "Concat": _concat, "Split": _split,
    "Slice": _slice, "Resize": _resize, "Upsample": _resize, "Identity": _pass, "Dropout": _dropout,
}
