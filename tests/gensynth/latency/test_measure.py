"""The one latency measurement: repeatable within its spread, fixed threads, interleaving, outliers, a time cap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import numpy as np
import pytest

from compiler.diagnostics import NetError
from gensynth.latency.measure import Runner, kept, measure, median_interval, runner
from netdsl.loader import load_network_text

SMALL = """
network Small() {
    input x: [3, 16, 16]
    x -> conv(8, k=3, padding=1) -> bn -> relu
    output y = gap -> linear(4)
}
"""


@pytest.fixture(scope="module")
def small():
    return load_network_text(SMALL)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_the_same_network_measured_twice_agrees_within_the_reported_spread(small, runtime):
    r = runner(small, runtime, threads=1)
    a, b = (measure([r], max_seconds=1.0, min_seconds=0.1)[0] for _ in range(2))
    for lat in (a, b):
        assert lat.runtime == runtime and lat.threads == 1 and lat.runs >= 12
        assert lat.fast <= lat.median <= lat.slow and lat.low <= lat.median <= lat.high
        assert 0 < lat.median < 0.05  # a conv on 16x16: well under 50 ms even on a crowded machine
    # the two agree: their 80% ranges, widened by 5% for the machine's drift between them, overlap (on a quiet
    # machine each range is a fraction of a percent wide, narrower than that drift)
    assert max(a.fast, b.fast) <= 1.05 * min(a.slow, b.slow)
    assert "ms" in a.text() and runtime in a.text()


def test_torch_threads_are_fixed_while_timing_and_restored(small):
    import torch

    before = torch.get_num_threads()
    seen = set()
    inner = runner(small, "torch", threads=1)

    def forward():
        seen.add(torch.get_num_threads())
        return inner.forward()

    measure([Runner(forward, "torch", 1)], max_seconds=0.2, min_seconds=0.01)
    assert seen == {1} and torch.get_num_threads() == before


def test_networks_compared_side_by_side_are_interleaved():
    calls = []

    def busy(tag: str, seconds: float):
        def forward():
            calls.append(tag)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return Runner(forward, "onnxruntime", 1, tag)

    fast, slow = measure([busy("a", 1e-4), busy("b", 3e-4)], max_seconds=0.3, min_seconds=0.05)
    assert fast.median < slow.median
    # after a first call and a sizing call each: rounds whose order alternates (ab ba ab ...), each network's
    # timed block preceded by its untimed warm calls, so the calls come in runs of one network at a time
    runs = [tag for k, tag in enumerate(calls[4:]) if k == 0 or calls[4 + k - 1] != tag]
    assert len(runs) >= 12 and runs == ["a" if k % 2 == 0 else "b" for k in range(len(runs))]


def test_a_network_timed_between_others_is_timed_on_warm_caches():
    last = []

    def cached(tag: str):
        def forward():  # twice as slow until it has run 4 times in a row (the caches hold another network)
            seconds = 1e-4 if last[-4:] == [tag] * 4 else 2e-4
            last.append(tag)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return Runner(forward, "torch", 1, tag)

    for lat in measure([cached("a"), cached("b"), cached("c")], max_seconds=0.5, min_seconds=0.05):
        assert lat.median < 1.5e-4, lat.text()


def test_outlying_blocks_are_left_out_of_the_median():
    blocks = np.r_[np.random.default_rng(0).normal(1.0, 0.02, 200), [5.0, 8.0]]  # two runs the OS interrupted
    inside = kept(blocks)
    assert inside.max() < 1.2 and len(inside) >= 198
    med, lo, hi = median_interval(inside)
    assert lo < med < hi and abs(med - 1.0) < 0.01 and np.median(blocks) > med


def test_median_interval_covers_the_median_with_order_statistics():
    x = np.arange(1.0, 101.0)
    med, lo, hi = median_interval(x)
    assert med == 50.5 and lo == 41.0 and hi == 61.0  # ranks 40 and 60 (0-based) of 100: n/2 ± 1.96 sqrt(n)/2


def test_a_noisy_runner_stops_at_the_time_cap_and_says_so():
    rng = np.random.default_rng(0)

    def forward():
        end = time.perf_counter() + rng.choice([2e-5, 2e-4])
        while time.perf_counter() < end:
            pass

    start = time.perf_counter()
    lat = measure([Runner(forward, "onnxruntime", 1)], target=1e-6, max_seconds=0.3, min_seconds=0.0)[0]
    assert not lat.converged and "time cap" in lat.text()
    assert time.perf_counter() - start < 1.5


@pytest.mark.parametrize("runtime, threads, message", [
    ("tensorrt", 1, "unknown runtime 'tensorrt'"),
    ("torch", 0, "--threads must be at least 1"),
])
def test_bad_runtime_or_threads_is_a_clear_error(small, runtime, threads, message):
    with pytest.raises(NetError, match=message):
        runner(small, runtime, threads)


def test_an_unknown_clock_is_a_clear_error(small):
    with pytest.raises(NetError, match="unknown clock"):
        measure([runner(small)], clock="sundial")


def test_warm_up_runs_until_timings_settle():
    calls = []

    def forward():  # the first calls are slow, as a cold cache or a lazy initialisation makes them
        calls.append(1)
        end = time.perf_counter() + (2e-3 if len(calls) <= 6 else 1e-4)
        while time.perf_counter() < end:
            pass

    lat = measure([Runner(forward, "onnxruntime", 1)], max_seconds=2.0, min_seconds=0.0)[0]
    assert lat.median < 3e-4 and lat.slow < 1e-3
    assert len(calls) - lat.runs >= 6  # the timed calls are the last ones: none of the slow first six


def test_an_exported_onnx_file_is_timed_by_the_same_measurement(small, tmp_path):
    from compiler.backend.export import export_onnx
    from compiler.backend.lower import lower_to_torch
    from gensynth.latency.measure import file_runner

    path = tmp_path / "small.onnx"
    export_onnx(lower_to_torch(small).eval(), path)
    r = file_runner(path, threads=1)
    assert r.runtime == "onnxruntime" and r.name == "small"
    assert r.forward()[0].shape == (1, 4)  # batch 1 at the file's declared input shape
    image = np.full((2, 3, 16, 16), 0.5, dtype=np.float64)  # a given input: its first sample, as float32
    assert file_runner(path, sample=image).forward()[0].shape == (1, 4)
    lat = measure([r, runner(small, "onnxruntime")], max_seconds=1.0, min_seconds=0.1)[0]
    assert lat.runtime == "onnxruntime" and lat.threads == 1 and lat.fast <= lat.median <= lat.slow
    with pytest.raises(NetError, match="no such file"):
        file_runner(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_text("not onnx")
    with pytest.raises(NetError, match="onnxruntime cannot load"):
        file_runner(tmp_path / "bad.onnx")


PAGE_FAULTS = """
import resource, sys
import torch
from gensynth.latency.measure import runner
from netdsl.loader import load_network_text

