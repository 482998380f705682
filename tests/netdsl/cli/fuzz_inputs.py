"""Fuzz inputs for the commands that read .net files, and the verdict on what a command did with one.

Inputs are bytes, not text: mutations of the examples and the standard library that insert bytes that are not
UTF-8, byte-order marks, control characters and line separators, huge and tiny numbers, deep nesting, long
lines and huge shapes. `run_command` runs `netdsl check|show|cost FILE` in this process and says whether it
exited 0, exited 2 with a located message, or did anything else (a traceback, another exit code, a message
with no location, more than a screen, or more time than allowed). tests/netdsl/cli/test_fuzz_cli.py runs a
few of them on every test run; bench/fuzz.py runs tens of thousands and writes the counts to docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# A network that calls the standard library's blocks, appended to std.net (which defines blocks only).
STD_PROBE = """
network Probe(c=16) {
    input x: [16, 16, 16]
    x = x -> conv_bn_relu(c) -> basic(c) -> basic_down(32) -> dwsep(32) -> inverted(32, 64)
    x = x -> inverted_residual(32, 96) -> inverted_noexpand(32) -> se_block(32) -> bneck(32, 64)
    x = x -> bneck_res(32, 64) -> bneck_hs_se(32, 64) -> bneck_hs_se_res(32, 64) -> fire(8, 16, 16)
    x = x -> shuffle_unit(32) -> shuffle_down(64) -> bottleneck_down(16) -> bottleneck(16)
    output y = x -> gap -> linear(10)
}
"""


def seeds() -> list[tuple[str, bytes]]:
    """(name, bytes) of every example and of the standard library with a network that uses it."""
    out = [(p.name, p.read_bytes()) for p in sorted((ROOT / "examples").glob("*.net"))]
    out.append(("std.net", (ROOT / "netdsl" / "stdlib" / "std.net").read_bytes() + STD_PROBE.encode()))
    return out


ODD_BYTES = [b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00",
             b"\x0b", b"\x0c", b"\x1b[31m", b"\r", b"\r\n", b"\t", b"\x7f", "\u2028".encode(), "\u2029".encode(),
             "\u0085".encode(), "\u202e".encode(), "\u200b".encode(), b"\xef\xbb\xbf", b"\xff\xfe", "字".encode(),
             "\U0001f600".encode(), b":100:", b"[bold]", b"[/]", b"\\"]
NUMBERS = [b"0", b"-1", b"1e400", b"1e-400", b"1e308", b"9007199254740993", b"99999999999999999999",
           b"9" * 4301, b"0.0000001", b"1e15", b"2147483648", b"4294967296", b"1000000000", b"3.5", b"-0"]
PIECES = [b"adaptive_avgpool(1000000000)", b"upsample(scale=1000000)", b"upsample(size=1000000000)",
          b"conv(1000000000, k=1)", b"conv(8, k=999999999, padding=499999999)", b"linear(100000000000)",
          b"repeat(100000) relu", b"repeat(99999) identity", b"maxpool(1000000)", b"divisible(32, 0)",
          b"int(1e400)", b"1 / 0", b"split(1000000)", b"concat(in, in)", b"flatten -> linear(10)",
          b"[3, 100000, 100000]", b"[1, 1, 1, 1, 1, 1]", b"[0]", b"[]", b'"' + b"a" * 500 + b'"', b"@nope",
          b"choice(1, 2)", b"fixed", b"as x.0", b"-> ->", b"{", b"}", b"(", b")", b"network", b"block b() { relu }",
          b'import "x.net"', b"from std import nope", b"input q: [1, 2, 2]", b"output z = in", b"let a = a"]


def _random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))


def _at(data: bytes, rng: random.Random) -> int:
    return rng.randint(0, len(data))


def _replace_numbers(data: bytes, rng: random.Random) -> bytes:
    spots = [m.span() for m in re.finditer(rb"\d+(\.\d+)?([eE][+-]?\d+)?", data)]
    for _ in range(rng.randint(1, 3)):
        if spots:
            i, j = rng.choice(spots)
            data = data[:i] + rng.choice(NUMBERS) + data[j:]
            spots = [m.span() for m in re.finditer(rb"\d+(\.\d+)?([eE][+-]?\d+)?", data)]
    return data


# Sizes of the mutations that grow the input: the benchmark's full range, and a light one that keeps the test
# suite's share to seconds (a 50,000-step line or a 100,000-layer repeat takes seconds to check on its own).
SIZES = {
    "full": {"depth": [50, 150, 250, 1000, 10_000], "line": [100, 2000, 50_000], "copies": [2, 10, 300], "repeat": True},
    "light": {"depth": [50, 250, 1000], "line": [100, 2000], "copies": [2, 10], "repeat": False},
}


def _nest(data: bytes, rng: random.Random, sizes: dict) -> bytes:
    depth = rng.choice(sizes["depth"])
    open_, close = rng.choice([(b"(", b")"), (b"[", b"]"), (b"max(1, ", b")"), (b"-", b""), (b"(in -> ", b")")])
    i = _at(data, rng)
    return data[:i] + open_ * depth + b"1" + close * depth + data[i:]


def _long_line(data: bytes, rng: random.Random, sizes: dict) -> bytes:
    lines = data.split(b"\n")
    k = rng.randrange(len(lines))
    filler = rng.choice([b" -> relu", b" ", b"# comment ", b"x", b" + 1"]) * rng.choice(sizes["line"])
    lines[k] = lines[k] + filler
    return b"\n".join(lines)


def _duplicate_lines(data: bytes, rng: random.Random, sizes: dict) -> bytes:
    lines = data.split(b"\n")
    k = rng.randrange(len(lines))
    lines[k:k] = [lines[k]] * rng.choice(sizes["copies"])
    return b"\n".join(lines)


def _piece(data: bytes, rng: random.Random, sizes: dict) -> bytes:
    pieces = PIECES if sizes["repeat"] else [p for p in PIECES if not p.startswith(b"repeat")]
    i = _at(data, rng)
    return data[:i] + b" " + rng.choice(pieces) + b" " + data[i:]


def _insert(data: bytes, rng: random.Random, what: bytes) -> bytes:
    i = _at(data, rng)
    return data[:i] + what + data[i:]


def _flip(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(max(1, len(data)))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    i = _at(data, rng)
    return data[:i] + data[i + rng.randint(1, 40):]


def _bom(data: bytes, rng: random.Random) -> bytes:
    return b"\xef\xbb\xbf" + data if rng.random() < 0.7 else _insert(data, rng, b"\xef\xbb\xbf")


# name -> mutation(data, rng, sizes)
MUTATIONS = {
    "odd bytes": lambda d, r, s: _insert(d, r, r.choice(ODD_BYTES)),
    "random bytes": lambda d, r, s: _insert(d, r, _random_bytes(r)),
    "flip a byte": lambda d, r, s: _flip(d, r),
    "delete": lambda d, r, s: _delete(d, r),
    "truncate": lambda d, r, s: d[:_at(d, r)],
    "numbers": lambda d, r, s: _replace_numbers(d, r),
    "piece": _piece,
    "nesting": _nest,
    "long line": _long_line,
    "duplicate lines": _duplicate_lines,
    "bom": lambda d, r, s: _bom(d, r),
}


def mutate(data: bytes, rng: random.Random, count: int | None = None, sizes: str = "full") -> tuple[bytes, list[str]]:
    """`data` after 1-4 mutations (or `count`), and their names; sizes "light" keeps growth small."""
    names = [rng.choice(sorted(MUTATIONS)) for _ in range(count or rng.randint(1, 4))]
    for name in names:
        data = MUTATIONS[name](data, rng, SIZES[sizes])
    return data, names


@dataclass
class Outcome:
    """What one command did with one input."""

    command: str
    code: int | None  # None when it did not return (a traceback or a timeout)
    seconds: float  # wall-clock
    verdict: str  # "ok" (exit 0), "located" (exit 2, located, one screen) or what went wrong
    stderr: str


class _Timeout(Exception):  # noqa: N818 (a signal, not an error of ours)
    pass


def _alarm(signum, frame):
    raise _Timeout()


LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): error: ")
SCREEN_LINES = 24
SCREEN_CHARS = 24 * 80


def run_command(command: str, path: Path, timeout: float = 10.0) -> Outcome:
    """`netdsl COMMAND PATH` in this process, judged: exit 0, or exit 2 with a located message (file:line:col:, or
    the file named first for what concerns it as a whole, such as its size) that fits one screen (at most 24 lines and 24 x 80 characters besides the file name); anything else is named in the
    verdict. The time limit is CPU time (ITIMER_PROF), so a loaded machine does not turn slow into hung."""
    from netdsl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, timeout)
    start = time.perf_counter()
    code = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([command, str(path)])
        verdict = "ok" if code == 0 else _judge_error(code, err.getvalue(), path)
    except _Timeout:
        verdict = f"timeout (over {timeout:g} s of CPU)"
    except BaseException:  # noqa: BLE001 (anything escaping main is what the fuzzer is looking for)
        verdict = "traceback: " + traceback.format_exc().strip().splitlines()[-1][:200]
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
    return Outcome(command, code, time.perf_counter() - start, verdict, err.getvalue())


def _judge_error(code: int, stderr: str, path: Path) -> str:
    if code != 2:
        return f"exit {code}"
    lines = stderr.splitlines()
    match = LOCATED.match(lines[0]) if lines else None
    if match is None and lines and lines[0].startswith(f"error: {path} "):
        match = {"file": str(path)}  # about the file as a whole (too large to be .net text): the file is named
    if match is None:
        return "unlocated: " + (lines[0][:200] if lines else "(nothing on stderr)")
    if match["file"] != str(path) and not any(f"called at {path}:" in line for line in lines):
        return "located elsewhere, with no note of the call in the file: " + lines[0][:200]
    if len(lines) > SCREEN_LINES or len(stderr) > SCREEN_CHARS + len(str(path)):
        return f"more than a screen ({len(lines)} lines, {len(stderr)} characters)"
    return "located"
