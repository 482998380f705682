"""Fuzz campaign: mutated examples and standard library, as bytes, through `netdsl check` (and the accepted ones
through `show` and `cost`); then the issue's named stress inputs, each in a fresh process.

    python bench/fuzz.py [--inputs 20000] [--seed 0] [--workers 2] [--timeout 10] [--no-docs]

Every input must end in exit 0, or exit 2 with a located message that fits a screen, within --timeout seconds of
CPU (tests/netdsl/cli/fuzz_inputs.py judges it). Prints a table and writes docs/benchmarks.md between the
bench:fuzz markers: inputs, outcomes per command, tracebacks, hangs, the slowest input and peak memory. Inputs
that fail are kept in bench/fuzz-failures/ (not tracked) to reproduce them.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import markers, write_section  # noqa: E402

START, END = markers("fuzz")
FAILURES = ROOT / "bench" / "fuzz-failures"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fuzz_chunk(job: tuple[int, int, int, int, float]) -> dict:
    """Run inputs [first, last) of the campaign with seed `seed` in this process; counts and the worst cases."""
    first, last, seed, worker, timeout = job
    from tests.netdsl.cli.fuzz_inputs import mutate, run_command, seeds

    sources = seeds()
    counts: collections.Counter = collections.Counter()
    failures, slowest = [], (0.0, "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.net"
        for i in range(first, last):
            rng = random.Random(seed * 1_000_003 + i)  # each input depends on (seed, i) only, not on the workers
            name, data = rng.choice(sources)
            data, names = mutate(data, rng)
            path.write_bytes(data)
            commands = ["check"]
            while commands:
                command = commands.pop(0)
                cpu = cpu_seconds()
                outcome = run_command(command, path, timeout)
                cpu = cpu_seconds() - cpu
                kind = outcome.verdict if outcome.verdict in ("ok", "located") else (
                    "hang" if outcome.verdict.startswith("timeout") else "traceback" if outcome.verdict.startswith(
                        "traceback") else "bad message")
                counts[(command, kind)] += 1
                if cpu > slowest[0]:
                    slowest = (cpu, f"input {i} ({name}: {', '.join(names)}), {command}")
                if kind not in ("ok", "located"):
                    FAILURES.mkdir(exist_ok=True)
                    (FAILURES / f"{seed}-{i}.net").write_bytes(data)
                    failures.append(f"input {i} ({name}: {', '.join(names)}), {command}: {outcome.verdict}")
                if command == "check" and outcome.verdict == "ok":
                    commands += ["show", "cost"]
    return {"counts": counts, "failures": failures, "slowest": slowest,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# The named inputs that took minutes or filled memory: (label, command, .net text or a path).
STRESS = [
    ("125,000-step chain (1 MB line)", "check",
     "network N {\n input x: [1, 4, 4]\n output y = x" + " -> relu" * 125_000 + "\n}\n"),
    ("100,000-node network", "check", "network N {\n input x: [1, 4, 4]\n output y = x -> repeat(99990) relu\n}\n"),
    ("100,000-node network", "show", "network N {\n input x: [1, 4, 4]\n output y = x -> repeat(99990) relu\n}\n"),
    ("100,000-node network", "cost", "network N {\n input x: [1, 4, 4]\n output y = x -> repeat(99990) relu\n}\n"),
    ("adaptive_avgpool(1000000000)", "show",
     "network N {\n input x: [8, 64, 64]\n output y = x -> adaptive_avgpool(1000000000)\n}\n"),
    ("adaptive_avgpool(4000000)", "show",
     "network N {\n input x: [8, 64, 64]\n output y = x -> adaptive_avgpool(4000000) -> gap\n}\n"),
    ("upsample(scale=100000000)", "show",
     "network N {\n input x: [8, 64, 64]\n output y = x -> upsample(scale=100000000)\n}\n"),
    ("a 1 MB line", "check", "network N {\n input x: [1, 4, 4]\n output y = x -> relu" + " " * 1_000_000 + "$\n}\n"),
    ("/dev/zero", "check", Path("/dev/zero")),
    ("input [3, 100000, 100000]", "export",
     "network N {\n input x: [3, 100000, 100000]\n output y = x -> conv(8, k=3) -> gap -> linear(10)\n}\n"),
    ("conv(1000000000)", "export", "network N {\n input x: [3, 32, 32]\n output y = x -> conv(1000000000, k=1) -> gap\n}\n"),
]

RUNNER = """
import json, resource, sys, time
from netdsl.cli.main import main
t = time.perf_counter()
code = main(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_SELF)
json.dump({"code": code, "wall": time.perf_counter() - t, "cpu": r.ru_utime + r.ru_stime,
           "peak_mb": r.ru_maxrss / 1024}, open(sys.argv[1], "w"))
