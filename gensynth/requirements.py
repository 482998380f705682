"""Synthesis requirements (`--req "macs<=2M"`): parsing with located errors, and checking a record."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from lark import Lark, Token
from lark.exceptions import UnexpectedInput

from compiler.diagnostics import NetError, Span, did_you_mean, register_source
from gensynth.tasks.metrics import METRICS, UNITS
from grammars import grammar_text

COMPARE = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


@dataclass(frozen=True)
class Requirement:
    """metric OP value, with value in base units (count, bytes, seconds, fraction)."""

    metric: str
    comparison: str
    value: float
    text: str

    @property
    def stage(self) -> str:
        """When the metric is known: structural, measured or trained (gensynth.tasks.metrics)."""
        return METRICS[self.metric].stage

    def holds(self, measured: float) -> bool:
        return COMPARE[self.comparison](measured, self.value)

    def violation(self, measured: float) -> float:
        """How far `measured` is from meeting this, relative to the bound (0 when it holds)."""
        if self.holds(measured):
            return 0.0
        return abs(measured - self.value) / max(abs(self.value), 1e-12)


@cache
def _parser() -> Lark:
    return Lark(grammar_text("requirements.lark"), parser="lalr")


def parse_requirement(text: str, index: int = 1) -> Requirement:
    """Parse one --req string; NetError with the text, a caret and the known metrics on bad input."""
    source = f"--req[{index}]"
    register_source(source, text)

    def span(col: int, width: int = 1) -> Span:
        return Span(source, 1, col, 1, col + width)

    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        col = getattr(err, "column", len(text) + 1)
        col = col if isinstance(col, int) and col > 0 else len(text) + 1
        notes = [f"known metrics: {', '.join(METRICS)}"]
        if text.strip() in METRICS:
            # `--req acc>=0.9` unquoted: the shell takes `>=0.9` as a redirection of netdsl's output
            notes.insert(0, f"quote it: --req \"{text.strip()}>=VALUE\"; unquoted, a shell reads \">=VALUE\" as "
                            "sending the output to a file named \"=VALUE\"")
        raise NetError("a requirement is METRIC OP NUMBER[UNIT], e.g. macs<=2M, acc>=0.9, latency<=1.5ms",
                       span(col), notes) from None
    metric, comparison, number, unit = tree.children
    name = str(metric)
    if name not in METRICS:
        notes = [f"known metrics: {', '.join(METRICS)}"] + did_you_mean(name, METRICS)
        raise NetError(f"unknown metric '{name}'", span(metric.column, len(name)), notes)
    family = METRICS[name].unit
    unit_text = str(unit) if isinstance(unit, Token) else ""
    if unit_text not in UNITS[family]:
        units = ", ".join(u or "(none)" for u in UNITS[family])
        where = span(unit.column, len(unit_text)) if isinstance(unit, Token) else span(len(text) + 1)
        raise NetError(f"'{unit_text or 'no unit'}' is not a unit for {name} ({METRICS[name].description}); use one of: {units}",
                       where)
    value = float(number) * UNITS[family][unit_text]
    if not math.isfinite(value) or value > 1e18:
        raise NetError(f"the number {number[:20]}{'...' if len(number) > 20 else ''} is out of range for a requirement",
                       span(number.column, len(number)))
    if family == "fraction" and not 0 <= value <= 1:
        raise NetError(f"{name} is a fraction between 0 and 1 (or a percentage like 90%), got {value:g}",
                       span(number.column, len(number)))
    return Requirement(name, str(comparison), value, text.strip())


def parse_requirements(texts: list[str]) -> list[Requirement]:
    """Parse every --req; a metric given twice with the same direction is an error."""
    reqs = [parse_requirement(t, i + 1) for i, t in enumerate(texts)]
    seen = {}
    for i, r in enumerate(reqs):
        key = (r.metric, r.comparison[0])
        if key in seen:
            raise NetError(f"'{r.text}' repeats the bound of '{reqs[seen[key]].text}'",
                           Span(f"--req[{i + 1}]", 1, 1, 1, len(r.text) + 1))
        seen[key] = i
    return reqs


@dataclass(frozen=True)
class Verdict:
    """Which requirements a network meets: the texts it misses, the summed relative violation, and the texts it
    could not be judged on because their metric was not measured (a network generated without training)."""

    meets: bool  # no measured requirement is missed
    missed: tuple[str, ...] = ()
    violation: float = 0.0
    unmeasured: tuple[str, ...] = ()

    @property
    def known(self) -> bool | None:
        """True when every requirement was measured and holds, False when one is missed, None when it is open."""
        return False if self.missed else None if self.unmeasured else True


def judge(requirements: list[Requirement], value: Callable[[str], float | None]) -> Verdict:
    """Check each requirement against value(metric); a metric not measured (None) is listed as unmeasured."""
    missed, unmeasured, violation = [], [], 0.0
    for r in requirements:
        measured = value(r.metric)
        if measured is None:
            unmeasured.append(r.text)
        elif not r.holds(measured):
            missed.append(r.text)
            violation += r.violation(measured)
    return Verdict(not missed, tuple(missed), violation, tuple(unmeasured))
