"""Import an ONNX model (read with the onnx package): each node maps onto a netdsl op, initializers become weights.

Layer names come from the weights' names where they are module paths (`layer1.0.conv1.weight`, as PyTorch's
exporter writes them unless it folded batch norm into the convolutions), else from the node names' scopes
(`/layer1/layer1.0/relu/Relu` -> `layer1.0.relu`), else from the ops.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError
from compiler.shapes import fmt, one_or_pair, pair
from compiler.validate import validate
from netdsl.importers.imported import (
    GraphBuilder,
    ImportedModel,
    Scope,
    Shuffling,
    dead_nodes,
    net_name,
    node_segment,
    unsupported,
    window_value,
)

BATCH = 7919  # a batch size no layer has: shape arithmetic on it shows where the batch dim goes
SUPPORTED = ["Conv", "ConvTranspose", "Gemm", "MatMul (+ Add)", "BatchNormalization", "Relu", "Clip (0, 6)",
             "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Gelu", "Softmax", "MaxPool", "AveragePool",
             "GlobalAveragePool", "ReduceMean over H, W", "Flatten", "Reshape (to [N, features], channel shuffle)",
             "Transpose (channel shuffle)", "Add", "Sum", "Mul", "Concat", "Split", "Slice (channels)", "Resize",
             "Upsample", "Dropout", "Identity", "Constant, Shape, Gather, Unsqueeze, ... (folded)"]
FOLDABLE = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Mul", "Div", "Add",
                      "Sub", "Mod", "Neg", "Equal", "Where", "Expand", "Reshape", "Identity", "ConstantOfShape",
                      "Range", "Floor", "Ceil", "Sqrt", "Min", "Max"})


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _round(v: float) -> float:
    """A float32 attribute as the decimal it was written as (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(v)))


def _momentum(onnx_momentum: float) -> float:
    """PyTorch's momentum (the new statistics' weight) from ONNX's (the old ones'): 0.99 -> 0.01."""
    return float(f"{1 - _round(onnx_momentum):.12g}")


def module_path(node_name: str) -> tuple[str, str] | None:
    """(module path, op part) from an exporter's node name `/layer1/layer1.0/conv1/Conv`; None if it has none."""
    if not node_name.startswith("/"):
        return None
    *scopes, op = node_name[1:].split("/")
    path, last = "", ""
    for seg in scopes:
        if last and seg.startswith(last + "."):
            path = path + seg[len(last):]
        else:
            path = f"{path}.{seg}" if path else seg
        last = seg
    return ".".join(node_segment(s) for s in path.split(".")) if path else "", op


