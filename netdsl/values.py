"""The values a .net expression evaluates to (numbers, tensors, choices), the built-in functions, and wording."""

from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.diagnostics import NetError, Span, count

# Numbers in a .net file lie within +-2**53: floats hold every integer up to there exactly, and no size,
# count or factor of a real network comes near it, so larger values (or inf) are refused where they appear.
MAX_NUMBER = 2**53


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


def short(v) -> str:
    """A number for a message: exact when short, else in scientific notation (never a 4,000-digit string)."""
    return count(v) if isinstance(v, int) and abs(v) >= 10**15 else repr(v)


RANGE = "numbers in a .net file lie within +-2**53 (about 9.0e15)"


def in_range(v) -> bool:
    """True for a finite number within +-MAX_NUMBER."""
    return math.isfinite(v) and -MAX_NUMBER <= v <= MAX_NUMBER


def check_number(v, span: Span | None, what: str | None = None):
    """v itself when it is not a number or a finite one within +-MAX_NUMBER; else a NetError at span."""
    if is_number(v) and not in_range(v):
        raise NetError(f"{what or 'the number ' + short(v)} is out of range: {RANGE}", span)
    return v


def _divisible(v, divisor=8, min_value=None):
    """MobileNet's _make_divisible: round to a multiple of divisor, never below 90% of v."""
    min_value = min_value or divisor
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _log(x, base=math.e):
    """The logarithm of x (natural, or to `base`), as math.log."""
    if x <= 0 or base <= 0 or base == 1:
        raise ValueError("takes a positive number and a positive base other than 1")
    return math.log(x, base)


def _pow(x, y):
    """x to the power y: an int for ints (y >= 0), else a float; never a complex number."""
    if isinstance(x, int) and isinstance(y, int) and y >= 0:
        if abs(x) > 1 and y * math.log2(abs(x)) > 63:
            raise ValueError(f"{x} ** {y} is too large")
        return x**y
    if x < 0 and not float(y).is_integer():
        raise ValueError("a negative number to a fractional power is not a real number")
    if x == 0 and y < 0:
        raise ValueError("0 to a negative power is undefined")
    return math.pow(x, y)


FUNCTIONS = {
    "int": int, "float": float, "round": round, "min": min, "max": max,
    "ceil": math.ceil, "floor": math.floor, "divisible": _divisible, "log": _log, "pow": _pow,
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
