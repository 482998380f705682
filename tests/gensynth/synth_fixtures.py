"""Small prototype networks and a learnable npz dataset shared by the synthesis tests."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TINY_NET = """
network Tiny(classes=4) {
    input image: [1, 12, 12]
    x = image -> conv(12, k=3, padding=1, bias=false) -> bn -> relu
    x = relu(add(x, x -> conv(12, k=3, padding=1, bias=false) -> bn))
    maxpool(2) -> conv(24, k=3, padding=1, bias=false) -> bn -> relu
    output logits = gap -> linear(classes)
}
"""


def write_npz(path, n: int = 320, classes: int = 4, seed: int = 0) -> str:
    """Noisy stripes whose orientation is the class (horizontal, vertical, two diagonals): learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    i, j = np.mgrid[0:12, 0:12]
    patterns = [np.sin(i * 1.6), np.sin(j * 1.6), np.sin((i + j) * 1.2), np.sin((i - j) * 1.2)]
    x = rng.normal(0, 0.5, size=(n, 1, 12, 12)).astype(np.float32)
    for k, c in enumerate(y):
        x[k, 0] += 1.5 * patterns[int(c) % 4].astype(np.float32)
    np.savez(path, x=x, y=y, x_test=x[: n // 4].copy(), y_test=y[: n // 4])
    return f"npz:{path}"


def train_tiny(root: Path) -> tuple[str, str, str]:
    """(tiny.net, its data spec, trained weights) in `root`: TINY_NET on the 12x12 stripes, one epoch of `netdsl
    train`, so the weights carry their metadata."""
    from netdsl.cli.main import main

    net = root / "tiny.net"
    net.write_text(TINY_NET)
    spec = write_npz(root / "stripes.npz")
    assert main(["train", str(net), "--data", spec, "--epochs", "1", "--batch-size", "32", "--out",
                 str(root / "run"), "--json"]) == 0
    return str(net), spec, str(root / "run" / "weights.safetensors")


def kill_9_after(args: list[str], out: Path, candidates: int = 2, timeout: float = 120) -> list[tuple[str, str]]:
    """Run `netdsl synth ARGS --out OUT`, kill -9 it once `candidates` search candidates are journaled, and return
    the (key, record) rows it had journaled when it died."""
    proc = subprocess.Popen([sys.executable, "-m", "netdsl.cli.main", "synth", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CI": "1"})
    journal = out / "journal.sqlite"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(searched(journal)) >= candidates:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return searched(journal)  # what was journaled when it died: a candidate may have landed since the last look


def processes_naming(text: str) -> list[int]:
    """Ids of the live processes whose command line holds `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def searched(journal: Path) -> list[tuple[str, str]]:
    """The (key, record) rows of search candidates in a journal (none while it is missing or being created)."""
    if not journal.exists():
        return []
    try:
        db = sqlite3.connect(journal)
        try:
            return db.execute("SELECT key, record FROM candidates WHERE key LIKE '%:%' AND key NOT LIKE 'final%'"
                              ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []


def journaled(out: Path) -> dict[str, str]:
    """Every record of a run's journal, by key, as stored."""
    db = sqlite3.connect(out / "journal.sqlite")
    rows = dict(db.execute("SELECT key, record FROM candidates").fetchall())
    db.close()
    return rows
