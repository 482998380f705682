"""Latency measured so it can be trusted: fixed threads, warm-up until settled, repetitions until the median's
95% confidence interval is within ±2% (or a time cap), outliers out of the median, the spread reported.

    runners = [runner(g, "onnxruntime", threads=1) for g in networks]
    for lat in measure(runners):          # interleaved: a load spike hits every network alike
        print(lat.text())                 # 1.234 ms ±1.1% (80% of runs 1.220-1.301 ms, 512 runs, onnxruntime, 1 thread)

Timing uses the standard library's `timeit.Timer` (what torch.utils.benchmark.Timer wraps; it turns the garbage
collector off while it times) on blocks of calls long enough that the clock's own cost vanishes. We do not
use `Timer.adaptive_autorange`: it stops when the inter-quartile range is a small share of the median, which on
a shared machine never happens (it then always runs to its cap), and it times one statement at a time, so
networks compared side by side could not be interleaved. Interleaved, each network runs untimed for WARM_SECONDS
before its block, so it is timed on warm caches as it would be alone (cold, small PyTorch networks measured up to
30% slower). The statistics are ours: Tukey's fences drop outlying
blocks, and the distribution-free order-statistic interval bounds the median.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import platform
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from compiler.diagnostics import NetError

RUNTIMES = ("torch", "onnxruntime")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: process time, for a crowded machine
TARGET = 0.02  # stop when the median's 95% interval is within ±2% of it
MAX_SECONDS = 10.0  # ... or after this long (per measure() call)
MIN_SECONDS = 0.2  # but never decide sooner: the median then spans the machine's slower swings too
BLOCK_SECONDS = 2e-5  # calls shorter than this are timed in blocks that last this long (clock cost < 1%)
MIN_BLOCKS = 12  # never decide on fewer blocks per network
SETTLE = 0.05  # warm-up ends when the median of the last WINDOW blocks is within 5% of the WINDOW before
WINDOW = 4
WARMUP_SHARE = 0.25  # warm-up gets at most this share of the time cap
Z95 = 1.959964
WARM_SECONDS = 2e-3  # interleaved: untimed calls this long before each block, so it runs on warm caches
SHORT_CALL = 0.05  # calls shorter than this are timed three times to size the blocks


@dataclass(frozen=True)
class Latency:
    """One network's batch latency: the median of the kept blocks, its 95% interval and the kept quartiles."""

    median: float  # seconds per forward pass
    low: float  # 95% confidence interval of the median
    high: float
    fast: float  # spread of single runs (or short blocks of runs): 10th and 90th percentiles of the kept ones
    slow: float
    runs: int  # timed forward passes (warm-up excluded)
    outliers: int  # blocks outside Tukey's fences, left out of the median
    converged: bool  # the interval reached the target before the time cap
    runtime: str
    threads: int
    clock: str = "wall"

    @property
    def ci(self) -> float:
        """Half the 95% interval, relative to the median."""
        return (self.high - self.low) / 2 / self.median

    def items(self) -> list[str]:
        """The figures in words: the median with its interval, then how it was measured."""
        ms = 1e3
        return [f"{self.median * ms:.3f} ms ±{self.ci:.1%}", f"80% of runs {self.fast * ms:.3f}-{self.slow * ms:.3f} ms",
                f"{self.runs} runs", self.runtime, f"{self.threads} thread{'s' if self.threads > 1 else ''}",
                *([] if self.clock == "wall" else [f"{self.clock} clock"]),
                *([] if self.converged else ["time cap reached"])]

    def text(self) -> str:
        first, *rest = self.items()
        return f"{first} ({', '.join(rest)})"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Runner:
    """One network ready to run batch 1 on a runtime: `forward()` runs it once."""

    forward: Callable[[], object]
    runtime: str
    threads: int
    name: str = ""


def setup_text(runtime: str, threads: int, clock: str = "wall") -> str:
    """How latency is measured, in words: 'PyTorch eager, 1 thread' or 'onnxruntime, 2 threads, cpu clock'."""
    name = {"torch": "PyTorch eager"}.get(runtime, runtime)
    return f"{name}, {threads} thread{'s' if threads > 1 else ''}" + ("" if clock == "wall" else f", {clock} clock")


