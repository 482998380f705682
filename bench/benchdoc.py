"""docs/benchmarks.md: each benchmark owns one section between its own markers and replaces only that."""

from __future__ import annotations

import statistics
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def markers(name: str) -> tuple[str, str]:
    """The start and end comments of a benchmark's section."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def mean_sd(values: list[float]) -> str:
    """A table cell: the mean, and ± the sample standard deviation when there is more than one value."""
    sd = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.2f}{sd}"


def write_section(block: str, path: Path = DOC) -> None:
    """Replace the section delimited by the block's first and last lines (its markers); append it if new."""
    lines = block.strip("\n").split("\n")
    start, end = lines[0], lines[-1]
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + "\n".join(lines) + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
