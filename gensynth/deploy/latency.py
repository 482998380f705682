"""Batch-1 latency of exported ONNX files with onnxruntime at a fixed thread count, timed side by side.

`onnx_latencies` is the one timing call of the deploy package (the synth report's int8 column and
bench/deploy.py); it interleaves the files round by round, so a load spike on the shared machine hits every file
alike, and reports the median with the spread of the runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROUNDS = 200  # timed rounds (each runs every file once)
WARMUP = 20


@dataclass(frozen=True)
class FileLatency:
    """Seconds per batch-1 forward: the median and the 10th-90th percentile spread of the timed runs."""

    path: Path
    median: float
    fast: float
    slow: float
    runs: int
    threads: int

    def text(self) -> str:
        ms = 1e3
        return (f"{self.median * ms:.3f} ms (80% of runs {self.fast * ms:.3f}-{self.slow * ms:.3f} ms, {self.runs} "
                f"runs, onnxruntime, {self.threads} thread{'s' if self.threads > 1 else ''})")


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_latencies(paths: Sequence[str | Path], threads: int = 1, rounds: int = ROUNDS,
                   sample: np.ndarray | None = None) -> list[FileLatency]:
    """Each file's batch-1 latency on `threads` onnxruntime threads, the files interleaved run by run (the order
    alternating each round); `sample` is the one input (random [0, 1] pixels by default)."""
    sessions = [_session(Path(p), threads) for p in paths]
    feeds = []
    for s in sessions:
        spec = s.get_inputs()[0]
        x = sample if sample is not None else np.random.default_rng(0).random(
            (1, *[d if isinstance(d, int) else 1 for d in spec.shape[1:]]), dtype=np.float32)
        feeds.append({spec.name: np.ascontiguousarray(x[:1], dtype=np.float32)})
    times: list[list[float]] = [[] for _ in sessions]
    for r in range(WARMUP + rounds):
        order = range(len(sessions)) if r % 2 == 0 else reversed(range(len(sessions)))
        for i in order:
            t = time.perf_counter()
            sessions[i].run(None, feeds[i])
            if r >= WARMUP:
                times[i].append(time.perf_counter() - t)
    out = []
    for path, t in zip(paths, times):
        fast, slow = np.percentile(t, [10, 90])
        out.append(FileLatency(Path(path), statistics.median(t), float(fast), float(slow), len(t), threads))
    return out
