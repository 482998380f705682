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
from compiler.shapes import conv_padding, split_sizes

# Names the generated code uses for itself; a variable never takes one of them.
RESERVED = frozenset({"self", "torch", "F", "nn", "math"})
# Ops that may overwrite an input: relu and relu6 need only their output for backward, add needs no value at all.
INPLACE_OPS = frozenset({"relu", "relu6", "add"})
# Ops whose output is a fresh tensor that nothing else aliases (safe to overwrite in place).
FRESH_OUTPUT_OPS = frozenset({"conv", "dwconv", "conv_transpose", "linear", "bn", "add", "mul", "concat"})
LAYER_OPS = frozenset({"conv", "dwconv", "conv_transpose", "linear", "bn"})


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


def layer_spec(g: nx.DiGraph, name: str) -> LayerSpec | None:
    """The nn layer that holds a node's parameters, or None for a parameter-free node."""
    d = g.nodes[name]
    op, a = d["op"], d["attrs"]
    if op not in LAYER_OPS:
        return None
    cin = g.nodes[d["inputs"][0]]["shape"][0]
    if op in ("conv", "dwconv"):
        groups, out = (cin, cin * a["multiplier"]) if op == "dwconv" else (a["groups"], a["out"])
        return LayerSpec("Conv2d", (cin, out, a["k"]), _non_default(
            stride=(a["stride"], 1), padding=(conv_padding(a), 0), dilation=(a["dilation"], 1),
            groups=(groups, 1), bias=(a["bias"], True)))
    if op == "conv_transpose":
        return LayerSpec("ConvTranspose2d", (cin, a["out"], a["k"]), _non_default(
            stride=(a["stride"], 1), padding=(a["padding"], 0), output_padding=(a["output_padding"], 0),
            groups=(a["groups"], 1), bias=(a["bias"], True), dilation=(a["dilation"], 1)))
    if op == "linear":
        return LayerSpec("Linear", (cin, a["out"]), _non_default(bias=(a["bias"], True)))
    cls = "BatchNorm2d" if len(d["shape"]) == 3 else "BatchNorm1d"
    return LayerSpec(cls, (cin,), _non_default(eps=(a["eps"], 1e-5), momentum=(a["momentum"], 0.1),
                                               affine=(a["affine"], True)))


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


def node_expression(g: nx.DiGraph, name: str, args: list[str], inplace: bool = False) -> str:
    """The Python expression computing one node from its input variables."""
    d = g.nodes[name]
    op, a, x = d["op"], d["attrs"], (args[0] if args else None)
    if op in LAYER_OPS:
        return f"{module_ref(name)}({x})"
    place = ", inplace=True" if inplace else ""
    if op in ("relu", "relu6"):
        return f"F.{op}({x}{place})"
    if op == "leaky_relu":
        return f"F.leaky_relu({x}, {literal(float(a['slope']))})"
    if op == "sigmoid":
        return f"torch.sigmoid({x})"
    if op in ("hardswish", "hardsigmoid", "silu"):
        return f"F.{op}({x})"
    if op == "gelu":
        return f"F.gelu({x})" if a["approximate"] == "none" else f"F.gelu({x}, approximate={literal(a['approximate'])})"
    if op == "softmax":
        return f"F.softmax({x}, {_batch_dim(a['dim'])})"
    if op in ("maxpool", "avgpool"):
        kw = _non_default(stride=(a["stride"] or a["k"], a["k"]), padding=(a["padding"], 0),
                          dilation=(a.get("dilation", 1), 1), ceil_mode=(a["ceil_mode"], False),
                          count_include_pad=(a.get("count_include_pad", True), True))
        fn = "max_pool2d" if op == "maxpool" else "avg_pool2d"
        return f"F.{fn}({', '.join([x, str(a['k'])] + [f'{k}={literal(v)}' for k, v in kw.items()])})"
    if op == "gap":
        return f"{x}.mean((2, 3))"
    if op == "adaptive_avgpool":
        return f"F.adaptive_avg_pool2d({x}, {a['size']})"
    if op == "flatten":
        return f"{x}.flatten(1)"
    if op == "dropout":
        return f"F.dropout({x}, {literal(float(a['p']))}, self.training)"
    if op == "upsample":
        size = f"size=({a['size']}, {a['size']})" if a["size"] is not None else f"scale_factor={literal(float(a['scale']))}"
        corners = f", align_corners={a['align_corners']}" if a["align_corners"] is not None else ""
        return f"F.interpolate({x}, {size}, mode={literal(a['mode'])}{corners})"
    if op in ("add", "mul"):
        rank = len(d["shape"])
        operands = [_broadcast_operand(v, len(g.nodes[i]["shape"]), rank) for v, i in zip(args, d["inputs"])]
        if inplace:
            target = inplace_operand(g, name) or 0
            others = operands[:target] + operands[target + 1:]
            return operands[target] + "".join(f".add_({v})" for v in others)
        return (" + " if op == "add" else " * ").join(operands)
    if op == "concat":
        return f"torch.cat([{', '.join(args)}], {_batch_dim(a['dim'])})"
    if op == "channel_shuffle":
        c, groups = d["shape"][0], a["groups"]
        return f"{x}.unflatten(1, ({groups}, {c // groups})).transpose(1, 2).flatten(1, 2)"
    if op == "split":
        sizes = split_sizes(a["sections"], g.nodes[d["inputs"][0]]["shape"][0])
        return f"{x}.narrow(1, {sum(sizes[:a['part']])}, {sizes[a['part']]})"
    if op == "identity":
        return x
    raise _fail(g, name, f"op '{op}' has no PyTorch lowering")


