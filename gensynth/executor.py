"""Executors evaluate a cycle's candidates and hand each record back to the driver as it finishes.

The loop sees one interface, Executor; InProcess and LocalPool live here, RayExecutor in gensynth/ray_executor.py.
Every executor calls on_done exactly once per task: with the inquisitor's Candidate, or with a Failure when the
candidate raised (out of memory, say) or its worker died more often than RETRIES allows. Results never depend on
the executor or the worker count: every candidate runs on THREADS threads wherever it runs (torch's parallel sums
add up in an order that depends on the thread count, so in-process candidates on every core and pool workers on
cores / N each gave `--workers 1` and `--workers 2` different 8th digits of importances and θG).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from compiler.ir import architecture_hash, from_dict
from gensynth.records import Candidate, Failure

if TYPE_CHECKING:  # the inquisitor (and torch) load where candidates are evaluated, not where the CLI starts
    from gensynth.inquisitor import Task

RETRIES = 2  # further attempts for a candidate whose worker process (or node) died under it
THREADS = 1  # torch threads of one candidate's evaluation, whatever the executor and the number of workers

OnDone = Callable[["Task", Candidate | Failure], None]  # (task, record): journal it
OnRetry = Callable[["Task", str, int], None]  # (task, why the attempt was lost, the attempt that comes next)


def evaluate(task: Task, data=None, parent_state: dict | None = None) -> Candidate | Failure:
    """The inquisitor's record, or a Failure carrying the error when the candidate raises."""
    from gensynth import inquisitor

    try:
        return inquisitor.inquire(task, data=data, parent_state=parent_state)
    except Exception as error:  # noqa: BLE001 - any error of one candidate is that candidate's, not the run's
        return failure(task, f"{type(error).__name__}: {error}")


def failure(task: Task, error: str, attempts: int = 1) -> Failure:
    """What the journal keeps of a candidate that could not be evaluated: who it was and why it failed."""
    return Failure(key=task.key, cycle=task.cycle, seed=task.seed, arch=architecture_hash(from_dict(task.child)),
                   decisions=task.decisions, error=error.strip(), attempts=attempts)


def available_cores() -> int:
    """The cores this process may run on (its affinity; a container's share rather than the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Attempts:
    """Each task's attempts, bounded by `retries`; hands every task's one record to on_done."""

    def __init__(self, tasks: list[Task], retries: int, on_done: OnDone, on_retry: OnRetry | None):
        self.count = {task.key: 1 for task in tasks}
        self.retries, self.on_done, self.on_retry = retries, on_done, on_retry

    def done(self, task: Task, record: Candidate | Failure) -> None:
        self.on_done(task, dataclasses.replace(record, attempts=self.count[task.key]))

    def lost(self, task: Task, why: str) -> bool:
        """An attempt died with its worker: True when the task may go again, False when it is now recorded failed."""
        if self.count[task.key] > self.retries:
            self.on_done(task, failure(task, why, self.count[task.key]))
            return False
        self.count[task.key] += 1
        if self.on_retry:
            self.on_retry(task, why, self.count[task.key])
        return True


class Executor:
    """Where candidates are evaluated. start() checks and claims resources, close() frees them; run() evaluates."""

    name = "in-process"

    def start(self) -> None:
        """Claim resources (once: a second call does nothing); a NetError here is bad input, before any work."""

    def close(self) -> None:
        """Release what start() claimed."""

    def describe(self) -> str:
        """The executor and the resources it uses, in words (progress display and report)."""
        raise NotImplementedError

    def run(self, tasks: list[Task], on_done: OnDone, on_retry: OnRetry | None = None) -> None:
        """Evaluate every task, calling on_done(task, record) once per task, in completion order."""
        raise NotImplementedError

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcess(Executor):
    """One candidate at a time, in this process (the default: nothing to start, easiest to debug)."""

    def __init__(self, threads: int = THREADS):
        self.threads = threads

    def describe(self) -> str:
        return f"in-process, {self.threads} thread(s) per candidate"

    def run(self, tasks: list[Task], on_done: OnDone, on_retry: OnRetry | None = None) -> None:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            attempts = Attempts(tasks, 0, on_done, on_retry)
            for task in tasks:
                attempts.done(task, evaluate(task))
        finally:
            torch.set_num_threads(before)


def uses_cuda(device: str, cuda_devices: int) -> bool:
    """Whether candidates on `device` run on a GPU, given how many this machine has."""
    return device.startswith("cuda") or (device == "auto" and cuda_devices > 0)


def start_method(device: str, cuda_devices: int, cuda_initialised: bool) -> str:
    """How the pool starts workers: never fork once CUDA is in use (a forked child cannot re-initialise CUDA)."""
    return "spawn" if cuda_initialised or uses_cuda(device, cuda_devices) else "fork"


def worker_devices(device: str, workers: int, cuda_devices: int) -> list[str]:
    """The device of each worker: round-robin over the GPUs (cuda:0, cuda:1, ...) unless one was named."""
    if uses_cuda(device, cuda_devices) and device in ("cuda", "auto") and cuda_devices > 0:
        return [f"cuda:{i % cuda_devices}" for i in range(workers)]
    return [device] * workers


_worker_device: str | None = None  # in a pool worker: the device its candidates run on


def _exit_with_parent(parent: int) -> None:
    """Exit once the driver is gone: after kill -9 of `netdsl synth` the pool's queues stay open in the sibling
    workers, so without this every worker would wait for work forever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _init_worker(threads: int, devices: list[str], counter) -> None:
    """A pool worker's start: its thread count, the next device of the round-robin (a counter across workers), and
    a watch on the driver (_exit_with_parent)."""
    global _worker_device
    import torch

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()

    torch.set_num_threads(threads)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _worker_device = devices[index % len(devices)]
    if _worker_device.startswith("cuda:") and torch.cuda.is_available():
        torch.cuda.set_device(torch.device(_worker_device))


