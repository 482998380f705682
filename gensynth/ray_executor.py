"""Candidates as Ray tasks, on a local Ray instance or a cluster (`netdsl synth --executor ray`).

What travels: the dataset and the trained prototype's weights go into Ray's object store once per run (each node
fetches them once, each worker process deserialises them once); each task carries only its Task (the candidate's
and the prototype's IR, decisions and budget: a few KB) and returns its record. θG updates and the journal stay on
the driver. A task whose worker or node dies is submitted again, at most `retries` times, then journaled as a
Failure; an exception in the candidate itself comes back as a Failure (executor.evaluate), never retried.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

from compiler.diagnostics import NetError
from gensynth.executor import RETRIES, Attempts, Executor, OnDone, OnRetry, evaluate
from gensynth.inquisitor import Task
from gensynth.records import Candidate, Failure

INSTALL = "pip install 'netdsl[ray]'"
CONNECT_TIMEOUT_S = 3.0

_held: dict[str, object] = {}  # in a Ray worker: the run's data and prototype weights, by object id


def _fetch(ref, convert=lambda value: value):
    """The object behind ref, fetched (and converted) once per worker process and kept for its next candidates."""
    import ray

    key = ref.hex()
    if key not in _held:
        if len(_held) >= 2:  # another run's objects: drop them
            _held.clear()
        _held[key] = convert(ray.get(ref))
    return _held[key]


def evaluate_on_ray(task: Task, shared: list, threads: int) -> Candidate | Failure:
    """The Ray task: evaluate one candidate with the run's data and prototype weights (their refs are nested in a
    list, so Ray hands them over unresolved and _fetch keeps the objects for the worker's next candidate)."""
    import torch
    from safetensors.torch import load as load_safetensors

    torch.set_num_threads(threads)
    data_ref, weights_ref = shared
    return evaluate(task, data=_fetch(data_ref), parent_state=_fetch(weights_ref, load_safetensors))


