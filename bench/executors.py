"""Candidates per minute with each executor: in this process, a local pool, and Ray at 1 and 2 workers.

    python bench/executors.py [--candidates 6] [--repeats 3] [--images 1024] [--limit-train 6000] [--no-docs]

A fixed tiny search: the first cycle's candidates of examples/fashion_cnn.net under macs<=5.5M on Fashion-MNIST
(untrained prototype weights: the speed of a candidate does not depend on them). Every candidate runs with one
torch thread whatever the executor, so the executors differ only in how they move work. Each executor is started
and warmed up once (two candidates, untimed: Ray starts its workers and ships the data then), then the same
candidates are evaluated --repeats times, the executors taking turns in every repeat so that the machine's load
falls on all of them alike. Ray runs as a local instance with 2 CPUs, 1 CPU per candidate. The table goes to
docs/benchmarks.md between the bench:executors markers.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # Ray's and the pool's workers inherit it

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import markers, mean_sd, write_section  # noqa: E402

START, END = markers("executors")
NETWORK = "examples/fashion_cnn.net"
REQUIREMENT = "macs<=5.5M"


def make_tasks(args, weights: Path) -> list:
    """The candidates of the search's first cycle, as the loop would hand them to an executor."""
    import torch
    from safetensors.numpy import load_file

    from compiler.backend.lower import lower_to_torch
    from compiler.backend.weights import save_weights
    from gensynth.generator import initial_state, magnitude_prior, sample
    from gensynth.inquisitor import Budget
    from gensynth.loop import SynthConfig, candidate_seed, make_task
    from gensynth.requirements import parse_requirements
    from gensynth.space import search_space
    from netdsl.loader import load_network

    prototype = load_network(str(ROOT / NETWORK))
    torch.manual_seed(0)
    save_weights(lower_to_torch(prototype), weights)
    budget = Budget(images=args.images, probe_images=256, latency_runs=10, bn_images=512, device="cpu")
    cfg = SynthConfig(data="fashion-mnist", requirements=[REQUIREMENT], budget=budget,
                      data_options={"limit_train": args.limit_train})
    reqs = parse_requirements(cfg.requirements)
    space = search_space(prototype)
    state = initial_state(space, reqs, cfg.utility, cfg.min_fraction, magnitude_prior(space, load_file(str(weights))))
    return [make_task(f"0:{i}", 0, sample(state, space, candidate_seed(0, 0, i), reqs), space, cfg, weights)
            for i in range(args.candidates)]


def executors() -> list[tuple[str, int, object]]:
    from gensynth.executor import InProcess, LocalPool
    from gensynth.ray_executor import RayExecutor

    return [("local", 1, InProcess(threads=1)), ("local", 2, LocalPool(2, "cpu", threads=1)),
            ("ray", 1, RayExecutor(cpus_per_candidate=1, workers=1, device="cpu")),
            ("ray", 2, RayExecutor(cpus_per_candidate=1, workers=2, device="cpu"))]


