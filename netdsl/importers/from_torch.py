"""Import a PyTorch nn.Module: torch.export captures its graph (ATen ops, shapes, module paths, source lines),
and each ATen op maps onto a netdsl op; node names follow the module paths, so state_dict keys stay the model's."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compiler.diagnostics import NetError
from compiler.shapes import fmt
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
from netdsl.importers.python_source import located_frames, user_frame

CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})
MAX_INPUT_ELEMENTS = 1 << 26  # per sample; a larger example input is refused before it is allocated
EXAMPLE_BATCH = 2  # a batch of 2 shows where a model mixes the batch dimension into others
PASS_THROUGH = frozenset({"clone", "contiguous", "alias", "detach", "lift_fresh_copy", "expand", "expand_as"})
IGNORED = frozenset({"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size"})
# what the errors list as supported (PyTorch spellings)
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


@contextlib.contextmanager
def _quiet():
    """torch.export logs warnings and prints graphs while it fails; the user gets our message instead."""
    loggers = [logging.getLogger(n) for n in ["torch", *logging.root.manager.loggerDict] if n.startswith("torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def capture(model: nn.Module, shapes: list[tuple[int, ...]], where: str):
    """torch.export's program of the model in eval mode, for inputs of the given per-sample shapes."""
    for shape in shapes:
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise NetError(f"--input {'x'.join(map(str, shape))} is too large to trace "
                           f"({math.prod(shape):,} values per sample; at most {MAX_INPUT_ELEMENTS:,})")
    inputs = tuple(torch.randn(EXAMPLE_BATCH, *shape) for shape in shapes)
    model.eval()
    with _quiet():
        try:
            return torch.export.export(model, inputs, strict=False)
        except Exception as err:  # noqa: BLE001 (export raises many types; each becomes a located message)
            raise _capture_error(err, where) from None


def _capture_error(err: Exception, where: str) -> NetError:
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    frames = located_frames(err)
    if isinstance(err, GuardOnDataDependentSymNode) or "data-dependent" in str(err):
        return NetError(f"{where}: the model's control flow depends on tensor values "
                        f"({frames[-1] if frames else 'in its forward'})",
                        notes=["a .net network is a fixed graph: an `if` or loop that reads tensor values "
                               "cannot be imported; make the branch a constructor argument (--arg)"])
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, (RuntimeError, ValueError, TypeError, IndexError)) and frames:
        return NetError(f"{where}: running the model on the example input failed: {type(err).__name__}: {first}",
                        notes=[*frames, "check --input: it is the per-sample shape, e.g. 3x224x224"])
    return NetError(f"{where}: torch.export could not capture the model: {type(err).__name__}: {first}",
                    notes=frames)