class _Converter:
    def __init__(self, model, where: str, name: str, input_shapes: list[tuple[int, ...]] | None):
        from onnx import numpy_helper

        self.model, self.where = model, where
        self.b = GraphBuilder(name, where)
        self.values: dict[str, object] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.initializers = set(self.values)
        self.weights: dict[str, np.ndarray] = {}
        self.notes: list[str] = []
        self.input_shapes = input_shapes
        # how many computing nodes each scope holds, its sub-scopes' included: a scope with one is a layer module
        # (`layer1.0.relu`); a node in a larger scope is named after its op (`layer1.0.add`)
        self.scope_size: dict[str, int] = {}
        for node in model.graph.node:
            located = module_path(node.name)
            if located and located[0] and node.op_type != "Constant":
                segs = located[0].split(".")
                for i in range(1, len(segs) + 1):
                    prefix = ".".join(segs[:i])
                    self.scope_size[prefix] = self.scope_size.get(prefix, 0) + 1

    def origin(self, node) -> str:
        return f"{self.where}: node '{node.name or node.output[0]}' ({node.op_type})"

    def const(self, name: str, node, what: str = "input") -> np.ndarray | None:
        if not name:
            return None
        v = self.values.get(name)
        if isinstance(v, np.ndarray):
            return v
        raise unsupported(f"needs a constant {what} but '{name}' is computed by the network", self.origin(node),
                          SUPPORTED)

    def tensor(self, name: str, node) -> str:
        v = self.values.get(name)
        if isinstance(v, str):
            return v
        if isinstance(v, Shuffling):
            raise unsupported("reshapes channels in a way that is not a channel shuffle", self.origin(node), SUPPORTED)
        raise unsupported(f"uses the constant '{name}' as a tensor operand (netdsl ops combine tensors computed by "
                          "the network; weights belong to layers)", self.origin(node), SUPPORTED)

    def shape(self, ir: str) -> tuple[int, ...]:
        return tuple(self.b.g.nodes[ir]["shape"])

    def full_shape(self, value: str | Shuffling) -> tuple[int, ...]:
        """The batched shape of a tensor or of a shuffle in progress ([N, groups, C/groups, H, W])."""
        if isinstance(value, Shuffling):
            c, *hw = self.shape(value.source)
            dims = (c // value.groups, value.groups) if value.swapped else (value.groups, c // value.groups)
            return (BATCH, *dims, *hw)
        return (BATCH, *self.shape(value))

    def base(self, node, op: str, weight: str | None = None) -> str:
        if weight and weight.endswith(".weight") and re.fullmatch(r"[\w.]+", weight):
            return ".".join(node_segment(s) for s in weight[: -len(".weight")].split("."))
        located = module_path(node.name)
        if located is None:
            return op
        path, _ = located
        if path and self.scope_size.get(path) == 1:
            return path
        return f"{path}.{op}" if path else op

    def add(self, node, op: str, attrs: dict, inputs: list[str], weight: str | None = None) -> str:
        name = self.b.add(self.base(node, op, weight), op, attrs, inputs, None, self.origin(node))
        self.values[node.output[0]] = name
        return name

    def keep(self, name: str, **tensors) -> None:
        for key, value in tensors.items():
            if value is not None:
                self.weights[f"{name}.{key}"] = np.array(value, order="C")

    # ---- the walk ---------------------------------------------------------------------------------------------
    def run(self) -> ImportedModel:
        graph = self.model.graph
        inputs = [i for i in graph.input if i.name not in self.initializers]
        if self.input_shapes is not None and len(self.input_shapes) != len(inputs):
            raise NetError(f"{self.where}: the model has {len(inputs)} input(s) but --input gives "
                           f"{len(self.input_shapes)}")
        for i, inp in enumerate(inputs):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
            shape = self.input_shapes[i] if self.input_shapes else tuple(dims[1:])
            if not dims or any(d is None or d <= 0 for d in shape):
                raise NetError(f"{self.where}: input '{inp.name}' has shape {_dims(inp)}, whose sizes are not all known",
                               notes=["give the per-sample shape with --input, e.g. --input 3x224x224"])
            self.values[inp.name] = self.b.input(net_name(inp.name, f"x{i}"), tuple(int(s) for s in shape))
        for node in graph.node:
            self.node(node)
        for i, out in enumerate(graph.output):
            ir = self.values.get(out.name)
            if not isinstance(ir, str):
                raise NetError(f"{self.where}: output '{out.name}' is not a tensor the network computes")
            self.b.g.graph["outputs"][net_name(out.name, f"out{i}")] = ir
        g = self.b.g
        if dead_nodes(g):  # parts of a Split nothing reads, shape arithmetic's sources
            self.weights = {k: v for k, v in self.weights.items() if k.rpartition(".")[0] in g}
        validate(g)
        return ImportedModel(g, self.weights, self._scopes(), self.where, self.notes)

    def _scopes(self) -> dict[str, Scope]:
        """Every module path the node names show (classes are unknown in ONNX: all are called Block)."""
        paths = set()
        for node in self.model.graph.node:
            located = module_path(node.name)
            if located and located[0]:
                segs = located[0].split(".")
                paths |= {".".join(segs[:i]) for i in range(1, len(segs) + 1)}
        return {p: Scope(p, "Block") for p in sorted(paths)}

    def node(self, node) -> None:
        op = node.op_type
        if op == "Constant":
            from onnx import numpy_helper

            a = node.attribute[0]
            from onnx import helper

            value = helper.get_attribute_value(a)
            self.values[node.output[0]] = (numpy_helper.to_array(value) if a.name == "value"
                                           else np.asarray(value))
            return
        if op in FOLDABLE and all(not i or isinstance(self.values.get(i), np.ndarray) or
                                  (op == "Shape" and isinstance(self.values.get(i), (str, Shuffling)))
                                  for i in node.input):
            self.values[node.output[0]] = np.asarray(self.fold(node))
            return
        handler = HANDLERS.get(op)
        if handler is None:
            raise unsupported(f"netdsl has no op for ONNX {op}", self.origin(node), SUPPORTED)
        handler(self, node, _attrs(node))

    def fold(self, node) -> np.ndarray:
        """Shape arithmetic on constants, computed here (the batch is BATCH)."""
        op, a = node.op_type, _attrs(node)
        xs = [self.values.get(i) if i else None for i in node.input]
        if op == "Shape":
            shape = np.array(self.full_shape(xs[0]), dtype=np.int64)
            return shape[a.get("start", 0):a.get("end", len(shape))]
        if op == "Gather":
            return np.take(xs[0], xs[1], axis=a.get("axis", 0))
        if op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes", list(xs[1]) if len(xs) > 1 and xs[1] is not None else [])
            if op == "Unsqueeze":
                out = xs[0]
                for ax in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
                    out = np.expand_dims(out, ax)
                return out
            return np.squeeze(xs[0], axis=tuple(int(x) for x in axes)) if axes else np.squeeze(xs[0])
        if op == "Concat":
            return np.concatenate([np.atleast_1d(x) for x in xs], axis=a.get("axis", 0))
        if op == "Cast" or op == "Identity":
            return xs[0]
        if op == "Slice":
            starts, ends = xs[1], xs[2]
            axes = xs[3] if len(xs) > 3 and xs[3] is not None else range(len(starts))
            steps = xs[4] if len(xs) > 4 and xs[4] is not None else [1] * len(starts)
            index = [slice(None)] * xs[0].ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                index[int(ax)] = slice(int(s), int(e), int(st))
            return xs[0][tuple(index)]
        if op == "Reshape":
            return xs[0].reshape([int(d) for d in xs[1]])
        if op == "ConstantOfShape":
            return np.zeros([int(d) for d in xs[0]], dtype=np.float32)
        if op == "Range":
            return np.arange(xs[0], xs[1], xs[2])
        if op == "Expand":
            return xs[0] * np.ones([int(d) for d in xs[1]], dtype=xs[0].dtype)
        fn = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": _divide, "Mod": np.mod, "Neg": np.negative,
              "Equal": np.equal, "Where": np.where, "Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt,
              "Min": np.minimum, "Max": np.maximum}[op]
        return fn(*xs)


