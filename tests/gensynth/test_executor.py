"""Executors: failures become records, dying workers are retried a bounded number of times, CUDA never forks."""

import dataclasses
import multiprocessing
import os
import signal

import pytest
import torch

from compiler.ir import to_dict
from gensynth import executor as executor_module
from gensynth import inquisitor as inquisitor_module
from gensynth.executor import (
    InProcess,
    LocalPool,
    _init_worker,
    on_device,
    start_method,
    worker_devices,
)
from gensynth.inquisitor import Budget, Task
from gensynth.records import Candidate, Failure
from netdsl.loader import load_network_text
from tests.gensynth.synth_fixtures import TINY_NET


def make_tasks(n: int, device: str = "cpu") -> list[Task]:
    child = to_dict(load_network_text(TINY_NET, "tiny.net"))
    return [Task(key=f"0:{i}", cycle=0, seed=i, child=child, kept={}, groups={}, parent=child, parent_weights="",
                 data="npz:unused", budget=Budget(device=device)) for i in range(n)]


def collect(executor, tasks):
    done, retries = [], []
    executor.run(tasks, lambda task, record: done.append((task.key, record)),
                 lambda task, why, attempt: retries.append((task.key, attempt)))
    return done, retries


def fake_inquire(kill: dict, marks):
    """An inquire that kills its own process on the first `kill[key]` attempts at that key (counted in files, so the
    count survives the process), and raises for key 'oom'."""

    def inquire(task, **held):
        if task.key == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        tries = marks / task.key.replace(":", "_")
        count = int(tries.read_text() or 0) if tries.exists() else 0  # (a killed co-runner may leave it empty)
        tries.write_text(str(count + 1))
        if count < kill.get(task.key, 0):
            os.kill(os.getpid(), signal.SIGKILL)
        return Candidate(key=task.key, cycle=task.cycle, seed=task.seed, arch="a", val={"acc": 0.5}, utility=1.0)

    return inquire


@pytest.mark.parametrize("executor", [InProcess(), LocalPool(2)], ids=["in-process", "pool"])
def test_a_raising_candidate_is_recorded_failed_and_the_others_go_on(tmp_path, monkeypatch, executor):
    monkeypatch.setattr(inquisitor_module, "inquire", fake_inquire({}, tmp_path))
    tasks = make_tasks(3)
    tasks[1] = Task(**{**tasks[1].__dict__, "key": "oom"})
    with executor:
        done, retries = collect(executor, tasks)
    records = dict(done)
    assert sorted(records) == ["0:0", "0:2", "oom"] and len(done) == 3 and retries == []
    assert isinstance(records["oom"], Failure) and "RuntimeError: CUDA out of memory" in records["oom"].error
    assert records["oom"].arch and records["oom"].attempts == 1
    assert isinstance(records["0:0"], Candidate) and records["0:2"].utility == 1.0


def test_a_pool_worker_killed_mid_candidate_is_retried_and_recorded_once(tmp_path, monkeypatch):
    monkeypatch.setattr(inquisitor_module, "inquire", fake_inquire({"0:1": 1}, tmp_path))
    with LocalPool(2) as pool:
        done, retries = collect(pool, make_tasks(4))
    keys = [key for key, _ in done]
    assert sorted(keys) == ["0:0", "0:1", "0:2", "0:3"]  # each exactly once
    records = dict(done)
    assert all(isinstance(r, Candidate) for r in records.values())
    assert records["0:1"].attempts == 2 and ("0:1", 2) in retries
    assert (tmp_path / "0_1").read_text() == "2"  # killed once, then evaluated


