"""How every command prints: rich consoles that never turn user text into emoji or hard-wrap a line in a log,
and the width the output is laid out for."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

__all__ = ["console", "escape"]


def console(stderr: bool = False) -> Console:
    """A rich console: markup only in our own format strings (escape user text), no emoji codes (":100:" stays
    text), no highlighting, and no hard wrapping of long lines in a pipe or a log (our tables and item lists are
    laid out for `console.width` already: the terminal's, or $COLUMNS, or 80)."""
    return Console(stderr=stderr, highlight=False, emoji=False, soft_wrap=True)
