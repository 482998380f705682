"""lint: check the IR's invariants (as torch.fx's Graph.lint); every rewrite is tested against it.

Not a user-facing check (compiler.validate is): a lint failure is a bug in whatever built or rewrote the graph.
"""

from __future__ import annotations

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ir import find_cycle
from compiler.ops import OPS, arity_error, check_value
from compiler.shapes import infer_node_shape

NODE_KEYS = ("op", "attrs", "inputs", "shape", "span", "fixed", "choices")
GRAPH_KEYS = {"name": str, "inputs": list, "outputs": dict, "decisions": dict, "scopes": dict}


class LintError(Exception):
    """The graph breaks an IR invariant; `problems` lists every one found."""

    def __init__(self, problems: list[str]):
        super().__init__("the IR is malformed:\n  " + "\n  ".join(problems))
        self.problems = problems


def lint(g: nx.DiGraph) -> nx.DiGraph:
    """Return g unchanged, or raise LintError listing every broken invariant."""
    problems = _graph_problems(g)
    for name, d in g.nodes(data=True):
        problems += [f"node '{name}': {p}" for p in _node_problems(g, name, d)]
    if not problems:
        cycle = find_cycle(g)
        if cycle:
            problems.append(f"cycle: {' -> '.join(cycle)}")
        else:
            problems += _shape_problems(g)
    if problems:
        raise LintError(problems)
    return g


def _graph_problems(g: nx.DiGraph) -> list[str]:
    problems = [f"graph attribute '{k}' is missing or not a {t.__name__}" for k, t in GRAPH_KEYS.items()
                if not isinstance(g.graph.get(k), t)]
    if problems:
        return problems
    inputs = g.graph["inputs"]
    declared = [n for n, d in g.nodes(data=True) if d.get("op") == "input"]
    if len(set(inputs)) != len(inputs) or set(inputs) != set(declared):
        problems.append(f"graph inputs {inputs} are not the input nodes {declared}, each once")
    problems += [f"output '{out}' names '{node}', which is not a node" for out, node in g.graph["outputs"].items()
                 if node not in g]
    edges = {(src, name) for name, d in g.nodes(data=True) for src in d.get("inputs", ())}
    problems += [f"edge {u} -> {v} is not in {v}'s inputs" for u, v in sorted(set(g.edges) - edges)]
    return problems


def _node_problems(g: nx.DiGraph, name: str, d: dict) -> list[str]:
    missing = [k for k in NODE_KEYS if k not in d]
    if missing:
        return [f"lacks {', '.join(missing)}"]
    spec = OPS.get(d["op"])
    if spec is None:
        return [f"unknown op '{d['op']}'"]
    problems = []
    wrong = arity_error(spec, len(d["inputs"]))
    if wrong:
        problems.append(f"{d['op']} {wrong}")
    for src in d["inputs"]:
        if src not in g:
            problems.append(f"reads '{src}', which is not a node")
        elif not g.has_edge(src, name):
            problems.append(f"reads '{src}' but has no edge from it")
    names = [p.name for p in spec.params]
    if sorted(d["attrs"]) != sorted(names):
        problems.append(f"attributes {sorted(d['attrs'])} are not {d['op']}'s parameters {sorted(names)}")
    for p in spec.params:
        if p.name in d["attrs"] and (want := check_value(p.kind, d["attrs"][p.name])):
            problems.append(f"{p.name}={d['attrs'][p.name]!r} is not {want}")
    for attr, decision in d["choices"].items():
        if attr not in names or decision not in g.graph["decisions"]:
            problems.append(f"choice of '{attr}' names decision {decision!r}, which is not a parameter's decision")
    shape = d["shape"]
    if shape is not None and not (isinstance(shape, tuple) and shape
                                  and all(isinstance(s, int) and s > 0 for s in shape)):
        problems.append(f"shape {shape!r} is not a tuple of positive integers")
    return problems


def _shape_problems(g: nx.DiGraph) -> list[str]:
    """Every node with a shape has inputs with shapes, and its shape is what its shape rule infers."""
    problems = []
    for name, d in g.nodes(data=True):
        if d["shape"] is None:
            continue
        unshaped = [i for i in d["inputs"] if g.nodes[i]["shape"] is None]
        if unshaped:
            problems.append(f"node '{name}' has a shape but its input '{unshaped[0]}' has none")
            continue
        try:
            inferred = infer_node_shape(g, name)
        except NetError as err:
            problems.append(f"node '{name}': its shape rule fails: {err.message}")
            continue
        if inferred != d["shape"]:
            problems.append(f"node '{name}' has shape {list(d['shape'])}, its inputs give {list(inferred)}")
    return problems
