"""Benchmark the cost model against peer counters (fvcore, thop, ptflops, torch FlopCounterMode).

    .venv/bin/python bench/cost_peers.py [--quick] [--no-write]

Prints rich tables and rewrites the section between `<!-- bench:cost:start -->` and `<!-- bench:cost:end -->` in
docs/benchmarks.md (the rest of the file is left alone). Peers need `pip install --no-deps fvcore thop ptflops`
plus fvcore's small pure-python dependencies (iopath, yacs, tabulate, termcolor, portalocker, tqdm).
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # the batched kernel is single-threaded; say so in the report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from benchdoc import DOC, write_section  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from compiler.backend.lower import lower_to_torch  # noqa: E402
from compiler.cost import batched_costs, compile_costs, cost_of  # noqa: E402
from netdsl.loader import load_network  # noqa: E402

NETWORKS = ["resnet18", "mobilenet_v2", "resnet50"]
START, END = "<!-- bench:cost:start -->", "<!-- bench:cost:end -->"


def timed(fn, repeats: int, min_seconds: float = 0.0) -> float:
    """Median seconds per call over `repeats` timed batches (a batch repeats fn until it lasts min_seconds)."""
    fn()  # warm-up (numba cache load, torch first-call overhead)
    inner = 1
    if min_seconds:
        while True:
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            if time.perf_counter() - t >= min_seconds:
                break
            inner *= 4
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t) / inner)
    return statistics.median(samples)


def quiet(fn):
    """Run fn with the peers' prints and warnings silenced."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn()