def _divide(a, b):
    return a // b if np.issubdtype(np.asarray(a).dtype, np.integer) else a / b


def _dims(inp) -> str:
    return "[" + ", ".join(d.dim_param or str(d.dim_value) for d in inp.type.tensor_type.shape.dim) + "]"


def _square(c: _Converter, node, values, what: str) -> int:
    values = [int(v) for v in values]
    if len(set(values)) != 1:
        raise unsupported(f"has a non-square {what} {values}", c.origin(node), SUPPORTED)
    return values[0]


def _pads(c: _Converter, node, a: dict, k, dilation=1):
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
def _conv(c: _Converter, node, a: dict) -> None:
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


def _conv_transpose(c: _Converter, node, a: dict) -> None:
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


def _flat(c: _Converter, node, x: str) -> None:
    if len(c.shape(x)) != 1:
        raise unsupported(f"multiplies a {fmt(c.shape(x))} tensor by a matrix (netdsl's linear takes [features])",
                          c.origin(node), SUPPORTED)


def _gemm(c: _Converter, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    _flat(c, node, x)
    w = c.const(node.input[1], node, "weight")
    b = c.const(node.input[2], node, "bias") if len(node.input) > 2 else None
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise unsupported("uses transA, alpha or beta", c.origin(node), SUPPORTED)
    w = w if a.get("transB", 0) else w.T
    name = c.add(node, "linear", {"out": int(w.shape[0]), "bias": b is not None}, [x], node.input[1])
    c.keep(name, weight=w, bias=None if b is None else np.broadcast_to(b, (w.shape[0],)))


def _matmul(c: _Converter, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    _flat(c, node, x)
    w = c.const(node.input[1], node, "weight").T
    name = c.add(node, "linear", {"out": int(w.shape[0]), "bias": False}, [x], node.input[1])
    c.keep(name, weight=w)


def _batch_norm(c: _Converter, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    scale, bias, mean, var = (c.const(i, node, "statistic") for i in node.input[1:5])
    attrs = {"eps": _round(a.get("epsilon", 1e-5)), "momentum": _momentum(a.get("momentum", 0.9)), "affine": True}
    name = c.add(node, "bn", attrs, [x], node.input[1])
    c.keep(name, weight=scale, bias=bias, running_mean=mean, running_var=var,
           num_batches_tracked=np.zeros((), dtype=np.int64))


def _unary(op: str, **fixed):
    def handler(c: _Converter, node, a: dict) -> None:
        c.add(node, op, dict(fixed), [c.tensor(node.input[0], node)])

    return handler


def _clip(c: _Converter, node, a: dict) -> None:
    low = a.get("min", c.const(node.input[1], node) if len(node.input) > 1 and node.input[1] else -math.inf)
    high = a.get("max", c.const(node.input[2], node) if len(node.input) > 2 and node.input[2] else math.inf)
    bounds = (float(low), float(high))
    if bounds not in ((0.0, 6.0), (0.0, math.inf)):
        raise unsupported(f"clips to [{bounds[0]}, {bounds[1]}] (only ReLU6's [0, 6] is a netdsl op)", c.origin(node),
                          SUPPORTED)
    c.add(node, "relu6" if bounds[1] == 6 else "relu", {}, [c.tensor(node.input[0], node)])


def _hard_sigmoid(c: _Converter, node, a: dict) -> None:
    if (_round(a.get("alpha", 0.2)), _round(a.get("beta", 0.5))) != (_round(1 / 6), 0.5):
        raise unsupported("uses a HardSigmoid slope other than PyTorch's 1/6", c.origin(node), SUPPORTED)
    c.add(node, "hardsigmoid", {}, [c.tensor(node.input[0], node)])


def _softmax(c: _Converter, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    axis = int(a.get("axis", -1))
    if axis == 0 or axis == -(len(c.shape(x)) + 1):
        raise unsupported("takes a softmax over the batch", c.origin(node), SUPPORTED)
    c.add(node, "softmax", {"dim": axis - 1 if axis > 0 else axis}, [x])


def _pool(op: str):
    def handler(c: _Converter, node, a: dict) -> None:
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


def _reduce_mean(c: _Converter, node, a: dict) -> None:
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


def _flatten(c: _Converter, node, a: dict) -> None:
    x = c.tensor(node.input[0], node)
    if int(a.get("axis", 1)) != 1:
        raise unsupported(f"flattens from axis {a.get('axis')} (netdsl flattens everything but the batch)",
                          c.origin(node), SUPPORTED)
    if len(c.shape(x)) == 1:
        c.values[node.output[0]] = x
    else:
        c.add(node, "flatten", {}, [x])


def _reshape(c: _Converter, node, a: dict) -> None:
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


def _transpose(c: _Converter, node, a: dict) -> None:
    source = c.values.get(node.input[0])
    if isinstance(source, Shuffling) and not source.swapped and list(a.get("perm", [])) == [0, 2, 1, 3, 4]:
        c.values[node.output[0]] = Shuffling(source.source, source.groups, True)
        return
    raise unsupported(f"transposes dims {a.get('perm')} (netdsl transposes only inside a channel shuffle)",
                      c.origin(node), SUPPORTED)


def _binary(op: str):
    def handler(c: _Converter, node, a: dict) -> None:
        values = [c.values.get(i) for i in node.input]
        constants = [i for i, v in zip(node.input, values) if isinstance(v, np.ndarray)]
        if op == "add" and len(node.input) == 2 and len(constants) == 1:
            tensor = node.input[1 - list(node.input).index(constants[0])]
            if _fold_bias(c, node, c.tensor(tensor, node), c.values[constants[0]]):
                return
        c.add(node, op, {}, [c.tensor(i, node) for i in node.input])

    return handler


def _fold_bias(c: _Converter, node, x: str, bias: np.ndarray) -> bool:
    """MatMul then Add(constant): the linear layer's bias."""
    d = c.b.g.nodes[x]
    if d["op"] != "linear" or d["attrs"]["bias"] or c.b.g.out_degree(x) or bias.size != d["attrs"]["out"]:
        raise unsupported("adds a constant tensor (only a linear layer's bias is a netdsl weight)", c.origin(node),
                          SUPPORTED)
    d["attrs"]["bias"] = True
    c.keep(x, bias=bias.reshape(-1))
    c.values[node.output[0]] = x
    return True


def _concat(c: _Converter, node, a: dict) -> None:
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


def _split(c: _Converter, node, a: dict) -> None:
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


def _slice(c: _Converter, node, a: dict) -> None:
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


def _resize(c: _Converter, node, a: dict) -> None:
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


def _pass(c: _Converter, node, a: dict) -> None:
    c.values[node.output[0]] = c.values.get(node.input[0])


def _dropout(c: _Converter, node, a: dict) -> None:
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


def read_onnx(path: Path):
    """The ONNX model in a file, or a NetError naming the file."""
    try:
        import onnx
    except ImportError:
        raise NetError("importing ONNX needs the onnx package, which is not installed",
                       notes=["install it: pip install 'netdsl[onnx]'"]) from None
    if not path.is_file():
        raise NetError(f"no such file: {path}")
    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 (protobuf raises assorted types for a file that is not ONNX)
        raise NetError(f"{path}: not a readable ONNX model ({type(err).__name__}: {err})".splitlines()[0]) from None


def import_onnx(path: str | Path, input_shapes: list[tuple[int, ...]] | None = None,
                name: str | None = None) -> ImportedModel:
    """An ONNX model as netdsl IR with its weights."""
    path = Path(path)
    model = read_onnx(path)
    network = net_name(name or model.graph.name or path.stem, "Network")
    if network in ("main_graph", "torch_jit"):
        network = net_name(path.stem, "Network")
    return _Converter(model, str(path), network, input_shapes).run()
