"""Where a value or an error comes from: the argument that passed a value on through blocks, the names an
expression reads, and the block calls that led to a layer (the traceback an error inside blocks notes)."""

from __future__ import annotations

from compiler.diagnostics import Span, source_text
from compiler.ir import call_notes
from netdsl import syntax as ast

__all__ = ["bare_name", "call_notes", "refs_in", "source_text", "within"]


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