def _bind(node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    schema = node.target._schema
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


def _square(name: str, value, what: str, origin: str) -> int:
    """One int from an int or a [h, w] pair that must be equal."""
    if isinstance(value, int):
        return value
    values = list(value)
    if len(values) == 1 or len(set(values)) == 1:
        return int(values[0])
    raise unsupported(f"{what} with a non-square {name} {values}", origin, SUPPORTED)


class _Converter:
    """Walks the exported graph once, building the IR as it goes."""

    def __init__(self, program, model: nn.Module, where: str, name: str):
        self.program, self.model, self.where = program, model, where
        self.b = GraphBuilder(name, where)
        self.values: dict[str, object] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.scopes: dict[str, Scope] = {}
        self.owners: set[str] = set()
        self.notes: list[str] = []
        sig = program.graph_signature
        self.user_inputs = [s.arg.name for s in sig.input_specs if s.kind.name == "USER_INPUT"]
        tensors = {**program.state_dict, **program.constants}
        self.params = {s.arg.name: Param(s.target, tensors[s.target]) for s in sig.input_specs
                       if s.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR") and s.target in tensors}

    # ---- where a node came from -----------------------------------------------------------------------
    def stack(self, node) -> list[tuple[str, str]]:
        """(module path, class qualname) from the root down; the root itself left out."""
        out = []
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            cls = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
            if path:
                out.append((".".join(node_segment(s) for s in path.split(".")), cls))
        return out

    def origin(self, node) -> str:
        """`aten.tanh in encoder.act (Tanh) at model.py:42: return torch.tanh(x)`."""
        what = str(node.target).replace("aten.", "torch ").split(".default")[0]
        stack = self.stack(node)
        where = f" in {stack[-1][0]} ({stack[-1][1].rsplit('.', 1)[-1]})" if stack else " in the model's forward"
        frames = re.findall(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', node.meta.get("stack_trace") or "")
        user = [f for f in frames if user_frame(f[0])]
        line = f" at {user[-1][0]}:{user[-1][1]}: {user[-1][2].strip()}" if user else ""
        return f"{self.where}: {what}{where}{line}"

    def base_name(self, node, op: str) -> str:
        """The module path of a layer module (nn.ReLU at `layer1.0.relu`), else `<enclosing module>.<op>`."""
        stack = self.stack(node)
        for path, cls in stack:
            if not _is_layer_class(cls):
                short = cls.rsplit(".", 1)[-1]
                self.scopes.setdefault(path, Scope(path, "" if short in CONTAINERS else short,
                                                   self._input_names(path)))
        if stack and _is_layer_class(stack[-1][1]):
            return stack[-1][0]
        scope = next((p for p, c in reversed(stack) if not _is_layer_class(c)), "")
        return f"{scope}.{op}" if scope else op

    def _input_names(self, path: str) -> tuple[str, ...]:
        try:
            forward = type(self.model.get_submodule(path)).forward
            params = list(inspect.signature(forward).parameters.values())[1:]
        except (AttributeError, ValueError, TypeError):
            return ()
        return tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))

    # ---- values -----------------------------------------------------------------------------------------
    def tensor(self, value, node, what: str = "input") -> str:
        """The IR node behind an argument that must be a tensor computed by the network."""
        if isinstance(value, torch.fx.Node):
            value = self.values.get(value.name)
        if isinstance(value, str):
            return value
        if isinstance(value, Param):
            raise unsupported(f"uses the tensor {value.key} as an {what} (netdsl layers own their weights; "
                              "a parameter used outside a layer cannot be imported)", self.origin(node), SUPPORTED)
        if isinstance(value, Shuffling):
            raise unsupported("reshapes channels in a way that is not a channel shuffle", self.origin(node), SUPPORTED)
        raise unsupported(f"has a constant {what} ({value!r}); netdsl ops combine tensors computed by the network",
                          self.origin(node), SUPPORTED)

    def shape(self, node_or_value) -> tuple[int, ...]:
        val = node_or_value.meta["val"] if isinstance(node_or_value, torch.fx.Node) else node_or_value
        return tuple(int(s) for s in val.shape)

    def per_sample(self, node) -> tuple[int, ...]:
        shape = self.shape(node)
        if not shape or shape[0] != EXAMPLE_BATCH:
            raise unsupported(f"gives a tensor of shape {fmt(shape)} whose first dim is not the batch",
                              self.origin(node), SUPPORTED)
        return shape[1:]

    def param(self, value) -> Param | None:
        return self.params.get(value.name) if isinstance(value, torch.fx.Node) else None

    def add(self, node, op: str, attrs: dict, inputs: list[str], base: str | None = None) -> str:
        return self.b.add(base or self.base_name(node, op), op, attrs, inputs, self.per_sample(node), self.origin(node))

    def layer(self, node, op: str, attrs: dict, x: str, named: dict[str, Param | None]) -> str:
        """A node holding weights: named after the module that owns them, its tensors kept under its name."""
        owner = next((p.key.rpartition(".")[0] for k, p in named.items() if p is not None and k in
                      ("weight", "running_mean")), "")
        owner = ".".join(node_segment(s) for s in owner.split(".")) if owner else ""
        base = owner if owner and owner not in self.owners else None
        if owner in self.owners:
            raise unsupported(f"calls the layer '{owner}' more than once (shared weights); each netdsl layer owns "
                              "its weights", self.origin(node), SUPPORTED)
        self.base_name(node, op)  # records the enclosing scopes
        name = self.add(node, op, attrs, [x], base or self.base_name(node, op))
        self.owners.add(owner)
        for key, p in named.items():
            if p is not None:
                self.weights[f"{name}.{key}"] = p.tensor.detach().cpu().numpy()
                if not p.key.endswith("." + key) or p.key.rpartition(".")[0] != name:
                    self.notes.append(f"the model's {p.key} is {name}.{key} in the .net network")
        if op == "bn":
            counter = self.program.state_dict.get(f"{owner}.num_batches_tracked")
            self.weights[f"{name}.num_batches_tracked"] = (counter.numpy() if counter is not None
                                                           else np.zeros((), dtype=np.int64))
        return name

    # ---- the walk -----------------------------------------------------------------------------------------
    def run(self, input_shapes: list[tuple[int, ...]]) -> ImportedModel:
        graph = self.program.graph_module.graph
        placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
        for i, arg in enumerate(self.user_inputs):
            node = placeholders[arg]
            name = net_name(arg, f"x{i}")
            self.values[arg] = self.b.input(name, self.per_sample(node))
        for node in graph.nodes:
            if node.op == "placeholder":
                if node.name in self.params:
                    self.values[node.name] = self.params[node.name]
            elif node.op == "call_function":
                self.values[node.name] = self.call(node)
            elif node.op == "output":
                self.outputs(node)
            elif node.op == "get_attr":
                raise unsupported("reads a module attribute as a tensor", self.origin(node), SUPPORTED)
        g = self.b.g
        dead = dead_nodes(g)
        if dead:
            self.notes.append(f"left out {len(dead)} node(s) whose values no output uses: {', '.join(dead[:5])}")
            self.weights = {k: v for k, v in self.weights.items() if k.rpartition(".")[0] in g}
        validate(g)
        return ImportedModel(g, self.weights, self.scopes, self.where, self.notes)

    def outputs(self, node) -> None:
        specs = [s for s in self.program.graph_signature.output_specs if s.kind.name == "USER_OUTPUT"]
        names = [s.arg.name for s in specs]
        values = {n.name: n for n in node.args[0] if isinstance(n, torch.fx.Node)}
        keys = _output_keys(self.program, len(names))
        for i, arg in enumerate(names):
            ir = self.tensor(values[arg], values[arg], "output")
            if self.b.g.nodes[ir]["op"] == "input":
                raise NetError(f"{self.where}: output {i} is an input itself; it depends on no layer")
            if keys is not None:
                out = net_name(str(keys[i]), f"out{i}")
            elif len(names) == 1:
                out = "logits" if len(self.b.g.nodes[ir]["shape"]) == 1 else "out"
            else:
                out = f"out{i}"
            self.b.g.graph["outputs"][out] = ir

    def call(self, node):
        import operator

        if node.target is operator.getitem:
            source, index = self.values.get(node.args[0].name), node.args[1]
            if isinstance(source, Parts):
                return self.add(node, "split", {"sections": source.sections, "part": int(index)}, [source.source])
            if isinstance(source, tuple):
                return source[index]
            raise unsupported("indexes a tensor (slicing is not a netdsl op)", self.origin(node), SUPPORTED)
        target = getattr(node.target, "_opname", None)
        if target is None:
            raise unsupported(f"calls {getattr(node.target, '__name__', node.target)}", self.origin(node), SUPPORTED)
        op = target.strip("_")
        if op in IGNORED or target in IGNORED:
            return None
        handler = HANDLERS.get(op)
        if handler is None:
            if op in PASS_THROUGH:
                return self.values.get(node.args[0].name)
            raise unsupported(f"uses {str(node.target).split('.default')[0].replace('aten.', 'torch.')}, which netdsl "
                              "has no op for", self.origin(node), SUPPORTED)
        return handler(self, node, _bind(node))


def _output_keys(program, count: int) -> list | None:
    """The keys of a dict the forward returns, in output order; None for a tensor or a tuple."""
    from torch.utils import _pytree

    try:
        tree = _pytree.tree_unflatten(list(range(count)), program.call_spec.out_spec)
    except Exception:  # noqa: BLE001 (an unusual output structure: fall back to positional names)
        return None
    if isinstance(tree, dict):
        order = {v: k for k, v in tree.items()}
        return [order[i] for i in range(count)]
    return None


def _is_layer_class(cls: str) -> bool:
    """torch.nn's own modules are layers (one op, or a few); its containers and the user's classes are scopes."""
    return cls.startswith("torch.nn.modules.") and cls.rsplit(".", 1)[-1] not in CONTAINERS


# ---- handlers: (converter, fx node, bound arguments) -> IR node name or a pending value ---------------------------
def _conv(c: _Converter, node, a: dict) -> str:
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


def _conv_transpose(c: _Converter, node, a: dict) -> str:
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


def _linear(c: _Converter, node, a: dict) -> str:
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


def _batch_norm(c: _Converter, node, a: dict):
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
    def handler(c: _Converter, node, a: dict) -> str:
        return c.add(node, op, dict(fixed), [c.tensor(a.get("self", a.get("input")), node)])

    return handler


def _hardtanh(c: _Converter, node, a: dict) -> str:
    if (float(a["min_val"]), float(a["max_val"])) != (0.0, 6.0):
        raise unsupported(f"clamps to [{a['min_val']}, {a['max_val']}] (only ReLU6's [0, 6] is a netdsl op)",
                          c.origin(node), SUPPORTED)
    return c.add(node, "relu6", {}, [c.tensor(a["self"], node)])


def _leaky_relu(c: _Converter, node, a: dict) -> str:
    return c.add(node, "leaky_relu", {"slope": float(a["negative_slope"])}, [c.tensor(a["self"], node)])


def _gelu(c: _Converter, node, a: dict) -> str:
    return c.add(node, "gelu", {"approximate": a.get("approximate") or "none"}, [c.tensor(a["self"], node)])


def _softmax(c: _Converter, node, a: dict) -> str:
    x = c.tensor(a["self"], node)
    dim = int(a["dim"])
    if dim == 0 or dim == -len(c.shape(node)):
        raise unsupported("takes a softmax over the batch", c.origin(node), SUPPORTED)
    return c.add(node, "softmax", {"dim": dim - 1 if dim > 0 else dim}, [x])


def _dropout(c: _Converter, node, a: dict) -> str:
    return c.add(node, "dropout", {"p": float(a["p"])}, [c.tensor(a["input"], node)])


def _pool(op: str):
    def handler(c: _Converter, node, a: dict) -> str:
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


def _adaptive_avg_pool(c: _Converter, node, a: dict) -> str:
    size = _square("output size", a["output_size"], "adaptive pooling", c.origin(node))
    return c.add(node, "adaptive_avgpool", {"size": size}, [c.tensor(a["self"], node)])


def _mean(c: _Converter, node, a: dict) -> str:
    x = c.tensor(a["self"], node)
    rank = len(c.b.g.nodes[x]["shape"]) + 1
    dims = sorted(d % rank for d in (a["dim"] or []))
    if rank != 4 or dims != [2, 3]:
        raise unsupported(f"averages over dims {a['dim']} (netdsl's global average pool averages H and W)",
                          c.origin(node), SUPPORTED)
    if a.get("keepdim"):
        return c.add(node, "adaptive_avgpool", {"size": 1}, [x])
    return c.add(node, "gap", {}, [x])


def _reshape(c: _Converter, node, a: dict):
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


def _flatten(c: _Converter, node, a: dict):
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


def _transpose(c: _Converter, node, a: dict):
    source = c.values.get(a["self"].name)
    dims = sorted(d % 5 for d in (a["dim0"], a["dim1"])) if "dim0" in a else None
    if "dims" in a:
        dims = [1, 2] if [d % 5 for d in a["dims"]] == [0, 2, 1, 3, 4] else None
    if isinstance(source, Shuffling) and not source.swapped and dims == [1, 2]:
        return Shuffling(source.source, source.groups, True)
    raise unsupported("transposes dims (netdsl transposes only inside a channel shuffle)", c.origin(node), SUPPORTED)


def _unflatten(c: _Converter, node, a: dict):
    x = c.tensor(a["self"], node)
    shape = c.b.g.nodes[x]["shape"]
    sizes = list(c.shape(node))
    if int(a["dim"]) % 4 == 1 and len(shape) == 3 and len(sizes) == 5 and sizes[1] * sizes[2] == shape[0]:
        return Shuffling(x, sizes[1], False)
    raise unsupported("unflattens dims (netdsl does so only inside a channel shuffle)", c.origin(node), SUPPORTED)


def _channel_shuffle(c: _Converter, node, a: dict) -> str:
    return c.add(node, "channel_shuffle", {"groups": int(a["groups"])}, [c.tensor(a["self"], node)])


def _binary(op: str):
    def handler(c: _Converter, node, a: dict) -> str:
        if a.get("alpha", 1) != 1:
            raise unsupported(f"adds with alpha={a['alpha']}", c.origin(node), SUPPORTED)
        left = c.tensor(a["self"], node, "operand")
        right = c.tensor(a["other"], node, "operand")
        return c.add(node, op, {}, [left, right])

    return handler


def _cat(c: _Converter, node, a: dict) -> str:
    tensors = [c.tensor(t, node) for t in a["tensors"]]
    rank = len(c.shape(node))
    dim = int(a["dim"])
    if dim % rank == 0:
        raise unsupported("concatenates along the batch", c.origin(node), SUPPORTED)
    if len(tensors) == 1:
        return tensors[0]
    return c.add(node, "concat", {"dim": dim - 1 if dim > 0 else dim}, tensors)


def _split(c: _Converter, node, a: dict) -> Parts:
    x = c.tensor(a["self"], node)
    rank = len(c.b.g.nodes[x]["shape"]) + 1
    if int(a.get("dim", 0)) % rank != 1:
        raise unsupported("splits along a dim other than the channels", c.origin(node), SUPPORTED)
    sizes = [int(v.shape[1]) for v in node.meta["val"]]
    return Parts(x, len(sizes) if len(set(sizes)) == 1 else sizes)


def _narrow(c: _Converter, node, a: dict) -> str:
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
    def handler(c: _Converter, node, a: dict) -> str:
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


def import_torch(model: nn.Module, input_shapes: list[tuple[int, ...]], where: str,
                 name: str | None = None) -> ImportedModel:
    """The model (in eval mode, weights as they are) as netdsl IR with its weights."""
    program = capture(model, input_shapes, where)
    network = net_name(name or type(model).__name__, "Network")
    return _Converter(program, model, where, network).run(input_shapes)
