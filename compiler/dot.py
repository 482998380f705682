"""Graphviz DOT text for a network: one box per layer (its name, call, output shape and cost), blocks as nested
clusters labelled with their block, output shape and subtotals."""

from __future__ import annotations

import networkx as nx

from compiler.ir import topo_order
from compiler.printer import key_attrs


def _quote(s: str) -> str:
    """A DOT string: quotes and backslashes escaped, each newline a centred line break."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _figure(n: int) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}"
    return str(n)


def _cost(costs: dict, names: list[str]) -> str:
    params = sum(costs.get(n, {}).get("params", 0) for n in names)
    macs = sum(costs.get(n, {}).get("macs", 0) for n in names)
    parts = ([f"{_figure(params)} params"] if params else []) + ([f"{_figure(macs)} MACs"] if macs else [])
    return ", ".join(parts)


def _shape(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "?"


def to_dot(g: nx.DiGraph, costs: dict | None = None) -> str:
    """DOT source (render with `dot -Tsvg`); `costs` maps node names to {"macs", "params"} when known."""
    costs = costs or {}
    order = topo_order(g)
    scopes = g.graph.get("scopes", {})
    # every name prefix holding a node is a cluster, nested as the names are
    members: dict[str, list[str]] = {"": []}
    children: dict[str, list[str]] = {"": []}
    below: dict[str, list[str]] = {"": list(order)}
    for name in order:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in members:
                members[prefix], children[prefix], below[prefix] = [], [], []
                children[".".join(parts[:depth - 1])].append(prefix)
            below[prefix].append(name)
        members[".".join(parts[:-1])].append(name)
    lines = [f"digraph {_quote(g.graph.get('name', 'network'))} {{", "  rankdir=TB;",
             "  node [shape=box, fontname=Helvetica, fontsize=10];", "  edge [color=gray40];"]

    def node_line(name: str, indent: str) -> str:
        d = g.nodes[name]
        args = key_attrs(g, name)
        parts = [name.rpartition(".")[2], f"{d['op']}({args})" if args else d["op"], _shape(d.get("shape"))]
        cost = _cost(costs, [name])
        attrs = f"label={_quote(chr(10).join(parts + ([cost] if cost else [])))}"
        if d["op"] == "input":
            attrs += ", shape=oval"
        return f"{indent}{_quote(name)} [{attrs}];"

    for name in members[""]:
        lines.append(node_line(name, "  "))
    # clusters depth-first, each inside its parent, written without recursion (blocks may nest deeply)
    todo = [(child, "  ", False) for child in reversed(children[""])]
    count = 0
    while todo:
        prefix, indent, closing = todo.pop()
        if closing:
            lines.append(f"{indent}}}")
            continue
        kind = f" ({scopes[prefix]})" if prefix in scopes else ""
        cost = _cost(costs, below[prefix])
        label = "\n".join([prefix + kind, _shape(g.nodes[below[prefix][-1]].get("shape"))] + ([cost] if cost else []))
        lines.append(f"{indent}subgraph cluster_{count} {{")
        lines.append(f"{indent}  label={_quote(label)}; labeljust=l; style=rounded; color=gray60; fontname=Helvetica;")
        count += 1
        for name in members[prefix]:
            lines.append(node_line(name, indent + "  "))
        todo.append((prefix, indent, True))
        todo.extend((child, indent + "  ", False) for child in reversed(children[prefix]))
    for u, v in g.edges:
        lines.append(f"  {_quote(u)} -> {_quote(v)};")
    for out, node in g.graph["outputs"].items():
        lines.append(f"  {_quote('output:' + out)} [label={_quote(out)}, shape=oval];")
        lines.append(f"  {_quote(node)} -> {_quote('output:' + out)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
