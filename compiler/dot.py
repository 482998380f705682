"""Graphviz DOT text for a network: one box per layer, clustered by block."""

from __future__ import annotations

import networkx as nx

from compiler.ir import topo_order
from compiler.printer import key_attrs


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: nx.DiGraph) -> str:
    """DOT source; render with `dot -Tsvg`."""
    lines = [f"digraph {_quote(g.graph.get('name', 'network'))} {{", "  rankdir=TB;", "  node [shape=box, fontname=Helvetica];"]
    clusters: dict[str, list[str]] = {}
    for name in topo_order(g):
        d = g.nodes[name]
        shape = "x".join(str(s) for s in d["shape"]) if d.get("shape") else "?"
        label = f"{name}\\n{d['op']}({key_attrs(g, name)})\\n{shape}"
        attrs = f"label={_quote(label)}"
        if d["op"] == "input":
            attrs += ", shape=oval"
        line = f"  {_quote(name)} [{attrs}];"
        scope = name.rsplit(".", 1)[0] if "." in name else ""
        clusters.setdefault(scope, []).append(line)
    for i, (scope, members) in enumerate(clusters.items()):
        if scope:
            lines.append(f"  subgraph cluster_{i} {{ label={_quote(scope)};")
            lines.extend("  " + m for m in members)
            lines.append("  }")
        else:
            lines.extend(members)
    for u, v in g.edges:
        lines.append(f"  {_quote(u)} -> {_quote(v)};")
    for out, node in g.graph["outputs"].items():
        lines.append(f"  {_quote('output:' + out)} [shape=oval];")
        lines.append(f"  {_quote(node)} -> {_quote('output:' + out)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
