"""The values a .net expression evaluates to (numbers, tensors, choices), the built-in functions, and wording."""

from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.diagnostics import Span


@dataclass(frozen=True)
class Value:
    """A tensor: the output of the IR node `node`."""

    node: str


@dataclass(eq=False)
class Choice:
    """A search choice: synthesis picks one option; everything else uses the first."""

    options: tuple
    span: Span
    id: str | None = None


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _divisible(v, divisor=8, min_value=None):
    """MobileNet's _make_divisible: round to a multiple of divisor, never below 90% of v."""
    min_value = min_value or divisor
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


FUNCTIONS = {
    "int": int, "float": float, "round": round, "min": min, "max": max,
    "ceil": math.ceil, "floor": math.floor, "divisible": _divisible,
}

ARITH = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "//": lambda a, b: a // b, "%": lambda a, b: a % b,
}


def describe(v) -> str:
    if isinstance(v, Value):
        return f"the tensor '{v.node}'"
    if isinstance(v, Choice):
        return "a choice(...)"
    if isinstance(v, tuple):
        return f"{len(v)} tensors"
    return f"the {type(v).__name__ if v is not None else 'value'} {v!r}"