def check_runtime(runtime: str, threads: int = 1) -> None:
    """NetError for an unknown runtime, a missing onnxruntime, or a thread count below 1."""
    if runtime not in RUNTIMES:
        raise NetError(f"unknown runtime '{runtime}'", notes=[f"known runtimes: {', '.join(RUNTIMES)}"])
    if threads < 1:
        raise NetError(f"--threads must be at least 1, got {threads}")
    if runtime == "onnxruntime":
        import importlib.util

        for package in ("onnx", "onnxruntime"):
            if importlib.util.find_spec(package) is None:
                raise NetError(f"runtime onnxruntime needs the {package} package, which is not installed",
                               notes=["install it: pip install 'netdsl[onnx]'"])


# glibc's malloc returns large freed blocks to the OS by default (its mmap and trim thresholds follow the sizes
# freed so far), so depending on what a process ran before, PyTorch eager's activations page-fault on every call:
# MobileNetV2 at 160 x 160 then measured 1.5-2x slower (1,200-1,700 page faults a call) in one process and not in
# the next. Thresholds fixed this high keep freed blocks for reuse, as jemalloc and tcmalloc do.
MALLOC_KEEP = 1 << 30


@functools.cache
def steady_malloc() -> bool:
    """Fix glibc malloc's mmap and trim thresholds for this process (once), so that a torch network's activations
    reuse memory instead of page-faulting; False where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, MALLOC_KEEP) and libc.mallopt(m_trim_threshold, MALLOC_KEEP))


def runner(g: nx.DiGraph, runtime: str = "torch", threads: int = 1, module=None, batch: int = 1) -> Runner:
    """The network (or its already lowered, possibly trained `module`) on a runtime, with random inputs."""
    check_runtime(runtime, threads)
    if runtime == "torch":
        steady_malloc()
    import torch

    from compiler.backend.lower import lower_to_torch

    model = (module if module is not None else lower_to_torch(g)).eval()
    inputs = [torch.randn(batch, *g.nodes[n]["shape"]) for n in g.graph["inputs"]]
    name = g.graph.get("name", "")
    if runtime == "torch":
        model = model.to("cpu")

        def forward():
            with torch.inference_mode():
                return model(*inputs)

        return Runner(forward, runtime, threads, name)
    session = onnx_session(model, threads)
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
    return Runner(lambda: session.run(None, feeds), runtime, threads, name)


def onnx_session(model, threads: int):
    """An onnxruntime CPU session of the lowered module (exported as `netdsl export --to onnx` does)."""
    from compiler.backend.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model.to("cpu"), path)
        return file_session(path, threads)


def file_session(path: str | Path, threads: int):
    """An onnxruntime CPU session of an ONNX file at a fixed thread count, run sequentially."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable or invalid files
        raise NetError(f"onnxruntime cannot load {path}: {err}") from None


ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def file_runner(path: str | Path, threads: int = 1, sample: np.ndarray | None = None, seed: int = 0) -> Runner:
    """An exported ONNX file (netdsl export's, int8 ones too, or any other) on onnxruntime, batch 1: `sample` (one
    real input, say) feeds its first input, and otherwise seeded uniform [0, 1) values of the shapes the file
    declares (a named or unknown dimension is 1)."""
    check_runtime("onnxruntime", threads)
    if not Path(path).is_file():
        raise NetError(f"cannot time {path}: no such file")
    session = file_session(path, threads)
    rng = np.random.default_rng(seed)
    feeds = {}
    for k, i in enumerate(session.get_inputs()):
        if i.type not in ONNX_TYPES:
            raise NetError(f"cannot time {path}: input '{i.name}' is {i.type}, not a tensor of numbers")
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        x = np.asarray(sample)[:1] if sample is not None and k == 0 else rng.random(shape)
        feeds[i.name] = np.ascontiguousarray(x, dtype=ONNX_TYPES[i.type])
    return Runner(lambda: session.run(None, feeds), "onnxruntime", threads, Path(path).stem)


