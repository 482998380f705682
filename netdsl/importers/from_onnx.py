"""Import an ONNX model (read with the onnx package): each node maps onto a netdsl op, initializers become weights.

Layer names come from the weights' names where they are module paths (`layer1.0.conv1.weight`, as PyTorch's
exporter writes them unless it folded batch norm into the convolutions), else from the node names' scopes
(`/layer1/layer1.0/relu/Relu` -> `layer1.0.relu`), else from the ops.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError
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
)
from netdsl.importers.onnx_ops import BATCH, HANDLERS, SUPPORTED

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
