"""Located errors: every problem a user can cause is a NetError with a source span."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import NamedTuple


class Span(NamedTuple):
    """Where a piece of IR came from: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int


# Source texts by file name, so an error can show the offending line long after parsing.
_SOURCES: dict[str, str] = {}


def register_source(name: str, text: str) -> None:
    """Remember a source text so errors located in it can quote it."""
    _SOURCES[name] = text


def source_line(span: Span) -> str | None:
    """The text of the span's first line, if the source is known."""
    text = _SOURCES.get(span.file)
    if text is None:
        return None
    lines = text.splitlines()
    if 1 <= span.line <= len(lines):
        return lines[span.line - 1]
    return None


def did_you_mean(name: str, candidates: Iterable[str]) -> list[str]:
    """A 'did you mean' note for a misspelt name (the closest known names), or none."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return [f"did you mean {' or '.join(repr(c) for c in close)}?"] if close else []


class NetError(Exception):
    """A user-facing error: message, optional span and notes; the CLI prints it and exits 2."""

    def __init__(self, message: str, span: Span | None = None, notes: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes = list(notes or [])

    def render(self) -> str:
        """file:line:col: error: message, then the source line with a caret under the span."""
        out = []
        if self.span is not None:
            out.append(f"{self.span.file}:{self.span.line}:{self.span.column}: error: {self.message}")
            text = source_line(self.span)
            if text is not None:
                width = 1
                if self.span.end_line == self.span.line:
                    width = max(1, self.span.end_column - self.span.column)
                width = min(width, max(1, len(text) - self.span.column + 1))
                out.append(f"  {text}")
                out.append("  " + " " * (self.span.column - 1) + "^" * width)
        else:
            out.append(f"error: {self.message}")
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class NetWarning(UserWarning):
    """Something the user should know that does not stop the command (old weights without metadata, ...);
    the CLI prints it as `warning: ...` on stderr."""
