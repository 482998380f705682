"""Run inquisitor tasks in this process or in a local process pool; results never depend on the worker count."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed

from gensynth.inquisitor import Task, inquire
from gensynth.records import Candidate


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_tasks(tasks: Iterable[Task], workers: int, on_done: Callable[[Task, Candidate], None]) -> None:
    """Evaluate every task, calling on_done(task, record) as each finishes (in completion order)."""
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(task, inquire(task))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(inquire, task): task for task in tasks}
        for future in as_completed(futures):
            on_done(futures[future], future.result())