def _uses(g: nx.DiGraph, name: str) -> int:
    return sum(g.nodes[c]["inputs"].count(name) for c in g.successors(name))


def can_run_inplace(g: nx.DiGraph, name: str) -> bool:
    """relu/relu6/add may overwrite their first input when it is a fresh tensor of the output's shape read by
    nothing else (as torchvision's ReLU(inplace=True) and `out += identity` do)."""
    return inplace_operand(g, name) is not None


def inplace_operand(g: nx.DiGraph, name: str) -> int | None:
    """Which input an in-place relu/relu6/add may overwrite: a fresh tensor of the output's shape that nothing
    else reads (a two-operand add may overwrite either: a + b == b + a exactly); None if none may."""
    d = g.nodes[name]
    if d["op"] not in INPLACE_OPS:
        return None
    candidates = (0, 1) if d["op"] == "add" and len(d["inputs"]) == 2 else (0,)
    for i in candidates:
        src = d["inputs"][i]
        if (g.nodes[src]["op"] in FRESH_OUTPUT_OPS and _uses(g, src) == 1 and g.nodes[src]["shape"] == d["shape"]
                and src not in g.graph["outputs"].values()):
            return i
    return None


def forward_source(g: nx.DiGraph, fn_name: str = "forward", all_values: bool = False) -> str:
    """A straight-line forward: one statement per node, dead values released with `del`.

    Inputs are positional arguments in the graph's input order; it returns the output tensor, or a dict
    {output name: tensor} for several outputs. With all_values it returns every node's value instead
    (no in-place activations, nothing released): a debugging view, for checking shapes.
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


def module_source(g: nx.DiGraph, origin: str | None = None) -> str:
    """A standalone Python file: one nn.Module class, importing only torch, with the IR's layer names."""
    specs = layer_specs(g)
    cls = class_name(g)
    inputs = ", ".join(f"{i} {list(g.nodes[i]['shape'])}" for i in g.graph["inputs"])
    outputs = ", ".join(f"{o} {list(g.nodes[n]['shape'])}" for o, n in g.graph["outputs"].items())
    lines = [
        f'"""{g.graph["name"]}, generated by netdsl{f" from {origin}" if origin else ""}.',
        "",
        f"Inputs (per sample, batch first): {inputs}. Outputs: {outputs}.",
        '"""',
        "",
        "import torch",
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
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
    lines += ["        self._initialize()", "", INIT_SOURCE]
    forward = forward_source(g).replace("\n", "\n    ").rstrip()
    lines.append("    " + forward)
    return "\n".join(lines) + "\n"


def _assignment(path: str, value: str) -> str:
    """`self.a.b = value`, or `self.a.add_module("0", value)` where the leaf is not an identifier."""
    parent, _, leaf = path.rpartition(".")
    owner = module_ref(parent) if parent else "self"
    if leaf.isidentifier() and not keyword.iskeyword(leaf):
        return f"{owner}.{leaf} = {value}"
    return f"{owner}.add_module({literal(leaf)}, {value})"
