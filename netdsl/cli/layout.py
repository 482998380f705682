"""Text that fits the width it is read at (80 columns or 200, a terminal or a log file): tables whose names and
figures are never cut or split from their units, and lines that break only between items.

A table is laid out here, not by rich: the columns a command marks as wrappable (a layer's call, a list of inputs)
give up width first, breaking after a comma or an opening bracket; a column marked `stack` then moves onto its own
indented line under each row; columns marked droppable disappear last, least useful first. Names, shapes and
figures are never wrapped or cut (but a cell past MAX_CELL characters, which no real name reaches, is clipped
with "...": a 50,000-character layer name would otherwise make a 50,000-character line). The result is one rich
Text (styles show in a terminal and vanish in a log), printed without rich's own wrapping, so what fits is what
is read. Laying out 400 rows takes milliseconds (rich's
Table took most of `netdsl cost`'s time).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from compiler.diagnostics import count, size_bytes

GAP = 2  # spaces between columns
STACK_INDENT = 4  # a stacked column's line under its row
MAX_CELL = 120  # characters of a cell that is never wrapped; a wrapped one (a call) keeps MAX_WRAPPED
MAX_WRAPPED = 1000

Cell = str | tuple[str, str]  # text, or (text, rich style)


@dataclass(frozen=True)
class Column:
    """A column: its header; right-aligned (figures); wrappable (breaks after commas and opening brackets, down
    to min_width); stackable (moves under its row when the table is still too wide); droppable (removed when
    nothing else makes the table fit: the lowest `drop` goes first)."""

    header: str
    right: bool = False
    wrap: bool = False
    min_width: int = 12
    stack: bool = False
    drop: int | None = None
    style: str = ""


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def _style(cell: Cell, column: Column) -> str:
    return column.style if isinstance(cell, str) else cell[1]


def _clip(cell: Cell, limit: int) -> Cell:
    text = _text(cell)
    if len(text) <= limit:
        return cell
    text = text[:limit - 3] + "..."
    return text if isinstance(cell, str) else (text, cell[1])


def wrap_call(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters, broken after ", " or "(" (a call's arguments, a list of names); a
    piece longer than the width is split where it must be."""
    pieces = [p for p in re.split(r"(?<=\()|(?<=,) ", text) if p]
    lines: list[str] = []
    line = ""
    for piece in pieces:
        joined = line + (" " if line.endswith(",") else "") + piece if line else piece
        if len(joined) <= width or not line:
            line = joined
        else:
            lines.append(line)
            line = piece
        while len(line) > width:
            lines.append(line[:width])
            line = line[width:]
    return [*lines, line] if line or not lines else lines


@dataclass
class Fit:
    """How a table fits a width: the columns kept beside each other, their widths, the stacked ones."""

    kept: list[int]
    widths: list[int]
    stacked: list[int]


def fit(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> Fit:
    """Decide the layout: natural widths; else wrap, then stack, then drop columns until the table fits (if it can)."""
    natural = [max([len(c.header)] + [len(_text(r[i])) for r in rows]) for i, c in enumerate(columns)]
    layout = Fit(list(range(len(columns))), list(natural), [])

    def total() -> int:
        return sum(layout.widths[i] for i in layout.kept) + GAP * (len(layout.kept) - 1)

    def shrink() -> None:
        layout.widths = list(natural)
        over = total() - width
        for i in layout.kept:
            c = columns[i]
            if over > 0 and c.wrap and layout.widths[i] > c.min_width:
                cut = min(over, layout.widths[i] - max(c.min_width, len(c.header)))
                layout.widths[i] -= cut
                over -= cut

    shrink()
    for i, c in enumerate(columns):
        if total() > width and c.stack:
            layout.kept.remove(i)
            layout.stacked.append(i)
            shrink()
    for _, i in sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None):
        if total() > width and i in layout.kept:
            layout.kept.remove(i)
            shrink()
    return layout


