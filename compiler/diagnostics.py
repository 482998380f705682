"""Located errors: every problem a user can cause is a NetError with a source span, rendered as plain text.

Rendering is the one path for every diagnostic: `file:line:col: error: message`, the source line and a caret.
It quotes user text safely (control characters shown as U+FFFD, tabs as spaces), clips a long line to a
window around the column and long messages to a screen line, and never wraps: the caret stays under the text
in a terminal, a pipe or a log file.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

QUOTE_WIDTH = 76  # display cells of source quoted under the message: with the indent it fits 80 columns
MESSAGE_CHARS = 1000  # a message or note longer than this is clipped (a screen has about 2,000 characters)
MAX_NOTES = 8
ELLIPSIS = "..."


class Span(NamedTuple):
    """Where a piece of IR came from: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int


# Source texts by file name, so an error can show the offending line long after parsing; the most recent
# MAX_SOURCES only, so a process that parses thousands of files (synthesis, a fuzzer) does not keep them all.
_SOURCES: dict[str, str] = {}
MAX_SOURCES = 256


def register_source(name: str, text: str) -> None:
    """Remember a source text so errors located in it can quote it."""
    _SOURCES.pop(name, None)
    _SOURCES[name] = text
    while len(_SOURCES) > MAX_SOURCES:
        del _SOURCES[next(iter(_SOURCES))]


def source_line(span: Span) -> str | None:
    """The text of the span's first line, if the source is known.

    Lines end at "\\n" only (and a "\\r" before it is dropped), as the parser counts them: a form feed,
    vertical tab or U+2028 inside a line does not start a new one."""
    text = _SOURCES.get(span.file)
    if text is None or span.line < 1:
        return None
    start = 0
    for _ in range(span.line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return None
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    return line[:-1] if line.endswith("\r") else line


def source_text(span: Span, limit: int = 40) -> str:
    """The source a span covers (its first line), clipped to `limit` characters."""
    line = source_line(span) or ""
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    text = line[span.column - 1:end].strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."



def count(n: int) -> str:
    """A count for a message: 1,234,567 exactly, or 8.0e+20 when it is too long to read (any size of int)."""
    if abs(n) < 10**15:
        return f"{n:,}"
    if n.bit_length() >= 4000:  # str() of such an int is refused (and slow)
        return f"{'-' if n < 0 else ''}about 2**{n.bit_length() - 1}"
    digits = str(abs(n))
    return f"{'-' if n < 0 else ''}{digits[0]}.{digits[1]}e+{len(digits) - 1}"


def size_bytes(n: int) -> str:
    """Decimal units: 1 MB = 10**6 bytes."""
    for scale, prefix in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}" if n < 10**300 else f"{count(n)} B"
    return f"{n} B"


def _cell(ch: str) -> str:
    """A character as it is shown: control and format characters as U+FFFD, a tab as a space."""
    if ch == "\t":
        return " "
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return "\ufffd"
    return ch


def _width(ch: str) -> int:
    """Terminal cells a shown character takes (wide East Asian characters two, combining marks none)."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def printable(text: str, limit: int = MESSAGE_CHARS) -> str:
    """User text made safe for one line of a terminal or log: controls shown as U+FFFD, clipped to `limit`."""
    shown = "".join(_cell(c) for c in text[:limit + 1])
    return shown if len(shown) <= limit else shown[:limit - len(ELLIPSIS)] + ELLIPSIS


def quote(line: str, column: int, length: int, width: int = QUOTE_WIDTH) -> tuple[str, str]:
    """The source line (clipped to `width` cells around the column) and a caret line under `length` characters."""
    shown = [_cell(c) for c in line]
    column = max(1, min(column, len(shown) + 1))
    length = max(1, min(length, len(shown) - column + 1))
    cells = [_width(c) for c in shown]
    first, last = column - 1, column - 1 + length  # the spanned characters, end exclusive
    start, end = 0, len(shown)
    if sum(cells) > width:
        # a window around the column: a quarter of it before the error, the rest after
        start, used = first, 0
        while start > 0 and used + cells[start - 1] <= width // 4:
            start -= 1
            used += cells[start]
        end, used = start, 0
        while end < len(shown) and used + cells[end] <= width - 2 * len(ELLIPSIS):
            used += cells[end]
            end += 1
        while end == len(shown) and start > 0 and used + cells[start - 1] <= width - len(ELLIPSIS):
            start -= 1  # the line ends in the window: show more of what comes before
            used += cells[start]
        last = min(last, max(end, first + 1))
    head = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < len(shown) else ""
    text = head + "".join(shown[start:end]) + tail
    pad = len(head) + sum(cells[start:first])
    caret = max(1, sum(cells[first:last]))
    return text, " " * pad + "^" * caret


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
        """file:line:col: error: message, then the source line with a caret under the span; then the notes."""
        out = []
        message = printable(self.message)
        if self.span is not None:
            out.append(f"{printable(self.span.file, 200)}:{self.span.line}:{self.span.column}: error: {message}")
            text = source_line(self.span)
            if text is not None:
                length = self.span.end_column - self.span.column if self.span.end_line == self.span.line else 1
                line, caret = quote(text, self.span.column, length)
                out.append(f"  {line}")
                out.append(f"  {caret}")
        else:
            out.append(f"error: {message}")
        notes = self.notes if len(self.notes) <= MAX_NOTES else [
            *self.notes[:MAX_NOTES - 1], f"... and {len(self.notes) - MAX_NOTES + 1} more"]
        out.extend(f"  note: {printable(n)}" for n in notes)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class NetWarning(UserWarning):
    """Something the user should know that does not stop the command (old weights without metadata, ...);
    the CLI prints it as `warning: ...` on stderr."""
