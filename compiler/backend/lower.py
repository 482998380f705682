"""Lower the IR to a torch.nn.Module: layers nested as the IR names them, a generated straight-line forward.

As torch.fx's GraphModule does, the forward is Python source generated once (compiler.backend.codegen) and compiled into
a method of a per-network subclass, so a call runs no interpreter loop over nodes, and torch.jit.script,
torch.compile and inspect.getsource all see ordinary code.
"""

from __future__ import annotations

import contextlib
import hashlib
import linecache
import textwrap

import networkx as nx
import torch
import torch.nn.functional as F  # noqa: N812 (the generated code's spelling)
from torch import nn

from compiler.backend.codegen import (
    INIT_SOURCE,
    NORMALIZATION,
    class_name,
    forward_source,
    layer_specs,
    scopes_of,
)
from compiler.backend.names import check_module_names
from compiler.diagnostics import NetError
from compiler.ir import copy_graph
from compiler.shapes import infer_shapes


def compile_method(source: str, fn_name: str, label: str):
    """Compile generated source into a function whose source inspect (hence TorchScript) can read back.

    The source is registered with linecache under a name derived from its hash, so lowering many networks
    (synthesis) keeps one entry per distinct forward, not one per module."""
    filename = f"<netdsl {label} {hashlib.sha1(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace = {"torch": torch, "F": F}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 (our own generated code)
    return namespace[fn_name]


class LoweredNetwork(nn.Module):
    """A network lowered from the IR; each instance gets a subclass whose forward is its generated code.

    Attributes: `network` (name), `code` (the forward's source), `shapes` ({node: per-sample shape} from the
    IR), `input_names`, `output_names` and `ir` (the graph). `intermediates(*inputs)` returns every node's value.
    With `normalization` (mean, std per channel) the forward first normalises its input, as exported models do;
    the two buffers are not part of the state dict, so the same weights load either way.
    """

    def __init__(self, graph: nx.DiGraph, normalization: tuple | None = None):
        super().__init__()
        if any(d.get("shape") is None for _, d in graph.nodes(data=True)):
            graph = infer_shapes(copy_graph(graph))
        check_module_names(graph)
        self.ir = graph
        self.network = graph.graph["name"]
        self.shapes = {n: tuple(d["shape"]) for n, d in graph.nodes(data=True)}
        self.input_names = list(graph.graph["inputs"])
        self.output_names = list(graph.graph["outputs"])
        self.code = forward_source(graph, normalize=normalization is not None)
        label = graph.graph["name"]
        methods = {
            "forward": compile_method(self.code, "forward", label),
            "intermediates": compile_method(forward_source(graph, "intermediates", all_values=True),
                                            "intermediates", label + " intermediates"),
            "__module__": __name__,
        }
        self.__class__ = type(class_name(graph), (LoweredNetwork,), methods)
        for path, spec in layer_specs(graph).items():
            for scope in scopes_of([path]):
                self._place(scope, nn.Module(), container=True)
            self._place(path, getattr(nn, spec.cls)(*spec.args, **spec.kwargs), container=False)
        if normalization is not None:
            for buffer, values in zip(NORMALIZATION, normalization):
                self.register_buffer(buffer, torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1),
                                     persistent=False)

    def _place(self, path: str, module: nn.Module, container: bool) -> None:
        parent, _, leaf = path.rpartition(".")
        owner = self.get_submodule(parent) if parent else self
        existing = owner._modules.get(leaf)
        if existing is not None:
            if container and type(existing) is nn.Module:
                return
            raise NetError(f"layer '{path}' is also the name of a block containing other layers; rename one",
                           self.ir.nodes[path].get("span") if path in self.ir else None)
        if hasattr(owner, leaf):
            node = self.ir.nodes.get(path, {})
            raise NetError(f"the name '{leaf}' (in '{path}') is taken by torch.nn.Module; rename it",
                           node.get("span"))
        owner.add_module(leaf, module)

    def forward(self, *inputs: torch.Tensor):  # replaced by the generated forward
        raise NotImplementedError


def _compile_initializer():
    """The exported source's `_initialize` method, compiled once: one text for the module and the .py file."""
    namespace = {"nn": nn}
    exec(compile(textwrap.dedent(INIT_SOURCE), "<netdsl init>", "exec"), namespace)  # noqa: S102 (our own text)
    return namespace["_initialize"]


_INITIALIZE = _compile_initializer()


def initialize(module: nn.Module) -> None:
    """torchvision's initialisation: He-normal (fan_out) convs, unit BN, N(0, 0.01) linears, zero biases."""
    _INITIALIZE(module)


def lower_to_torch(graph: nx.DiGraph, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None, normalization: tuple | None = None) -> LoweredNetwork:
    """The network as an initialised nn.Module on `device` (built there directly; "meta" allocates nothing);
    with `normalization` (mean, std per channel) it takes [0, 1] pixels and normalises them first."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = LoweredNetwork(graph, normalization)
        initialize(module)
    return module.to(dtype=dtype) if dtype is not None else module


def parameter_count(module: nn.Module) -> int:
    """Trainable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())
