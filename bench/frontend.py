"""Front-end speed: parse + build + shape inference of resnet50.net (warm), and `netdsl show` and `netdsl cost` as
cold processes, for ResNet-50 and a 400-layer network (DenseNet-121, written as in
tests/netdsl/test_published_architectures.py).

    python bench/frontend.py [--reps 50] [--cold 7]

Targets (issue: the language, the IR and netdsl show; issue 23): warm parse+build+shapes median under 50 ms; the
whole `netdsl show` and `netdsl cost` process of a 400-layer network under 1 s with numba's cache warm. Wall time
on a shared machine is inflated by other work; the CPU time of the process (user + system) is reported beside
it. Prints a table and writes docs/benchmarks.md between the bench:frontend markers.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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
        times, cpu = [], []
        for _ in range(args.reps):
            t, c = time.perf_counter(), time.process_time()
            g = load_network(path)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        rows.append((example, g.number_of_nodes(), statistics.median(times), min(times), statistics.median(cpu)))
    netdsl = str(Path(sys.executable).parent / "netdsl")
    from tests.netdsl.test_published_architectures import DENSENET121

    densenet = Path(tempfile.mkdtemp()) / "densenet121.net"
    densenet.write_text(DENSENET121)
    processes = []
    for label, path in (("resnet50 (176 nodes)", ROOT / "examples" / "resnet50.net"),
                        ("densenet121 (431 nodes)", densenet)):
        for command in ("show", "cost"):
            subprocess.run([netdsl, command, str(path)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)  # warm
            walls, cpus = [], []
            for _ in range(args.cold):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                subprocess.run([netdsl, command, str(path)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                               env={**os.environ, "COLUMNS": "80"})
                walls.append(time.perf_counter() - t)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            processes.append((command, label, statistics.median(walls), min(walls), statistics.median(cpus)))
    load = os.getloadavg()[0]
    lines = [
        "## Front end (issue: language, IR and netdsl show)",
        "",
        f"Command: `python bench/frontend.py --reps {args.reps} --cold {args.cold}`. Machine: {os.cpu_count()} CPU "
        "cores. Parse + build (blocks, repetition) + shape inference + validation, warm (grammar already built).",
        "",
        "| network | nodes | median | best | CPU median | target |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {n} | {med * 1e3:.1f} ms | {best * 1e3:.1f} ms | {cpu * 1e3:.1f} ms | "
          f"{'< 50 ms' if name == 'resnet50' else ''} |" for name, n, med, best, cpu in rows),
        "",
        f"Whole processes, numba's cache warm, output to a pipe at 80 columns (median of {args.cold}; load average "
        f"{load:.1f} on {os.cpu_count()} cores while measuring: wall time includes waiting for the CPU, CPU time "
        "does not). Target: under 1 s for a 400-layer network. Neither command imports torch; costing one network "
        "runs the cost kernel as Python (numba is loaded only for batches).",
        "",
        "| command | network | wall median | wall best | CPU median |",
        "|---|---|---|---|---|",
        *(f"| `netdsl {c}` | {label} | {med:.2f} s | {best:.2f} s | {cpu:.2f} s |"
          for c, label, med, best, cpu in processes),
    ]
    text = "\n".join(lines)
    print(text)
    write_section(f"{START}\n{text}\n{END}")


if __name__ == "__main__":
    main()
