"""How every command prints: rich consoles that never turn user text into emoji or hard-wrap a line in a log,
the width the output is laid out for, and the one way an error reaches stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from compiler.diagnostics import NetError

__all__ = ["console", "escape", "print_error"]


def console(stderr: bool = False) -> Console:
    """A rich console: markup only in our own format strings (escape user text), no emoji codes (":100:" stays
    text), no highlighting, and no hard wrapping of long lines in a pipe or a log (our tables and item lists are
    laid out for `console.width` already: the terminal's, or $COLUMNS, or 80)."""
    return Console(stderr=stderr, highlight=False, emoji=False, soft_wrap=True)


def print_error(err: NetError) -> None:
    """The rendered diagnostic on stderr, as plain text: no markup, no wrapping."""
    text = err.render() + "\n"
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except UnicodeEncodeError:  # a terminal that cannot show the quoted source
        sys.stderr.write(text.encode("ascii", "backslashreplace").decode("ascii"))