def on_device(task: Task, device: str | None) -> Task:
    """The task as a worker with its own device runs it (a device the user named stays as it is)."""
    if device is None or task.budget.device not in ("auto", "cuda"):
        return task
    return dataclasses.replace(task, budget=dataclasses.replace(task.budget, device=device))


def _evaluate_in_worker(task: Task) -> Candidate | Failure:
    return evaluate(on_device(task, _worker_device))


class LocalPool(Executor):
    """N worker processes on this machine, kept for the whole run (data loads once per worker), each with THREADS
    threads (the same as in-process, so the results do not depend on N) and, with several GPUs, its own GPU."""

    name = "local"

    def __init__(self, workers: int, device: str = "cpu", threads: int = THREADS, retries: int = RETRIES,
                 cuda_devices: int | None = None):
        self.workers, self.device, self.retries = workers, device, retries
        self.threads = threads
        self._cuda_devices = cuda_devices  # None: ask torch (tests inject a count)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def cuda_devices(self) -> int:
        if self._cuda_devices is None:
            import torch

            self._cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return self._cuda_devices

    def devices(self) -> list[str]:
        return worker_devices(self.device, self.workers, self.cuda_devices)

    def context(self):
        """The multiprocessing context workers start from (spawn when CUDA is in use)."""
        import torch

        initialised = torch.cuda.is_initialized()
        return multiprocessing.get_context(start_method(self.device, self.cuda_devices, initialised))

    def describe(self) -> str:
        devices = sorted(set(self.devices()))
        return (f"local pool of {self.workers} processes ({self.context().get_start_method()}), "
                f"{self.threads} thread(s) per candidate, device {', '.join(devices)}")

    def new_pool(self, workers: int) -> ProcessPoolExecutor:
        context = self.context()
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(self.threads, self.devices(), context.Value("i", 0)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def run(self, tasks: list[Task], on_done: OnDone, on_retry: OnRetry | None = None) -> None:
        attempts = Attempts(tasks, self.retries, on_done, on_retry)
        why = "its worker process died (killed, or out of memory)"
        for task in self._run_pass(list(tasks), attempts, alone=False):
            # run each lost one again on its own, so that a death is the candidate's own doing
            while attempts.lost(task, why) and self._run_pass([task], attempts, alone=True):
                pass

    def _run_pass(self, queue: list[Task], attempts: Attempts, alone: bool) -> list[Task]:
        """Evaluate the queue with at most one candidate per worker in flight; return those a dying worker lost."""
        lost = []
        while queue:
            if alone:
                pool, width = self.new_pool(1), 1
            else:
                self._pool = self._pool or self.new_pool(self.workers)
                pool, width = self._pool, self.workers
            running, broken = {}, False
            while running or (queue and not broken):
                while queue and not broken and len(running) < width:
                    task = queue.pop(0)
                    running[pool.submit(_evaluate_in_worker, task)] = task
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    try:
                        record = future.result()
                    except BrokenProcessPool:
                        lost.append(task)
                        broken = True
                        continue
                    attempts.done(task, record)
            if broken or alone:
                pool.shutdown(cancel_futures=True)
                if not alone:
                    self._pool = None
        return lost


def local_executor(workers: int = 1, device: str = "cpu", retries: int = RETRIES) -> Executor:
    """`--workers N` on this machine: in this process for one worker, else a pool of N."""
    return InProcess() if workers <= 1 else LocalPool(workers, device, retries=retries)


def default_workers(device: str = "auto") -> int:
    """Workers when --workers is not given: one per core this process may use (at most 8), one on a GPU."""
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return 1 if uses_cuda(device, cuda) else max(1, min(8, available_cores()))
