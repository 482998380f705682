"""Where a value or an error comes from: the argument that passed a value on through blocks, the names an
expression reads, and the block calls that led to a layer (the traceback an error inside blocks notes)."""

from __future__ import annotations

import networkx as nx

from compiler.diagnostics import Span, source_line
from netdsl import syntax as ast


def call_notes(g: nx.DiGraph, node: str) -> list[str]:
    """The block calls that made a node, innermost first, each located (as errors raised while building note them)."""
    calls, scopes = g.graph.get("calls", {}), g.graph.get("scopes", {})
    parts = node.split(".")
    notes = []
    for depth in range(len(parts) - 1, 0, -1):
        scope = ".".join(parts[:depth])
        span = calls.get(scope)
        if span is not None:
            notes.append(f"in block '{scopes[scope]}', called at {span.file}:{span.line}:{span.column}: "
                         f"{source_text(span)}")
    return notes


def bare_name(e) -> str | None:
    """The name an argument passes on unchanged (`n`, not `n - 1`), or None."""
    while isinstance(e, ast.Chain) and len(e.steps) == 1:
        step = e.steps[0]
        if step.fixed or step.repeat is not None or step.name is not None:
            return None
        e = step.expr
    return e.path[0] if isinstance(e, ast.Ref) and len(e.path) == 1 else None


def refs_in(e) -> list[str]:
    """The plain names an expression reads, in source order."""
    if isinstance(e, ast.Ref):
        return [e.path[0]] if len(e.path) == 1 else []
    if isinstance(e, ast.BinOp):
        return refs_in(e.left) + refs_in(e.right)
    if isinstance(e, ast.Neg):
        return refs_in(e.operand)
    if isinstance(e, ast.Index):
        return refs_in(e.base) + refs_in(e.index)
    if isinstance(e, ast.Call):
        return [n for a in e.args for n in refs_in(a.value)]
    if isinstance(e, ast.Chain):
        return [n for step in e.steps for n in refs_in(step.expr)]
    return []


def within(inner: Span | None, outer: Span | None) -> bool:
    """Whether span `inner` lies inside span `outer` (same file)."""
    if inner is None or outer is None or inner.file != outer.file:
        return False
    return (outer.line, outer.column) <= (inner.line, inner.column) and \
        (inner.end_line, inner.end_column) <= (outer.end_line, outer.end_column)


def source_text(span: Span, limit: int = 40) -> str:
    """The source a span covers (its first line), clipped to `limit` characters."""
    line = source_line(span) or ""
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    text = line[span.column - 1:end].strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."