@contextlib.contextmanager
def torch_threads(runners: Sequence[Runner]):
    """Fix torch's intra-op thread count for the torch runners (and restore it after)."""
    wanted = {r.threads for r in runners if r.runtime == "torch"}
    if not wanted:
        yield
        return
    if len(wanted) > 1:
        raise ValueError(f"torch runners measured together must share a thread count, got {sorted(wanted)}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(wanted.pop())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def kept(blocks: np.ndarray) -> np.ndarray:
    """The blocks inside Tukey's fences (1.5 inter-quartile ranges beyond the quartiles)."""
    q1, q3 = np.percentile(blocks, [25, 75])
    fence = 1.5 * (q3 - q1)
    return blocks[(blocks >= q1 - fence) & (blocks <= q3 + fence)]


def median_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Median and its distribution-free 95% interval (order statistics of the binomial(n, 1/2) ranks)."""
    x = np.sort(values)
    n = len(x)
    half = Z95 * math.sqrt(n) / 2
    lo, hi = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half))
    return float(np.median(x)), float(x[lo]), float(x[hi])


def summarize(blocks: list[float], per_block: int, r: Runner, converged: bool, clock: str) -> Latency:
    """The Latency of a runner's timed blocks (seconds per call, one value per block)."""
    x = kept(np.asarray(blocks))
    med, lo, hi = median_interval(x)
    fast, slow = np.percentile(x, [10, 90])
    return Latency(med, lo, hi, float(fast), float(slow), len(blocks) * per_block, len(blocks) - len(x), converged,
                   r.runtime, r.threads, clock)


def _settled(blocks: list[float]) -> bool:
    if len(blocks) < 2 * WINDOW:
        return False
    last, before = np.median(blocks[-WINDOW:]), np.median(blocks[-2 * WINDOW:-WINDOW])
    return abs(last - before) <= SETTLE * before


def measure(runners: Sequence[Runner], target: float = TARGET, max_seconds: float = MAX_SECONDS,
            clock: str = "wall", min_seconds: float = MIN_SECONDS) -> list[Latency]:
    """Time every runner, interleaved block by block (alternating the order each round), until each median's
    95% interval is within ±target or max_seconds have passed; one Latency per runner, in order."""
    if clock not in CLOCKS:
        raise NetError(f"unknown clock '{clock}'", notes=[f"known clocks: {', '.join(CLOCKS)}"])
    if not runners:
        return []
    start = time.perf_counter()
    with torch_threads(runners):
        timers = [timeit.Timer(r.forward, timer=CLOCKS[clock]) for r in runners]
        for r in runners:
            r.forward()  # first call: allocation, lazy initialisation
        once = [max(single_call(t), 1e-9) for t in timers]
        per_block = [max(1, math.ceil(BLOCK_SECONDS / s)) for s in once]
        warm_calls = [max(1, math.ceil(WARM_SECONDS / s)) if len(runners) > 1 else 0 for s in once]

        def round_of(index: int) -> list[float]:
            order = range(len(timers)) if index % 2 == 0 else reversed(range(len(timers)))
            times = [0.0] * len(timers)
            for i in order:
                if warm_calls[i]:
                    timers[i].timeit(warm_calls[i])  # untimed: the caches hold this network, not the last one timed
                times[i] = timers[i].timeit(per_block[i]) / per_block[i]
            return times

        warm: list[list[float]] = [[] for _ in runners]
        rounds = 0
        while not all(_settled(w) for w in warm) and time.perf_counter() - start < WARMUP_SHARE * max_seconds:
            for w, t in zip(warm, round_of(rounds)):
                w.append(t)
            rounds += 1
        blocks: list[list[float]] = [[] for _ in runners]
        converged = False
        timed = time.perf_counter()
        while True:
            for b, t in zip(blocks, round_of(rounds)):
                b.append(t)
            rounds += 1
            if len(blocks[0]) >= MIN_BLOCKS and time.perf_counter() - timed >= min(min_seconds, max_seconds / 2):
                converged = all(_within(b, target) for b in blocks)
                if converged or time.perf_counter() - start >= max_seconds:
                    break
    return [summarize(b, n, r, converged or _within(b, target), clock) for b, n, r in zip(blocks, per_block, runners)]


def single_call(timer: timeit.Timer) -> float:
    """Seconds of one call: the least of three where calls are short, so that one preemption by the OS does not
    set the block and warm-up lengths (a 3x longer call once cut the untimed warm-up below what caches need)."""
    first = timer.timeit(1)
    return min(first, *timer.repeat(2, 1)) if first < SHORT_CALL else first


def _within(blocks: list[float], target: float) -> bool:
    med, lo, hi = median_interval(kept(np.asarray(blocks)))
    return (hi - lo) / 2 <= target * med


def measure_network(g: nx.DiGraph, runtime: str = "torch", threads: int = 1, module=None, target: float = TARGET,
                    max_seconds: float = MAX_SECONDS, clock: str = "wall", min_seconds: float = MIN_SECONDS) -> Latency:
    """One network's latency on a runtime (a convenience over runner + measure)."""
    return measure([runner(g, runtime, threads, module)], target, max_seconds, clock, min_seconds)[0]
