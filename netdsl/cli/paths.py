"""Output paths the commands write, checked before any work (a long job must not fail at its last step on a
path that could never be written), and their write errors turned into located messages."""

from __future__ import annotations

import os
from pathlib import Path

from compiler.diagnostics import NetError, printable


def output_file(path: str | Path, what: str = "output file") -> Path:
    """`path` when a file can be written there: not a directory, in an existing, writable directory."""
    path = Path(path)
    shown = printable(str(path), 200)
    if path.is_dir():
        raise NetError(f"{what} {shown} is a directory; give a file name", notes=[f"e.g. {shown}/NAME"])
    parent = path.parent
    if not parent.is_dir():
        raise NetError(f"cannot write {what} {shown}: the directory {printable(str(parent), 200)} does not exist")
    if path.exists() and not os.access(path, os.W_OK) or not path.exists() and not os.access(parent, os.W_OK):
        raise NetError(f"cannot write {what} {shown}: permission denied")
    return path


def write_text(path: str | Path, text: str, what: str = "output file") -> None:
    """Write a text file (checked with output_file first); an OS error is a NetError naming the file."""
    path = output_file(path, what)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise NetError(f"cannot write {what} {printable(str(path), 200)}: {err.strerror or err}") from None
