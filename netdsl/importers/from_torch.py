"""Import a PyTorch nn.Module: torch.export captures its graph (ATen ops, shapes, module paths, source lines),
and each ATen op maps onto a netdsl op; node names follow the module paths, so state_dict keys stay the model's."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import re

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
)
from netdsl.importers.python_source import located_frames, user_frame
from netdsl.importers.torch_ops import EXAMPLE_BATCH, HANDLERS, IGNORED, PASS_THROUGH, SUPPORTED, Param, Parts

CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})
MAX_INPUT_ELEMENTS = 1 << 26  # per sample; a larger example input is refused before it is allocated


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



def import_torch(model: nn.Module, input_shapes: list[tuple[int, ...]], where: str,
                 name: str | None = None) -> ImportedModel:
    """The model (in eval mode, weights as they are) as netdsl IR with its weights."""
    program = capture(model, input_shapes, where)
    network = net_name(name or type(model).__name__, "Network")
    return _Converter(program, model, where, network).run(input_shapes)