def test_a_candidate_that_keeps_killing_its_worker_is_failed_after_the_retries(tmp_path, monkeypatch):
    monkeypatch.setattr(inquisitor_module, "inquire", fake_inquire({"0:0": 99}, tmp_path))
    with LocalPool(2, retries=1) as pool:
        done, retries = collect(pool, make_tasks(3))
    records = dict(done)
    assert len(done) == 3
    assert isinstance(records["0:0"], Failure) and records["0:0"].attempts == 2
    assert "worker process died" in records["0:0"].error
    assert (tmp_path / "0_0").read_text() == "2"  # tried twice, never more
    assert isinstance(records["0:1"], Candidate) and isinstance(records["0:2"], Candidate)  # a co-runner: not blamed


def test_the_pool_never_forks_once_cuda_is_in_use():
    assert start_method("cpu", cuda_devices=0, cuda_initialised=False) == "fork"
    assert start_method("auto", cuda_devices=0, cuda_initialised=False) == "fork"
    assert start_method("cuda", cuda_devices=2, cuda_initialised=False) == "spawn"
    assert start_method("auto", cuda_devices=1, cuda_initialised=False) == "spawn"
    assert start_method("cuda:1", cuda_devices=2, cuda_initialised=False) == "spawn"
    assert start_method("cpu", cuda_devices=2, cuda_initialised=True) == "spawn"  # the driver touched CUDA already
    pool = LocalPool(3, "cuda", cuda_devices=2)
    assert pool.context().get_start_method() == "spawn"
    assert "spawn" in pool.describe() and "cuda:0, cuda:1" in pool.describe()
    assert LocalPool(2, "cpu", cuda_devices=0).context().get_start_method() == "fork"


def test_each_pool_worker_gets_its_own_gpu_round_robin(monkeypatch):
    assert worker_devices("cuda", 3, cuda_devices=2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("auto", 2, cuda_devices=4) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:1", 2, cuda_devices=2) == ["cuda:1", "cuda:1"]  # the user named one
    assert worker_devices("auto", 2, cuda_devices=0) == ["auto", "auto"]
    assert worker_devices("cpu", 2, cuda_devices=2) == ["cpu", "cpu"]
    # what each worker process does at start: take the next device from a counter the workers share
    threads = torch.get_num_threads()
    monkeypatch.setattr(executor_module, "_worker_device", None)
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    seen = []
    try:
        for _ in range(3):
            _init_worker(1, ["cuda:0", "cuda:1"], counter)
            seen.append(executor_module._worker_device)
    finally:
        torch.set_num_threads(threads)
    assert seen == ["cuda:0", "cuda:1", "cuda:0"]
    task = make_tasks(1, device="cuda")[0]
    assert on_device(task, "cuda:1").budget.device == "cuda:1"
    assert on_device(make_tasks(1, device="cpu")[0], "cuda:1").budget.device == "cpu"
    assert on_device(make_tasks(1, device="cuda:0")[0], "cuda:1").budget.device == "cuda:0"


def test_spawned_pool_workers_give_the_in_process_results(tmp_path, monkeypatch):
    """What the pool does once CUDA is in use (spawn, every worker importing netdsl afresh), checked on CPU: the
    records are those of one candidate after another in this process."""
    from gensynth.loop import synthesize
    from tests.gensynth.synth_fixtures import write_npz
    from tests.gensynth.test_loop import config, tiny

    data = write_npz(tmp_path / "stripes.npz")
    local = synthesize(tiny(), config(data, cycles=1, per_cycle=2), tmp_path / "local", executor=InProcess(threads=1))
    monkeypatch.setattr(executor_module, "start_method", lambda device, cuda_devices, cuda_initialised: "spawn")
    pool = LocalPool(2, "cpu", threads=1)
    assert "spawn" in pool.describe()
    weights = str(tmp_path / "local" / "prototype.safetensors")
    spawned = synthesize(tiny(), config(data, cycles=1, per_cycle=2, prototype_weights=weights), tmp_path / "pool",
                         executor=pool)
    untimed = lambda result: {r.key: dataclasses.replace(r, wall_s=0.0, latency=0.0, latency_fast=None, latency_slow=None)  # noqa: E731
                              for r in result.candidates}
    assert untimed(spawned) == untimed(local) and len(untimed(local)) == 2
