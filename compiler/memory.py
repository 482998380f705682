"""How much memory this machine can still give, and the one check that refuses an allocation that cannot fit
before it is made (data readers, lowering, export and training all ask here)."""

from __future__ import annotations

import os

from compiler.diagnostics import NetError, Span, size_bytes


def available_memory() -> int | None:
    """Bytes this machine can still give a process (MemAvailable), or None where that is unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(nbytes: int, what: str, available: int | None = None, where: str = "memory",
                     span: Span | None = None, notes: list[str] | None = None) -> None:
    """Raise a NetError when `nbytes` exceed `available` bytes (default: this machine's available memory)."""
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise NetError(f"{what} needs at least {size_bytes(nbytes)}, more than the {size_bytes(available)} of "
                       f"{where} available", span, notes)