def faults_per_call():  # a 40 MB activation made and freed, as a large network's are on every call
    for _ in range(2):
        torch.empty(10_000_000).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(10_000_000).fill_(1.0)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5

default = faults_per_call()
runner(load_network_text(sys.stdin.read()), "torch")
print(default, faults_per_call())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc thresholds are glibc's")
def test_torch_activations_reuse_memory_instead_of_page_faulting_on_every_call():
    # glibc hands freed blocks above its mmap threshold back to the OS, so each call faults them in again (40 MB:
    # ~10,000 pages); a torch runner fixes the thresholds for its process, which then reuses the memory
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS], input=SMALL, capture_output=True, text=True, check=True)
    default, steady = map(float, out.stdout.split())
    assert default > 5000 and steady < 100, out.stdout


KERNEL_CACHE = """
import gensynth, torch
x = torch.randn(1, 8, 64, 64)
convs = [torch.nn.Conv2d(8, c, 3) for c in range(8, 308)]  # 300 kernels, then the first one again
with torch.inference_mode():
    for conv in convs:
        conv(x)
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON_CREATION):
        convs[0](x)
"""


@pytest.mark.parametrize("capacity, first_kernel", [(None, "cache_miss"), ("1024", "cache_hit")])
def test_a_netdsl_process_keeps_few_onednn_kernels_unless_the_user_says_otherwise(capacity, first_kernel):
    # a process holding oneDNN's default 1,024 kernels timed networks 20-35% slower than a fresh one: importing
    # gensynth caps the cache at 256 (the first of 300 kernels is gone), a capacity set by the user stands
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if capacity:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = capacity
    out = subprocess.run([sys.executable, "-c", KERNEL_CACHE], env=env, capture_output=True, text=True, check=True)
    assert f"create:{first_kernel}" in out.stdout, out.stdout[-2000:]
