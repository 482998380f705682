"""Files a run writes and reads back: atomic writes (a reader, or a run resumed after kill -9, sees the old file or
the new one, never half), and JSON read back with errors that name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from compiler.diagnostics import NetError


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write to a temporary sibling, then os.replace it over path (text as UTF-8)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: str | Path, what: str) -> object:
    """The JSON document in path; NetError naming the file and `what` it should be when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise NetError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, an integer of 5,000 digits, deep nesting
        raise NetError(f"{path} is not a {what} file (not JSON: {str(err)[:200]})") from None