def import_ray():
    """Ray, or a NetError with the install command."""
    try:
        import ray
    except ImportError:
        raise NetError("--executor ray needs Ray, which is not installed", notes=[f"install it: {INSTALL}"]) from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """HOST:PORT must accept a connection within seconds (Ray itself would wait for minutes)."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise NetError(f"--address {address!r} is not auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise NetError(f"cannot reach the Ray cluster at {address}: {reason} within {timeout:.0f} s",
                       notes=["start it with `ray start --head` there (see docs/distributed.md), or check the "
                              "address and firewall"]) from None


class RayExecutor(Executor):
    """Each candidate a Ray task asking for C CPUs and G GPUs (fractions let small candidates share a GPU)."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_candidate: float = 1.0, gpus_per_candidate: float = 0.0,
                 workers: int | None = None, retries: int = RETRIES, device: str = "auto"):
        self.address, self.cpus, self.gpus = address, cpus_per_candidate, gpus_per_candidate
        self.workers, self.retries, self.device = workers, retries, device
        self.threads = max(1, math.floor(cpus_per_candidate))
        self._started_here = self._started = False
        self._shared: dict[tuple, list] = {}
        self._cluster = ""
        self._where = "Ray"

    def start(self) -> None:
        if self._started:
            return
        if self.device.startswith("cuda") and self.gpus <= 0:
            raise NetError(f"--device {self.device} on Ray needs GPUs for each candidate",
                           notes=["ask for them with --gpus-per-candidate G (e.g. 1, or 0.25 to share a GPU)"])
        if self.gpus > 0 and self.device == "cpu":
            raise NetError("--gpus-per-candidate reserves GPUs that --device cpu would leave idle",
                           notes=["use --device auto or cuda, or leave out --gpus-per-candidate"])
        ray = import_ray()
        if self.address and self.address != "auto":
            check_reachable(self.address)
        if not ray.is_initialized():  # (a caller that connected already, such as a test, keeps its connection)
            try:  # without --address: a new local instance, never someone else's cluster found in /tmp/ray
                local = {} if self.address else {"include_dashboard": False}
                ray.init(address=self.address or "local", log_to_driver=False, logging_level="warning", **local)
            except ConnectionError as error:
                raise NetError(f"cannot connect to a Ray cluster at {self.address}: {error}",
                               notes=["start one with `ray start --head`, or give --address HOST:PORT"]) from None
            self._started_here = True
        address = ray.get_runtime_context().gcs_address
        self._where = f"Ray at {address}" + (" (a local instance)" if self._started_here and not self.address else "")
        try:
            self.check_resources(ray.nodes())
        except NetError:
            self.close()  # a local instance started for nothing stops again
            raise
        self._started = True

    def check_resources(self, nodes: list[dict]) -> None:
        """Some live node must hold one candidate's CPUs and GPUs; otherwise Ray would wait forever."""
        alive = [n["Resources"] for n in nodes if n.get("Alive", True)]
        cpus = sum(r.get("CPU", 0) for r in alive)
        gpus = sum(r.get("GPU", 0) for r in alive)
        self._cluster = f"{len(alive)} node(s), {cpus:g} CPUs, {gpus:g} GPUs"
        if self.gpus > 0 and not any(r.get("GPU", 0) >= self.gpus for r in alive):
            raise NetError(f"--gpus-per-candidate {self.gpus:g}: no node of the Ray cluster has "
                           f"{self.gpus:g} GPU(s) ({self._cluster})",
                           notes=["leave out --gpus-per-candidate to run on CPUs, or add GPU nodes"])
        if not any(r.get("CPU", 0) >= self.cpus for r in alive):
            raise NetError(f"--cpus-per-candidate {self.cpus:g}: no node of the Ray cluster has {self.cpus:g} "
                           f"CPUs ({self._cluster})", notes=["ask for fewer CPUs per candidate"])

    def close(self) -> None:
        import ray

        if self._started_here and ray.is_initialized():
            ray.shutdown()
        self._started_here = self._started = False
        self._shared.clear()

    def describe(self) -> str:
        at_once = f", at most {self.workers} at once" if self.workers else ""
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self._where}: {self._cluster}; {self.cpus:g} CPU{gpus} per candidate{at_once}"

    def shared(self, task: Task) -> list:
        """Object refs of the task's dataset and prototype weights, put into the object store once per run."""
        import ray

        from gensynth.data import load_dataset

        weights = Path(task.parent_weights)
        key = (task.data, json.dumps(task.data_options, sort_keys=True), str(weights), weights.stat().st_mtime_ns)
        if key not in self._shared:
            data = load_dataset(task.data, **task.data_options)  # the driver's copy (cached: it checked the data)
            self._shared[key] = [ray.put(data), ray.put(weights.read_bytes())]
        return self._shared[key]

    def run(self, tasks: list[Task], on_done: OnDone, on_retry: OnRetry | None = None) -> None:
        import ray

        # max_retries=0: a lost attempt comes back here, to be counted, shown and retried by the loop below;
        # max_calls=1 with GPUs: a fresh process per candidate, so CUDA sees the GPU Ray assigned to this one
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0,
                            max_calls=1 if self.gpus > 0 else 0)(evaluate_on_ray)
        queue = list(tasks)
        attempts = Attempts(tasks, self.retries, on_done, on_retry)
        running: dict = {}
        limit = self.workers or len(tasks)
        try:
            while queue or running:
                while queue and len(running) < limit:
                    task = queue.pop(0)
                    running[remote.remote(task, self.shared(task), self.threads)] = task
                ready, _ = ray.wait(list(running), num_returns=1)
                task = running.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except ray.exceptions.RayError as error:  # the worker or its node died; the candidate did not raise
                    why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    if attempts.lost(task, f"{type(error).__name__}: {why}"):
                        queue.insert(0, task)
                    continue
                attempts.done(task, record)
        finally:
            for ref in running:  # interrupted: nothing of this run keeps running on the cluster
                ray.cancel(ref, force=True)
