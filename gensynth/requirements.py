"""Synthesis requirements (`--req "macs<=2M"`): parsing with located errors, and checking a record."""

from __future__ import annotations

import difflib
import operator
from dataclasses import dataclass
from functools import cache
from importlib import resources

from lark import Lark, Token
from lark.exceptions import UnexpectedInput

from compiler.diagnostics import NetError, Span, register_source

# metric -> (what it is, unit family, when it is known)
#   structural: from the IR alone, before any training; measured: needs the built network;
#   trained: needs a trained network and validation data.
METRICS: dict[str, tuple[str, str, str]] = {
    "macs": ("multiply-accumulates per image", "count", "structural"),
    "params": ("parameters", "count", "structural"),
    "memory": ("peak activation memory", "bytes", "structural"),
    "latency": ("median batch-1 latency on this machine's device", "time", "measured"),
    "acc": ("validation accuracy", "fraction", "trained"),
    "netscore": ("NetScore", "score", "trained"),
    "miou": ("validation mean IoU", "fraction", "trained"),
    "pixel_acc": ("validation pixel accuracy", "fraction", "trained"),
    "map50": ("validation mAP at IoU 0.5", "fraction", "trained"),
    "map": ("validation mAP at IoU 0.5:0.95", "fraction", "trained"),
}
UNITS: dict[str, dict[str, float]] = {
    "count": {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "k": 1e3},
    "bytes": {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "K": 1024, "M": 1024**2, "G": 1024**3},
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6},
    "fraction": {"": 1, "%": 0.01},
    "score": {"": 1},
}
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
        return METRICS[self.metric][2]

    def holds(self, measured: float) -> bool:
        return COMPARE[self.comparison](measured, self.value)

    def violation(self, measured: float) -> float:
        """How far `measured` is from meeting this, relative to the bound (0 when it holds)."""
        if self.holds(measured):
            return 0.0
        return abs(measured - self.value) / max(abs(self.value), 1e-12)


@cache
def _parser() -> Lark:
    text = resources.files("grammars").joinpath("requirements.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr")


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
        raise NetError("a requirement is METRIC OP NUMBER[UNIT], e.g. macs<=2M, acc>=0.9, latency<=1.5ms",
                       span(col), [f"known metrics: {', '.join(METRICS)}"]) from None
    metric, comparison, number, unit = tree.children
    name = str(metric)
    if name not in METRICS:
        close = difflib.get_close_matches(name, list(METRICS), n=2, cutoff=0.5)
        notes = [f"known metrics: {', '.join(METRICS)}"] + ([f"did you mean {close[0]!r}?"] if close else [])
        raise NetError(f"unknown metric '{name}'", span(metric.column, len(name)), notes)
    family = METRICS[name][1]
    unit_text = str(unit) if isinstance(unit, Token) else ""
    if unit_text not in UNITS[family]:
        units = ", ".join(u or "(none)" for u in UNITS[family])
        where = span(unit.column, len(unit_text)) if isinstance(unit, Token) else span(len(text) + 1)
        raise NetError(f"'{unit_text or 'no unit'}' is not a unit for {name} ({METRICS[name][0]}); use one of: {units}",
                       where)
    value = float(number) * UNITS[family][unit_text]
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
