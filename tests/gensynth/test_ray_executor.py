"""The Ray executor on a local Ray instance of 2 CPUs that this module starts and shuts down itself."""

import json
import os
import signal
import socket
import sqlite3
import sys
import threading
import time

import pytest
import ray

from gensynth.executor import InProcess
from gensynth.loop import synthesize
from gensynth.ray_executor import RayExecutor
from netdsl.cli.main import main
from tests.gensynth.synth_fixtures import TINY_NET, journaled, kill_9_after
from tests.gensynth.test_loop import REQS, config, tiny

MEASURED = ("wall_s", "latency", "latency_fast", "latency_slow")  # timings: measured, so they differ between runs


def descendants(pid: int) -> set[int]:
    """Every live process below pid (the Ray instance this process started: GCS, raylet, agents, workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs; after the tests every process it started must be gone."""
    before = descendants(os.getpid())  # (such as multiprocessing's resource tracker, which is not Ray's)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    started = descendants(os.getpid()) - before
    ray.shutdown()
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in started):
        time.sleep(0.2)
    left = {}
    for pid in started:
        try:
            left[pid] = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()[:80]
        except OSError:
            continue
        os.kill(pid, signal.SIGKILL)  # do not leave them to the next developer, but fail
    assert not left, f"Ray processes outlived ray.shutdown(): {left}"


def journal(path) -> tuple[dict, dict]:
    """A run's candidate records (less their timings) and θG per cycle."""
    db = sqlite3.connect(path / "journal.sqlite")
    candidates = {key: {k: v for k, v in json.loads(record).items() if k not in MEASURED}
                  for key, record in db.execute("SELECT key, record FROM candidates")}
    generator = dict(db.execute("SELECT cycle, state FROM generator"))
    db.close()
    return candidates, generator


def task_processes() -> list[int]:
    """Ray worker processes evaluating a candidate now (Ray titles them ray::<task function>)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if open(f"/proc/{entry}/cmdline", "rb").read().startswith(b"ray::evaluate_on_ray"):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_ray_gives_the_journal_of_the_local_executor(tmp_path, data, cluster):
    synthesize(tiny(), config(data, cycles=2, per_cycle=2), tmp_path / "local", executor=InProcess(threads=1))
    weights = str(tmp_path / "local" / "prototype.safetensors")
    events = []
    on_ray = synthesize(tiny(), config(data, cycles=2, per_cycle=2, prototype_weights=weights), tmp_path / "ray",
                        executor=RayExecutor(cpus_per_candidate=1), on_event=lambda kind, p: events.append((kind, p)))
    (local_records, local_theta), (ray_records, ray_theta) = journal(tmp_path / "local"), journal(tmp_path / "ray")
    assert set(ray_records) == set(local_records) and len(ray_records) == 2 * 2 + 2  # prototype, finalist
    for key, record in local_records.items():
        assert ray_records[key] == record, key  # candidates, decisions, scores, importance: bit for bit
    assert ray_theta == local_theta and len(ray_theta) == 3  # θG before and after each cycle
    assert on_ray.executor.startswith(f"Ray at {cluster}") and "1 CPU per candidate" in on_ray.executor
    assert [p["executor"] for kind, p in events if kind == "start"] == [on_ray.executor]
    assert f"Evaluated on: Ray at {cluster}" in (tmp_path / "ray" / "report.md").read_text()


def test_a_ray_worker_killed_mid_candidate_is_retried_and_recorded_once(tmp_path, data, cluster):
    killed = []

    def kill_the_first_candidate_seen():
        deadline = time.time() + 60
        while not killed and time.time() < deadline:
            for pid in task_processes():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.02)

    threading.Thread(target=kill_the_first_candidate_seen, daemon=True).start()
    events = []
    result = synthesize(tiny(), config(data, cycles=1, per_cycle=3), tmp_path / "run",
                        executor=RayExecutor(cpus_per_candidate=1), on_event=lambda kind, p: events.append((kind, p)))
    assert killed, "no Ray worker was seen evaluating a candidate"
    retried = [p["key"] for kind, p in events if kind == "candidate_retry"]
    assert len(retried) == 1 and "WorkerCrashedError" in events[[k for k, _ in events].index("candidate_retry")][1][
        "reason"]
    done = [p.key for kind, p in events if kind == "candidate"]
    assert sorted(done) == ["0:0", "0:1", "0:2"]  # each journaled once, the killed one included
    records = {r.key: r for r in result.candidates}
    assert records[retried[0]].attempts == 2 and result.failed == []
    assert journal(tmp_path / "run")[0][retried[0]]["attempts"] == 2


def cli_args(net, data) -> list[str]:
    return [str(net), "--data", data, "--req", REQS[0], "--req", REQS[1], "--cycles", "2", "--per-cycle", "3",
            "--prototype-epochs", "1", "--images", "160", "--final-epochs", "1", "--finalists", "1", "--device", "cpu"]


def test_a_driver_killed_with_kill_9_resumes_on_ray(tmp_path, data, cluster, capsys):
    out, net = tmp_path / "run", tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    args = [*cli_args(net, data), "--executor", "ray", "--address", cluster]
    done = kill_9_after(args, out)
    assert len(done) >= 2, "the run should have journaled candidates before it was killed"
    capsys.readouterr()
    assert main(["synth", *args, "--resume", str(out)]) in (0, 3)  # 3: finished, but no network met every requirement
    progress = " ".join(capsys.readouterr().err.split())  # the same display as local runs, naming the executor
    assert f"candidates run on: Ray at {cluster}: 1 node(s), 2 CPUs, 0 GPUs; 1 CPU per candidate" in progress
    missing = {f"{c}:{i}" for c in range(2) for i in range(3)} - {key for key, _ in done}
    assert missing and all(f"candidate {key}: val acc" in progress for key in missing), progress
    after = journaled(out)
    for key, record in done:
        assert after[key] == record  # nothing finished was redone or lost
    assert {f"{c}:{i}" for c in range(2) for i in range(3)} <= set(after)
    assert f"Ray at {cluster}" in (out / "report.md").read_text()


def test_ray_bad_input_exits_2_before_any_work(tmp_path, data, cluster, capsys, monkeypatch):
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    base = [*cli_args(net, data)[:-2], "--out", str(tmp_path / "run")]
    assert main(["synth", *base, "--gpus-per-candidate", "0.5", "--executor", "ray"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # unwrapped
    assert "--gpus-per-candidate 0.5: no node of the Ray cluster has 0.5 GPU(s) (1 node(s), 2 CPUs, 0 GPUs)" in err
    assert main(["synth", *base, "--cpus-per-candidate", "4", "--executor", "ray"]) == 2
    assert "no node of the Ray cluster has 4 CPUs" in " ".join(capsys.readouterr().err.split())
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    start = time.perf_counter()
    assert main(["synth", *base, "--executor", "ray", "--address", closed]) == 2
    assert time.perf_counter() - start < 10
    assert f"cannot reach the Ray cluster at {closed}" in " ".join(capsys.readouterr().err.split())
    assert main(["synth", *base, "--executor", "ray", "--address", "head-node"]) == 2
    assert "is not auto or HOST:PORT" in capsys.readouterr().err
    assert main(["synth", *base, "--address", "auto"]) == 2
    assert "--address is an option of --executor ray" in capsys.readouterr().err
    assert main(["synth", *base, "--executor", "ray", "--device", "cuda"]) == 2
    assert "--gpus-per-candidate" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["synth", *base, "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "needs Ray" in err and "pip install 'netdsl[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was written