"""


def stress(timeout: float) -> list[dict]:
    """Each stress input in a fresh process: exit code, CPU and wall seconds, peak memory, stderr size."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, command, text in STRESS:
            path = text if isinstance(text, Path) else Path(tmp) / "stress.net"
            if not isinstance(text, Path):
                path.write_text(text)
            argv = [command, str(path)] + (["--to", "onnx", "-o", f"{tmp}/x.onnx", "--random-weights"]
                                         if command == "export" else [])
            result = Path(tmp) / "result.json"
            try:
                done = subprocess.run([sys.executable, "-c", RUNNER, str(result), *argv], cwd=ROOT, capture_output=True,
                                      text=True, timeout=timeout * 6)
                row = json.loads(result.read_text()) if result.exists() else {"code": done.returncode}
                row["stderr"] = done.stderr
            except subprocess.TimeoutExpired:
                row = {"code": "killed", "stderr": ""}
            result.unlink(missing_ok=True)
            row.update(label=label, command=command)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds of CPU an input may take (default 10)")
    ap.add_argument("--no-docs", action="store_true", help="print the table only")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    step = -(-args.inputs // (args.workers * 8))
    jobs = [(a, min(a + step, args.inputs), args.seed, k, args.timeout)
            for k, a in enumerate(range(0, args.inputs, step))]
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        results = pool.map(fuzz_chunk, jobs, chunksize=1)
    wall = time.perf_counter() - started
    counts: collections.Counter = sum((r["counts"] for r in results), collections.Counter())
    failures = [f for r in results for f in r["failures"]]
    slowest = max(r["slowest"] for r in results)
    peak = max(r["peak_mb"] for r in results)
    rows = stress(args.timeout)

    kinds = ("ok", "located", "bad message", "traceback", "hang")
    lines = [
        "## Fuzzing: no input crashes netdsl (issue 17)",
        "",
        f"Command: `python bench/fuzz.py --inputs {args.inputs} --seed {args.seed} --workers {args.workers} "
        f"--timeout {args.timeout:g}`; {wall / 60:.0f} min on {os.cpu_count()} shared CPU cores. Inputs are the "
        "examples and the standard library (with a network that calls every block) as bytes, after 1-4 "
        "mutations each (bytes that are not UTF-8, byte-order marks, control characters and line separators, "
        "huge and tiny numbers, deep nesting, long lines, duplicated lines, huge shapes and sizes; "
        "`tests/netdsl/cli/fuzz_inputs.py`). Every input goes through `netdsl check`, the accepted ones through "
        "`show` and `cost`, in-process. *located*: exit 2 with `file:line:col: error:`, the source line and a "
        "caret, at most 24 lines; *bad message*: exit 2 without that; *hang*: more than "
        f"{args.timeout:g} s of CPU.",
        "",
        "| command | runs | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for command in ("check", "show", "cost"):
        total = sum(counts[(command, k)] for k in kinds)
        lines.append(f"| {command} | {total:,} | " + " | ".join(f"{counts[(command, k)]:,}" for k in kinds) + " |")
    lines += [
        "",
        f"Inputs: {args.inputs:,}; tracebacks: {sum(counts[(c, 'traceback')] for c in ('check', 'show', 'cost'))}; "
        f"hangs over {args.timeout:g} s: {sum(counts[(c, 'hang')] for c in ('check', 'show', 'cost'))}; slowest run: "
        f"{slowest[0]:.1f} s of CPU ({slowest[1]}); peak memory of a fuzzing process: {peak:,.0f} MB.",
    ]
    if failures:
        lines += ["", "Failures (inputs kept in bench/fuzz-failures/):", *(f"- {f}" for f in failures[:20])]
    lines += [
        "",
        "The issue's named inputs, each in a fresh process (`netdsl COMMAND FILE`; export: `--to onnx`):",
        "",
        "| input | command | exit | CPU s | wall s | peak memory | first line of the message |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = (r.get("stderr") or "").splitlines()[:1]
        message = first[0].split(": error: ", 1)[-1][:90].replace("|", "\\|") if first else ""
        cpu, wall_s, peak_mb = (f"{r[k]:.1f}" if k in r else "-" for k in ("cpu", "wall", "peak_mb"))
        lines.append(f"| {r['label']} | {r['command']} | {r['code']} | {cpu} | {wall_s} | {peak_mb} MB | {message} |")
    print("\n".join(lines))
    if args.no_docs:
        return
    write_section("\n".join([START, *lines, END]))


if __name__ == "__main__":
    main()