def peers(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """name -> (MACs, params, callable that recounts from the module, convention note)."""
    from fvcore.nn import FlopCountAnalysis, parameter_count
    from ptflops import get_model_complexity_info
    from thop import profile
    from torch.utils.flop_counter import FlopCounterMode

    def fvcore_count():
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total(), parameter_count(model)[""], analysis.by_operator()

    thop_model = copy.deepcopy(model)  # thop leaves counters on the module it profiles

    def thop_count():
        return profile(thop_model, inputs=(x,), verbose=False)

    def ptflops_count(backend: str):
        return get_model_complexity_info(model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False,
                                         backend=backend)

    def flop_counter():
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

    fv_total, fv_params, fv_ops = quiet(fvcore_count)
    th_macs, th_params = quiet(thop_count)
    pt_macs, pt_params = quiet(lambda: ptflops_count("pytorch"))
    pa_macs, pa_params = quiet(lambda: ptflops_count("aten"))
    flops = quiet(flop_counter)
    core = sum(v for k, v in fv_ops.items() if k in ("conv", "linear", "addmm", "matmul"))
    extra = ", ".join(f"{k} {v:,}" for k, v in fv_ops.items() if k not in ("conv", "linear", "addmm", "matmul"))
    return {
        "fvcore": (fv_total, fv_params, lambda: quiet(fvcore_count),
                   f"FlopCountAnalysis; conv+linear {core:,}" + (f"; also counts {extra}" if extra else "")),
        "thop": (int(th_macs), int(th_params), lambda: quiet(thop_count),
                 "profile (module hooks; counts batch norm and pooling modules too)"),
        "ptflops": (int(pt_macs), int(pt_params), lambda: quiet(lambda: ptflops_count("pytorch")),
                    "get_model_complexity_info, default pytorch backend (adds bias, bn, relu, pooling)"),
        "ptflops aten": (int(pa_macs), int(pa_params), lambda: quiet(lambda: ptflops_count("aten")),
                         "get_model_complexity_info(backend='aten'): aten convolution and mm only"),
        "FlopCounterMode": (flops // 2, None, lambda: quiet(flop_counter),
                            f"torch.utils.flop_counter: {flops:,} FLOPs = 2 x MACs (shown halved); no params"),
    }


def compare(console: Console, repeats: int) -> tuple[Table, list[list[str]], list[str]]:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    rows, summary = [], []
    table = Table(title="MACs, params and time per count (median); ratio = peer time / our time")
    for col in ("network", "counter", "MACs", "- ours", "params", "time", "x prebuilt", "x from IR"):
        table.add_column(col, justify="left" if col in ("network", "counter") else "right")
    for name in NETWORKS:
        g = load_network(str(ROOT / "examples" / f"{name}.net"))
        program = compile_costs(g)
        report = cost_of(program)
        ours = timed(lambda p=program: cost_of(p), repeats, 0.05)
        from_ir = timed(lambda g=g: cost_of(compile_costs(g)), repeats, 0.05)
        floor = timed(lambda g=g: read_nodes(g), repeats, 0.05)
        entries = [("ours: cost_of", report.macs, report.params, ours, "on a prebuilt program (compile_costs once)"),
                   ("ours: from IR", report.macs, report.params, from_ir, "compile_costs + cost_of from the built IR")]
        model = lower_to_torch(g).eval()
        with torch.no_grad():
            for peer, (macs, params, recount, note) in peers(model, x).items():
                entries.append((peer, macs, params, timed(recount, max(3, repeats // 2)), note))
        for counter, macs, params, seconds, note in entries:
            peer = not counter.startswith("ours")
            row = [name, counter, f"{macs:,}", f"{macs - report.macs:+,}" if peer else "",
                   f"{params:,}" if params is not None else "—", fmt_time(seconds),
                   f"{seconds / ours:,.0f}x" if peer else "", f"{seconds / from_ir:,.0f}x" if peer else "", note]
            rows.append(row)
            table.add_row(*row[:-1])
        fastest = min((e for e in entries if not e[0].startswith("ours")), key=lambda e: e[3])
        summary.append(f"{name}: fastest peer {fastest[0]} {fmt_time(fastest[3])}; ours {fastest[3] / ours:,.0f}x "
                       f"faster on a prebuilt program, {fastest[3] / from_ir:,.0f}x from the built IR; 1000x would "
                       f"leave {fmt_time(fastest[3] / 1000)}, and only reading op, shape, attrs and inputs of its "
                       f"{len(g)} nodes out of the networkx IR takes {fmt_time(floor)}")
        console.print(f"  {name}: done")
    return table, rows, summary


def read_nodes(g) -> list[tuple]:
    """The least any count from the networkx IR must do: visit every node and read what its cost depends on."""
    return [(d["op"], d["shape"], d["attrs"].get("k", 0), d["attrs"].get("groups", 1), len(d["inputs"]))
            for _, d in g.nodes(data=True)]


def fmt_time(seconds: float) -> str:
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def batched(rows: int, repeats: int) -> tuple[float, int]:
    """Candidate evaluations per second for resnet18 with random per-group widths (one numba call per batch)."""
    program = compile_costs(load_network(str(ROOT / "examples" / "resnet18.net")))
    rng = np.random.default_rng(0)
    protos, mult = program.prototype_widths, program.multiple_of
    widths = (rng.integers(1, 2 * protos // mult + 1, size=(rows, len(protos))) * mult).astype(np.int64)
    batched_costs(program, widths[:8])
    seconds = timed(lambda: batched_costs(program, widths), repeats)
    return rows / seconds, len(protos)


def cli_runs(repeats: int) -> list[tuple[str, float]]:
    """`netdsl cost examples/resnet50.net` as a whole process: cold numba cache, then warm."""
    exe = str(ROOT / ".venv" / "bin" / "netdsl")
    target = str(ROOT / "examples" / "resnet50.net")
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "COLUMNS": "120"}

        def once(*argv) -> float:
            t = time.perf_counter()
            subprocess.run([exe, *argv], env=env, check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t

        out.append(("netdsl cost examples/resnet50.net, cold numba cache", once("cost", target)))
        out.append(("netdsl cost examples/resnet50.net, warm numba cache",
                    statistics.median(once("cost", target) for _ in range(repeats))))
        out.append(("netdsl check examples/resnet50.net (no cost model; start-up baseline)",
                    statistics.median(once("check", target) for _ in range(repeats))))
    return out


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} logical CPUs (load average {load:.1f} at start), Python "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"numba {numba.__version__} (NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}), numpy {np.__version__}")


def markdown(rows, summary, rate, columns, runs, command: str, where: str) -> str:
    lines = [START, "## Cost model (`compiler.cost`) against peer counters", "",
             f"Command: `{command}`  ", f"Machine: {where}", ""]
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus / 2:
        lines += [f"The machine was shared with other jobs (load average {load:.1f} on {cpus} CPUs at the end): "
                  "peer times, which are real forward passes, are inflated and vary from run to run; rerun on an "
                  "idle machine for clean figures.", ""]
    lines += ["Every counter sees the same network: ours reads the IR of `examples/NAME.net`; the peers count the "
              "`nn.Module` that `compiler.backend.lower.lower_to_torch` builds from it, on a 1x3x224x224 input. Times are "
              "medians; a peer's time covers one full count (they run forward passes); the ratios divide it by our "
              "time on a prebuilt program and from the built IR (`compile_costs` + `cost_of`).", "",
              "| network | counter | MACs | MACs − ours | params | time | vs ours (prebuilt) | vs ours (from IR) "
              "| note |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [""] + [f"* {line}" for line in summary]
    lines += ["", f"Batched width evaluation (resnet18, {columns} width variables, random widths, one core): "
              f"**{rate:,.0f} candidate evaluations/s** (`batched_costs`, MACs and params per row).", "",
              "| whole process | wall time |", "|---|---:|"]
    lines += [f"| `{label}` | {seconds:.2f} s |" for label, seconds in runs]
    lines += ["", END]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    console = Console()
    repeats = 3 if args.quick else 9
    where = machine()
    console.print(where)
    table, rows, summary = compare(console, repeats)
    console.print(table)
    for line in summary:
        console.print(line)
    rate, columns = batched(20_000 if args.quick else 200_000, repeats)
    console.print(f"batched: {rate:,.0f} candidate evaluations/s (resnet18, {columns} width variables)")
    runs = cli_runs(1 if args.quick else 3)
    for label, seconds in runs:
        console.print(f"{label}: {seconds:.2f} s")
    if not args.no_write:
        command = ".venv/bin/python bench/cost_peers.py" + (" --quick" if args.quick else "")
        write_section(markdown(rows, summary, rate, columns, runs, command, where))
        console.print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