def evaluate_all(executor, tasks) -> float:
    """Seconds to evaluate every task; a failed candidate stops the benchmark."""
    records = []
    t = time.perf_counter()
    executor.run(tasks, lambda task, record: records.append(record))
    seconds = time.perf_counter() - t
    from gensynth.records import Failure

    failed = [r for r in records if isinstance(r, Failure)]
    if failed or len(records) != len(tasks):
        raise SystemExit(f"{len(failed)} candidate(s) failed: {failed[0].error if failed else 'lost'}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=1024, help="fine-tune images per candidate")
    ap.add_argument("--limit-train", type=int, default=6000, help="Fashion-MNIST training images loaded")
    ap.add_argument("--no-docs", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    import ray
    import torch

    from gensynth.data import load_dataset

    torch.set_num_threads(1)
    weights = Path(tempfile.mkdtemp(prefix="bench-executors-")) / "prototype.safetensors"
    tasks = make_tasks(args, weights)
    data = load_dataset("fashion-mnist", limit_train=args.limit_train)
    sizes = {"task": statistics.fmean(len(pickle.dumps(t)) for t in tasks),
             "data": sum(t.numel() * t.element_size() for t in (data.train_x, data.train_y, data.val_x, data.val_y,
                                                                 data.test_x, data.test_y)),
             "weights": weights.stat().st_size}
    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    ray_start = time.perf_counter() - t
    runs = executors()
    startup, seconds = {}, {(kind, n): [] for kind, n, _ in runs}
    try:
        for kind, n, executor in runs:
            t = time.perf_counter()
            executor.start()
            evaluate_all(executor, tasks[:2])
            startup[(kind, n)] = time.perf_counter() - t
            print(f"{kind} x{n}: started and warmed up in {startup[(kind, n)]:.1f} s", flush=True)
        for repeat in range(args.repeats):
            for kind, n, executor in runs[repeat % len(runs):] + runs[:repeat % len(runs)]:
                seconds[(kind, n)].append(evaluate_all(executor, tasks))
                print(f"repeat {repeat + 1}, {kind} x{n}: {seconds[(kind, n)][-1]:.1f} s", flush=True)
    finally:
        for _, _, executor in runs:
            executor.close()
        ray.shutdown()
    per_minute = {key: [60 * len(tasks) / s for s in values] for key, values in seconds.items()}

    def paired(a: tuple, b: tuple) -> list[float]:  # candidates per minute of a over b, repeat by repeat
        return [x / y for x, y in zip(per_minute[a], per_minute[b])]

    def verdict(ratios: list[float]) -> str:
        mean, sd = statistics.fmean(ratios), statistics.stdev(ratios) if len(ratios) > 1 else 0.0
        if abs(mean - 1) <= sd:
            return f"{mean_sd(ratios)}, a tie within the spread"
        return f"{mean_sd(ratios)}, {'faster' if mean > 1 else 'slower'}"

    rows = []
    for kind, n, _ in runs:
        ratio = paired((kind, n), ("local", n))
        rows.append(f"| {kind} | {n} | {mean_sd(per_minute[(kind, n)])} | "
                    f"{statistics.fmean(seconds[(kind, n)]) / len(tasks):.2f} | {mean_sd(ratio)} | "
                    f"{startup[(kind, n)]:.1f} |")
    command = (f"python bench/executors.py --candidates {args.candidates} --repeats {args.repeats} "
               f"--images {args.images} --limit-train {args.limit_train}")
    load = os.getloadavg()[0]
    block = "\n".join([
        START,
        "## Executors: candidates per minute, local against Ray (issue: synthesis on a Ray cluster)",
        "",
        f"Command: `{command}`. The first cycle's {len(tasks)} candidates of `{NETWORK}` under `{REQUIREMENT}` "
        f"on Fashion-MNIST ({args.limit_train} training images loaded, {args.images} per fine-tune, one epoch), each "
        f"with one torch thread; {args.repeats} repeats with the executors taking turns. local x1 is "
        "`--workers 1` (in this process), local x2 `--workers 2` (a process pool), ray xN `--executor ray "
        "--workers N` on a local Ray instance of 2 CPUs. Ratio: candidates per minute against local at the same "
        f"worker count, paired by repeat. Machine: 2 shared cores (load average {load:.1f} at the end), CPU only.",
        "",
        "| executor | workers | candidates / min | s / candidate | ratio to local | start + warm-up (s) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Ray against local: {verdict(paired(('ray', 1), ('local', 1)))} at 1 worker; "
        f"{verdict(paired(('ray', 2), ('local', 2)))} at 2.",
        f"- 2 workers against 1: local {mean_sd(paired(('local', 2), ('local', 1)))}, Ray "
        f"{mean_sd(paired(('ray', 2), ('ray', 1)))}. A second worker only helps when a core is free: with other "
        "developers' jobs on the 2 cores these rows measure each executor's overhead, not its scaling (see "
        "docs/distributed.md for the expected scaling).",
        f"- Starting the local Ray instance took {ray_start:.1f} s (not in the table); Ray ships the data once: "
        f"{sizes['data'] / 1e6:.0f} MB of tensors here, the prototype's weights ({sizes['weights'] / 1e3:.0f} KB), "
        f"then {sizes['task'] / 1e3:.0f} KB per candidate (its Task: the candidate's and the prototype's IR, "
        "decisions, budget).",
        END,
    ])
    print(block)
    if not args.no_docs:
        write_section(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
