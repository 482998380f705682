"""PyTorch code generation from the IR, as text: layer constructors and a straight-line forward (no torch import).

The lowering (compiler.backend.lower) builds its layers from `layer_spec` and execs `forward_source`; the source export
prints the same two things as a standalone file, so both run exactly the same code.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ir import topo_order
from compiler.ops import OPS, OpSpec
from compiler.shapes import conv_groups, conv_padding, in_channels, same_padding, split_sizes, symmetric_padding

# Names the generated code uses for itself; a variable never takes one of them.
RESERVED = frozenset({"self", "torch", "F", "nn", "math"})


@dataclass(frozen=True)
class LayerSpec:
    """A torch.nn layer to build: `nn.<cls>(*args, **kwargs)` (kwargs only where not at PyTorch's default)."""

    cls: str
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def source(self) -> str:
        """The constructor call as Python text."""
        parts = [literal(a) for a in self.args] + [f"{k}={literal(v)}" for k, v in self.kwargs.items()]
        return f"nn.{self.cls}({', '.join(parts)})"


def literal(v) -> str:
    """A Python literal for a plain value."""
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "(" + ", ".join(literal(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    return repr(v)


def _non_default(**pairs: tuple) -> dict:
    return {k: value for k, (value, default) in pairs.items() if value != default}


def _fail(g: nx.DiGraph, name: str, message: str) -> NetError:
    return NetError(f"{g.nodes[name]['op']} '{name}': {message}", g.nodes[name].get("span"))


def _spec(g: nx.DiGraph, name: str) -> OpSpec:
    """The node's op spec; NetError for an op the backend cannot lower."""
    spec = OPS.get(g.nodes[name]["op"])
    if spec is None or spec.codegen not in EXPRESSIONS or spec.layer not in (None, *LAYERS):
        raise _fail(g, name, f"op '{g.nodes[name]['op']}' has no PyTorch lowering")
    return spec


def _conv_layer(g: nx.DiGraph, name: str, d: dict, a: dict) -> LayerSpec:
    return LayerSpec("Conv2d", (in_channels(g, name), d["shape"][0], a["k"]), _non_default(
        stride=(a["stride"], 1), padding=(conv_padding(a) if symmetric_padding(a) else 0, 0),
        dilation=(a["dilation"], 1), groups=(conv_groups(g, name), 1), bias=(a["bias"], True)))


def _conv_transpose_layer(g: nx.DiGraph, name: str, d: dict, a: dict) -> LayerSpec:
    return LayerSpec("ConvTranspose2d", (in_channels(g, name), a["out"], a["k"]), _non_default(
        stride=(a["stride"], 1), padding=(a["padding"], 0), output_padding=(a["output_padding"], 0),
        groups=(a["groups"], 1), bias=(a["bias"], True), dilation=(a["dilation"], 1)))


def _linear_layer(g: nx.DiGraph, name: str, d: dict, a: dict) -> LayerSpec:
    return LayerSpec("Linear", (in_channels(g, name), a["out"]), _non_default(bias=(a["bias"], True)))


def _batchnorm_layer(g: nx.DiGraph, name: str, d: dict, a: dict) -> LayerSpec:
    cls = "BatchNorm2d" if len(d["shape"]) == 3 else "BatchNorm1d"
    return LayerSpec(cls, (in_channels(g, name),), _non_default(eps=(a["eps"], 1e-5), momentum=(a["momentum"], 0.1),
                                                                affine=(a["affine"], True)))


# layer trait (compiler.ops.TRAITS["layer"]) -> rule(g, name, node, attrs) -> the nn layer holding its parameters
LAYERS = {"conv": _conv_layer, "conv_transpose": _conv_transpose_layer, "linear": _linear_layer,
          "batchnorm": _batchnorm_layer}


def layer_spec(g: nx.DiGraph, name: str) -> LayerSpec | None:
    """The nn layer that holds a node's parameters, or None for a parameter-free node."""
    d = g.nodes[name]
    layer = _spec(g, name).layer
    return None if layer is None else LAYERS[layer](g, name, d, d["attrs"])


def layer_specs(g: nx.DiGraph) -> dict[str, LayerSpec]:
    """Every parametric node's layer, in topological order."""
    return {name: spec for name in topo_order(g) if (spec := layer_spec(g, name)) is not None}


def module_ref(path: str, root: str = "self") -> str:
    """Python text reaching the submodule at a dotted path: `self.layer1`, `getattr(self.layer1, "0").conv1`."""
    ref = root
    for seg in path.split("."):
        ref = f"{ref}.{seg}" if seg.isidentifier() and not keyword.iskeyword(seg) else f"getattr({ref}, {literal(seg)})"
    return ref


def variable_names(g: nx.DiGraph) -> dict[str, str]:
    """A distinct Python identifier for every node, readable from its name (`layer1.0.conv1` -> `layer1_0_conv1`)."""
    names, taken = {}, set(RESERVED)
    for node in topo_order(g):
        base = re.sub(r"\W", "_", node) or "_"
        if base[0].isdigit() or keyword.iskeyword(base) or base in RESERVED:
            base = "_" + base
        var, i = base, 0
        while var in taken:
            i += 1
            var = f"{base}_{i}"
        taken.add(var)
        names[node] = var
    return names


def _batch_dim(dim: int) -> int:
    """A per-sample dim as a batched tensor's dim (negative dims count from the end either way)."""
    return dim + 1 if dim >= 0 else dim


def _broadcast_operand(var: str, rank: int, out_rank: int) -> str:
    """Right-align a lower-rank operand's per-sample dims, as the IR's broadcast rule does: [N, C] -> [N, 1, 1, C]."""
    if rank == out_rank:
        return var
    return f"{var}[:, {', '.join(['None'] * (out_rank - rank))}]"


@dataclass(frozen=True)
class _Site:
    """What an expression rule reads: the node, its attributes, its spec's `torch` callable, its input variables."""

    g: nx.DiGraph
    name: str
    node: dict
    fn: str
    args: list[str]
    inplace: bool

    @property
    def a(self) -> dict:
        return self.node["attrs"]

    @property
    def x(self) -> str:
        return self.args[0]


def _pool(s: _Site) -> str:
    a = s.a
    kw = _non_default(stride=(a["stride"] or a["k"], a["k"]), padding=(a["padding"], 0),
                      dilation=(a.get("dilation", 1), 1), ceil_mode=(a["ceil_mode"], False),
                      count_include_pad=(a.get("count_include_pad", True), True))
    return f"{s.fn}({', '.join([s.x, str(a['k'])] + [f'{k}={literal(v)}' for k, v in kw.items()])})"


def _upsample(s: _Site) -> str:
    a = s.a
    size = f"size=({a['size']}, {a['size']})" if a["size"] is not None else f"scale_factor={literal(float(a['scale']))}"
    corners = f", align_corners={a['align_corners']}" if a["align_corners"] is not None else ""
    return f"{s.fn}({s.x}, {size}, mode={literal(a['mode'])}{corners})"


IN_PLACE_METHODS = {"+": "add_", "*": "mul_"}


def _arith(s: _Site) -> str:
    rank = len(s.node["shape"])
    operands = [_broadcast_operand(v, len(s.g.nodes[i]["shape"]), rank) for v, i in zip(s.args, s.node["inputs"])]
    if s.inplace:
        target = inplace_operand(s.g, s.name) or 0
        others = operands[:target] + operands[target + 1:]
        return operands[target] + "".join(f".{IN_PLACE_METHODS[s.fn]}({v})" for v in others)
    return f" {s.fn} ".join(operands)


def _channel_shuffle(s: _Site) -> str:
    c, groups = s.node["shape"][0], s.a["groups"]
    return f"{s.x}.unflatten(1, ({groups}, {c // groups})).transpose(1, 2).flatten(1, 2)"


def _split(s: _Site) -> str:
    sizes = split_sizes(s.a["sections"], in_channels(s.g, s.name))
    return f"{s.x}.narrow(1, {sum(sizes[:s.a['part']])}, {sizes[s.a['part']]})"


def _gelu(s: _Site) -> str:
    mode = s.a["approximate"]
    return f"{s.fn}({s.x})" if mode == "none" else f"{s.fn}({s.x}, approximate={literal(mode)})"


def _input(s: _Site) -> str:
    raise _fail(s.g, s.name, "a network input is a forward argument, not an expression")


def _module(s: _Site) -> str:
    """A layer's call; a conv padded "same" around an even kernel pads its input first, one more pixel after than
    before, as PyTorch's padding="same" does (explicitly, so that every exporter and runtime agrees)."""
    x = s.x
    if "padding" in s.a and "dilation" in s.a and not symmetric_padding(s.a):
        (top, bottom), (left, right) = same_padding(s.a)
        x = f"F.pad({x}, ({left}, {right}, {top}, {bottom}))"
    return f"{module_ref(s.name)}({x})"


# codegen trait (compiler.ops.TRAITS["codegen"]) -> rule(site) -> the Python expression computing the node
EXPRESSIONS = {
    "input": _input,
    "module": _module,
    "call": lambda s: f"{s.fn}({s.x}{', inplace=True' if s.inplace else ''})",
    "leaky_relu": lambda s: f"{s.fn}({s.x}, {literal(float(s.a['slope']))})",
    "gelu": _gelu,
    "softmax": lambda s: f"{s.fn}({s.x}, {_batch_dim(s.a['dim'])})",
    "pool": _pool,
    "gap": lambda s: f"{s.x}.mean((2, 3))",
    "adaptive_avgpool": lambda s: f"{s.fn}({s.x}, {s.a['size']})",
    "flatten": lambda s: f"{s.x}.flatten(1)",
    "dropout": lambda s: f"{s.fn}({s.x}, {literal(float(s.a['p']))}, self.training)",
    "upsample": _upsample,
    "arith": _arith,
    "concat": lambda s: f"{s.fn}([{', '.join(s.args)}], {_batch_dim(s.a['dim'])})",
    "channel_shuffle": _channel_shuffle,
    "split": _split,
    "identity": lambda s: s.x,
}


def node_expression(g: nx.DiGraph, name: str, args: list[str], inplace: bool = False) -> str:
    """The Python expression computing one node from its input variables."""
    spec = _spec(g, name)
    return EXPRESSIONS[spec.codegen](_Site(g, name, g.nodes[name], spec.torch, args, inplace))


def _uses(g: nx.DiGraph, name: str) -> int:
    return sum(g.nodes[c]["inputs"].count(name) for c in g.successors(name))


# inplace trait (compiler.ops.TRAITS["inplace"]) -> the inputs it may overwrite, given its number of inputs
INPLACE = {"first": lambda n: (0,), "either": lambda n: (0, 1) if n == 2 else (0,)}


def can_run_inplace(g: nx.DiGraph, name: str) -> bool:
    """An op with an inplace trait (relu, relu6, add) may overwrite an input that is a fresh tensor of the
    output's shape read by nothing else (as torchvision's ReLU(inplace=True) and `out += identity` do)."""
    return inplace_operand(g, name) is not None


def inplace_operand(g: nx.DiGraph, name: str) -> int | None:
    """Which input an op with an inplace trait may overwrite: a fresh tensor of the output's shape that nothing
    else reads (a two-operand add may overwrite either: a + b == b + a exactly); None if none may."""
    d = g.nodes[name]
    kind = _spec(g, name).inplace
    if kind is None:
        return None
    for i in INPLACE[kind](len(d["inputs"])):
        src = d["inputs"][i]
        if (_spec(g, src).fresh and _uses(g, src) == 1 and g.nodes[src]["shape"] == d["shape"]
                and src not in g.graph["outputs"].values()):
            return i
    return None


def forward_source(g: nx.DiGraph, fn_name: str = "forward", all_values: bool = False,
                   normalize: bool = False) -> str:
    """A straight-line forward: one statement per node, dead values released with `del`.

    Inputs are positional arguments in the graph's input order; it returns the output tensor, or a dict
    {output name: tensor} for several outputs. With all_values it returns every node's value instead
    (no in-place activations, nothing released): a debugging view, for checking shapes. With normalize the
    first statement normalises the (one) input by the module's `input_mean` and `input_std` buffers.
    """
    var = variable_names(g)
    order = [n for n in topo_order(g) if g.nodes[n]["op"] != "input"]
    outputs = g.graph["outputs"]
    last_use = {}
    for i, node in enumerate(order):
        for src in g.nodes[node]["inputs"]:
            last_use[src] = i
    keep = set(outputs.values())
    lines = [f"def {fn_name}(self, {', '.join(var[i] for i in g.graph['inputs'])}):"]
    if normalize:
        x = var[normalized_input(g)]
        lines.append(f"    {x} = ({x} - self.{NORMALIZATION[0]}) / self.{NORMALIZATION[1]}")
    for i, node in enumerate(order):
        d = g.nodes[node]
        inplace = not all_values and can_run_inplace(g, node)
        line = f"    {var[node]} = {node_expression(g, node, [var[s] for s in d['inputs']], inplace)}"
        dead = [var[s] for s in dict.fromkeys(d["inputs"]) if last_use[s] == i and s not in keep]
        lines.append(line + (f"; del {', '.join(dead)}" if dead and not all_values else ""))
    if all_values:
        lines.append("    return {" + ", ".join(f"{literal(n)}: {var[n]}" for n in topo_order(g)) + "}")
    elif len(outputs) == 1:
        lines.append(f"    return {var[next(iter(outputs.values()))]}")
    else:
        lines.append("    return {" + ", ".join(f"{literal(o)}: {var[n]}" for o, n in outputs.items()) + "}")
    return "\n".join(lines) + "\n"


# The buffers a normalising forward reads (not persistent: a state dict never holds them).
NORMALIZATION = ("input_mean", "input_std")


def normalized_input(g: nx.DiGraph) -> str:
    """The one image input that normalisation applies to; NetError for a network with several inputs."""
    inputs = g.graph["inputs"]
    if len(inputs) != 1:
        raise NetError(f"network '{g.graph['name']}' has {len(inputs)} inputs ({', '.join(inputs)}); the input "
                       "normalisation is defined for one image input", notes=["export it with --no-preprocess"])
    return inputs[0]


def class_name(g: nx.DiGraph) -> str:
    """The network's name as a Python class name: resnet18 -> Resnet18, mobilenet_v2 -> MobilenetV2."""
    parts = [p for p in re.split(r"\W|_", g.graph["name"]) if p]
    name = "".join(p[0].upper() + p[1:] for p in parts) or "Network"
    return name if name[0].isalpha() and not keyword.iskeyword(name) else "Net" + name


def scopes_of(paths) -> list[str]:
    """The container paths the layers need, parents first: `layer1`, `layer1.0` for `layer1.0.conv1`."""
    scopes: dict[str, None] = {}
    for path in paths:
        segs = path.split(".")
        for i in range(1, len(segs)):
            scopes[".".join(segs[:i])] = None
    return list(scopes)


INIT_SOURCE = '''\
    def _initialize(self):
        """torchvision's initialisation: He-normal (fan_out) convs, unit BN, N(0, 0.01) linears, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
'''


def module_source(g: nx.DiGraph, origin: str | None = None, normalization: tuple | None = None,
                  header: str = "", appendix: str = "") -> str:
    """A standalone Python file: one nn.Module class, importing only torch, with the IR's layer names.

    With normalization (mean, std per channel) the forward normalises its input first (MEAN and STD constants,
    buffers left out of the state dict); `header` goes into the module docstring and `appendix` (such as a decode
    function) after the class."""
    specs = layer_specs(g)
    cls = class_name(g)
    inputs = ", ".join(f"{i} {list(g.nodes[i]['shape'])}" for i in g.graph["inputs"])
    outputs = ", ".join(f"{o} {list(g.nodes[n]['shape'])}" for o, n in g.graph["outputs"].items())
    lines = [
        f'"""{g.graph["name"]}, generated by netdsl{f" from {origin}" if origin else ""}.',
        "",
        f"Inputs (per sample, batch first): {inputs}. Outputs: {outputs}.",
        *([""] + header.rstrip().splitlines() if header else []),
        '"""',
        "",
        "import torch",
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
    ]
    if normalization is not None:
        lines += [f"MEAN = {literal(tuple(float(v) for v in normalization[0]))}  # per input channel",
                  f"STD = {literal(tuple(float(v) for v in normalization[1]))}", ""]
    lines += [
        "",
        f"class {cls}(nn.Module):",
        f'    """The {g.graph["name"]} network; load trained weights with load_state_dict."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
    ]
    made: set[str] = set()
    for path, spec in specs.items():
        for scope in scopes_of([path]):
            if scope not in made:
                made.add(scope)
                lines.append(f"        {_assignment(scope, 'nn.Module()')}")
        lines.append(f"        {_assignment(path, spec.source())}")
    if normalization is not None:
        normalized_input(g)
        for buffer, constant in zip(NORMALIZATION, ("MEAN", "STD")):
            lines.append(f"        self.register_buffer({literal(buffer)}, torch.tensor({constant}).view(1, -1, 1, 1), "
                         "persistent=False)")
    lines += ["        self._initialize()", "", INIT_SOURCE]
    forward = forward_source(g, normalize=normalization is not None).replace("\n", "\n    ").rstrip()
    lines.append("    " + forward)
    if appendix:
        lines += ["", "", appendix.rstrip()]
    return "\n".join(lines) + "\n"


def _assignment(path: str, value: str) -> str:
    """`self.a.b = value`, or `self.a.add_module("0", value)` where the leaf is not an identifier."""
    parent, _, leaf = path.rpartition(".")
    owner = module_ref(parent) if parent else "self"
    if leaf.isidentifier() and not keyword.iskeyword(leaf):
        return f"{owner}.{leaf} = {value}"
    return f"{owner}.add_module({literal(leaf)}, {value})"
