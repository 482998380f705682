"""Front-end speed: parse + build + shape inference of resnet50.net (warm), and `netdsl show` as a cold process.

    python bench/frontend.py [--reps 50] [--cold 7]

Targets (issue: the language, the IR and netdsl show): warm parse+build+shapes median under 50 ms; the whole
`netdsl show examples/resnet50.net` process under 1 s. Prints a table and writes docs/benchmarks.md between
the bench:frontend markers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdoc import markers, write_section  # noqa: E402

START, END = markers("frontend")



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--cold", type=int, default=7, help="cold process runs of netdsl show")
    args = ap.parse_args()
    from netdsl.loader import load_network

    rows = []
    for example in ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0"):
        path = str(ROOT / "examples" / f"{example}.net")
        load_network(path)  # warm: grammar built, modules imported
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            g = load_network(path)
            times.append(time.perf_counter() - t)
        rows.append((example, g.number_of_nodes(), statistics.median(times), min(times)))
    netdsl = str(Path(sys.executable).parent / "netdsl")
    cold = []
    for _ in range(args.cold):
        t = time.perf_counter()
        subprocess.run([netdsl, "show", "examples/resnet50.net"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        cold.append(time.perf_counter() - t)
    lines = [
        "## Front end (issue: language, IR and netdsl show)",
        "",
        f"Command: `python bench/frontend.py --reps {args.reps} --cold {args.cold}`. Machine: {os.cpu_count()} CPU "
        "cores. Parse + build (blocks, repetition) + shape inference + validation, warm (grammar already built).",
        "",
        "| network | nodes | median | best | target |",
        "|---|---|---|---|---|",
        *(f"| {name} | {n} | {med * 1e3:.1f} ms | {best * 1e3:.1f} ms | {'< 50 ms' if name == 'resnet50' else ''} |"
          for name, n, med, best in rows),
        "",
        f"`netdsl show examples/resnet50.net` as a whole cold process (median of {args.cold}): "
        f"{statistics.median(cold):.2f} s (best {min(cold):.2f} s; target < 1 s), with numba's cache warm (the "
        "MACs and params columns come from the cost model's kernels). It does not import torch.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(f"{START}\n{text}\n{END}")


if __name__ == "__main__":
    main()
