"""How a call's arguments become inputs and parameters: tensors first (the one flowing in from the left, the
leading tensor arguments, the current value when a call at the head of a chain is given too few), then parameters
by position in the callee's order, then by name."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.diagnostics import NetError, Span, did_you_mean
from compiler.ops import VARIADIC
from netdsl import syntax as ast
from netdsl.values import Value, describe


@dataclass(frozen=True)
class Argument:
    """One evaluated argument: its name (None: positional), value, where it is written, and where its value was
    first passed (the origin a bad repeat count is reported at)."""

    name: str | None
    value: object
    span: Span
    origin: Span


def split_arguments(call: ast.Call, arguments: list[Argument], source, current, arity: int, names: list[str],
                    order: list[str]):
    """Tensor inputs, and parameters {name: (value, span, origin)}; NetError (located) for a misuse."""
    values = [source] if source is not None else []
    positional, keywords = [], {}
    for a in arguments:
        if a.name is None:
            if keywords:
                raise NetError("positional arguments come before keyword arguments", a.span)
            positional.append((a.value, a.span, a.origin))
        elif a.name in keywords:
            raise NetError(f"argument '{a.name}' is given twice", a.span)
        else:
            keywords[a.name] = (a.value, a.span, a.origin)
    want = arity if arity != VARIADIC else len(positional) + 2
    leading = 0
    while leading < len(positional) and isinstance(positional[leading][0], Value):
        leading += 1
    if source is None and current is not None and len(values) + leading < (2 if arity == VARIADIC else arity):
        values.append(current)
    take = leading if arity == VARIADIC else min(leading, max(0, want - len(values)))
    values += [v for v, _, _ in positional[:take]]
    positional = positional[take:]
    need = f"{arity} input{'s' if arity != 1 else ''}" if arity != VARIADIC else "two or more inputs"
    if (arity == VARIADIC and len(values) < 2) or (arity != VARIADIC and len(values) < arity):
        raise NetError(f"'{call.name}' takes {need} but has {len(values) or 'no'} input"
                       f"{'s' if len(values) != 1 else ''} here", call.span)
    params = {}
    for i, (v, span, origin) in enumerate(positional):
        if isinstance(v, Value):
            raise NetError(f"'{call.name}' takes {need}; {describe(v)} is one too many", span)
        if not order:
            raise NetError(f"'{call.name}' takes no parameters by position; name them (param=value)"
                           if names else f"'{call.name}' takes no parameters", span)
        if i >= len(order):
            raise NetError(f"'{call.name}' takes at most {len(order)} positional parameter"
                           f"{'s' if len(order) != 1 else ''}", span)
        params[order[i]] = (v, span, origin)
    for key, (v, span, origin) in keywords.items():
        if key not in names:
            raise NetError(f"'{call.name}' has no parameter '{key}'", span, did_you_mean(key, names))
        if key in params:
            raise NetError(f"'{key}' is given both by position and by name", span)
        params[key] = (v, span, origin)
    return values, params