def table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int, title: Cell | None = None,
          footer: Sequence[Cell] | None = None) -> Text:
    """The rows as aligned text no wider than `width` where that is possible (see the module's docstring): a title
    line, the header, a rule, the rows, and a rule and footer row if given."""
    limits = [MAX_WRAPPED if c.wrap or c.stack else MAX_CELL for c in columns]
    rows = [[_clip(cell, limit) for cell, limit in zip(row, limits)] for row in rows]
    layout = fit(columns, list(rows) + ([footer] if footer else []), width)
    kept, widths = layout.kept, layout.widths
    out = Text(no_wrap=True, overflow="ignore")
    if title is not None:
        out.append(_text(title), "bold" if isinstance(title, str) else title[1])
        out.append("\n")
    rule = (" " * GAP).join("─" * widths[i] for i in kept)
    header = [(c.header, "bold") for c in columns]
    for n, row in enumerate([header, None, *rows, *([None, footer] if footer else [])]):
        if row is None:
            out.append(rule, "dim")
            out.append("\n")
            continue
        cells = []
        for i in kept:
            text = _text(row[i])
            cells.append(wrap_call(text, widths[i]) if columns[i].wrap and len(text) > widths[i] else [text])
        for k in range(max(len(lines) for lines in cells)):
            pieces: list[tuple[str, str]] = []
            for j, i in enumerate(kept):
                part = cells[j][k] if k < len(cells[j]) else ""
                pad = " " * max(0, widths[i] - len(part))
                if j:
                    pieces.append((" " * GAP, ""))
                style = _style(row[i], columns[i])
                pieces += [(pad, ""), (part, style)] if columns[i].right else [(part, style), (pad, "")]
            _append_line(out, pieces)
        if n:  # a data row: its stacked columns on their own lines underneath
            for i in layout.stacked:
                text = _text(row[i])
                for part in (wrap_call(text, max(8, width - STACK_INDENT)) if text else []):
                    _append_line(out, [(" " * STACK_INDENT, ""), (part, _style(row[i], columns[i]))])
    out.rstrip()
    return out


def _append_line(out: Text, pieces: list[tuple[str, str]]) -> None:
    """One line of styled pieces, without trailing spaces."""
    while pieces and not pieces[-1][0].strip():
        pieces.pop()
    if pieces:
        text, style = pieces[-1]
        pieces[-1] = (text.rstrip(), style)
    for text, style in pieces:
        if text:
            out.append(text, style or None)
    out.append("\n")


def figure(n: int | float, unit: str = "") -> str:
    """3 significant digits with k/M/G/T: (1814073344, "MACs") -> '1.81 G MACs'; past T, scientific notation."""
    if isinstance(n, int) and abs(n) >= 10**15:  # past what a float holds for a large enough batch
        return f"{count(n)} {unit}".strip()
    text = str(n)
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            text = f"{n / scale:.3g} {prefix}"
            break
    return f"{text} {unit}".strip()


def size(n: int) -> str:
    """Bytes in decimal units: 1 MB = 10**6 bytes (any size of int)."""
    return size_bytes(n)


def wrap_items(items: Sequence[str], width: int, sep: str = ", ", indent: int = 2) -> str:
    """Items joined by `sep`, broken into lines only between items (a figure stays with its unit)."""
    lines, line = [], ""
    for n, item in enumerate(items):
        tail = "" if n == len(items) - 1 else sep.rstrip()  # a line that breaks after this item ends with it
        if line and len(line) + len(sep) + len(item) + len(tail) > width:
            lines.append(line + sep.rstrip())
            line = " " * indent + item
        else:
            line = line + sep + item if line else item
    if line:
        lines.append(line)
    return "\n".join(lines)


STYLED_LINES = 5000  # past this many lines a table prints as plain text even in a terminal


def emit(console: Console, text: Text | str) -> None:
    """Print laid-out text as it is: no wrapping or cropping by rich (it already fits), styles only in a terminal.
    Text for a pipe or a log, or a huge table, is written as plain text: rich renders a Text line by line, which
    took half of `show`'s time for a network of 100,000 layers."""
    plain = text if isinstance(text, str) else text.plain
    if not console.is_terminal or plain.count("\n") > STYLED_LINES:
        console.file.write(plain + "\n")
        return
    console.print(text, soft_wrap=True, crop=False, overflow="ignore", no_wrap=True)
