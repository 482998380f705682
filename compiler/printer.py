"""Print any IR as canonical .net text: parse(print(g)) is the same graph, names, attributes and shapes."""

from __future__ import annotations

import re

import networkx as nx

from compiler.ir import topo_order
from compiler.ops import OPS, REQUIRED

# Parameters printed without their name (as people write them): conv(64, k=3), split(2, part=0).
PRINTED_BY_POSITION = frozenset({"out", "sections"})
LINE_WIDTH = 100
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_value(v) -> str:
    """A literal in .net syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        text = repr(v)
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


def key_attrs(g: nx.DiGraph, name: str) -> str:
    """The parameters a person needs to see: those that are not at their default."""
    return ", ".join(_call_args(g, name))


def _call_args(g: nx.DiGraph, name: str) -> list[str]:
    d = g.nodes[name]
    spec = OPS[d["op"]]
    attrs, choices = d["attrs"], d.get("choices", {})
    args = []

    def shown(p):
        value = attrs[p.name]
        if p.name in choices:
            options = list(g.graph["decisions"][choices[p.name]])
            if value in options:
                options.remove(value)
            opts = ", ".join(format_value(o) for o in [value, *options])
            return f'choice({opts}, id="{choices[p.name]}")'
        return format_value(value)

    for i, p in enumerate(spec.params):
        if p.name not in attrs:
            continue
        is_default = p.default is not REQUIRED and attrs[p.name] == p.default and p.name not in choices
        if i == 0 and p.name in PRINTED_BY_POSITION:
            args.append(shown(p))
        elif not is_default:
            args.append(f"{p.name}={shown(p)}")
    return args


def format_call(g: nx.DiGraph, name: str, with_inputs: bool) -> str:
    """op(args) as name, for a node: its inputs by @name when asked, then its non-default parameters."""
    d = g.nodes[name]
    args = ([f"@{i}" for i in d["inputs"]] if with_inputs else []) + _call_args(g, name)
    text = d["op"] + (f"({', '.join(args)})" if args else "")
    return ("fixed " if d.get("fixed") else "") + text + f" as {name}"


def print_network(g: nx.DiGraph) -> str:
    """Canonical text of one network: one chain per run of single-consumer layers."""
    name = g.graph.get("name") or "Network"
    if not _NAME.fullmatch(name):
        name = re.sub(r"\W", "_", name)
    lines = [f"network {name} {{"]
    chain: list[str] = []

    def flush():
        if chain:
            text = "    " + " -> ".join(chain)
            if len(text) > LINE_WIDTH:
                text = "    " + "\n        -> ".join(chain)
            lines.append(text)
            chain.clear()

    last = None
    for node in topo_order(g):
        d = g.nodes[node]
        if d["op"] == "input":
            flush()
            lines.append(f"    input {node}: {format_value(list(d['attrs']['shape']))}")
            last = None
            continue
        continues = (
            last is not None and d["inputs"] == [last] and g.out_degree(last) == 1 and len(d["inputs"]) == 1
        )
        if continues:
            chain.append(format_call(g, node, with_inputs=False))
        else:
            flush()
            if len(d["inputs"]) == 1:
                chain.extend([f"@{d['inputs'][0]}", format_call(g, node, with_inputs=False)])
            else:
                chain.append(format_call(g, node, with_inputs=True))
        last = node
    flush()
    for out, node in g.graph["outputs"].items():
        lines.append(f"    output {out} = @{node}")
    lines.append("}")
    return "\n".join(lines) + "\n"
