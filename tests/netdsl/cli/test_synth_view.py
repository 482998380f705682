"""What `netdsl synth` shows while it runs: time elapsed and left across every phase (prototype, search,
finalists), the utility the run maximises by its name, and lines that fit 80 columns in a log."""

from __future__ import annotations

import dataclasses
import io
import re
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from rich.console import Console

import netdsl.cli.synth_view as view_module
from gensynth.plan import WorkPlan
from gensynth.records import Candidate
from netdsl.cli.synth_view import SynthView, clock


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def candidate(key: str, score: float, utility: float) -> Candidate:
    return Candidate(key=key, cycle=0, seed=1, arch="a", metric="acc", val={"acc": score}, macs=1_200_000,
                     params=64_000, netscore=utility, density=utility * 2, utility=utility, wall_s=9.5)


def run_events(utility: str, clock_: Clock, width: int = 80):
    out = io.StringIO()
    view = SynthView(Console(file=out, width=width, force_terminal=False), utility)
    plan = WorkPlan(prototype=200, prototype_done=False, per_candidate=50, candidates=4, candidates_done=0,
                    per_final=100, finals=1, finals_done=0)
    epoch = SimpleNamespace(epoch=1, val_metrics={"acc": 0.5}, images_per_s=10.0)
    view("plan", plan)
    view("prototype_training", {"epochs": 2})
    clock_.now = 10.0
    view("prototype_epoch", {"stats": epoch})  # 100 training images in 10 s
    left_after_epoch = view.remaining()
    clock_.now = 20.0
    view("prototype_epoch", {"stats": epoch})
    view("prototype", candidate("prototype", 0.5, 40.0))
    view("cycle_start", {"cycle": 0, "cycles": 2})
    for i, (score, u) in enumerate([(0.6, 50.0), (0.7, 45.0)]):
        clock_.now += 2.5  # 50 fine-tune images in 2.5 s: 20 images/s
        view("candidate", candidate(f"0:{i}", score, u))
    return view, out.getvalue(), left_after_epoch


def test_time_left_counts_every_phase_at_each_kinds_measured_rate(monkeypatch):
    clock_ = Clock()
    monkeypatch.setattr(view_module.time, "monotonic", clock_)
    view, text, left_after_epoch = run_events("netscore", clock_)
    # after one prototype epoch (10 images/s): 100 prototype + 100 final images, and 200 search images at the only
    # rate known yet
    assert left_after_epoch == pytest.approx(40.0)
    # now: training at 10 images/s (prototype) for the finalist's 100; search at 20 images/s for the last 2 x 50
    assert view.remaining() == pytest.approx(100 / 10 + 100 / 20)
    clock_.now += 4.0  # between events the estimate counts down
    assert view.remaining() == pytest.approx(11.0)
    assert view.fraction() == pytest.approx(300 / 500)
    lines = text.strip().split("\n")
    assert len(lines) > 4 and lines[0].startswith("prototype epoch 1: val acc 50.00%, 10 img/s, 0:10 elapsed, about 0:40 left")
    assert "0:25 elapsed, about 0:15 left" in text  # after the second candidate


@pytest.mark.parametrize("utility, named", [("netscore", "best NetScore 50.0"), ("density", "best information "
                                            "density 100.0"), ("accuracy", "best acc 60.00%")])
def test_the_display_names_the_utility_it_maximises(monkeypatch, utility, named):
    clock_ = Clock()
    monkeypatch.setattr(view_module.time, "monotonic", clock_)
    view, text, _ = run_events(utility, clock_)
    out = io.StringIO()
    Console(file=out, width=80).print(view)
    live = out.getvalue()
    assert named in live and "search: cycle 1/2" in live and "elapsed, about" in live
    if utility != "netscore":
        assert "NetScore" not in live + text


@pytest.mark.parametrize("width", [80, 200])
def test_log_lines_fit(monkeypatch, width):
    clock_ = Clock()
    monkeypatch.setattr(view_module.time, "monotonic", clock_)
    _, text, _ = run_events("netscore", clock_, width)
    lines = text.rstrip("\n").split("\n")
    assert all(len(line) <= width for line in lines)
    entries = text.rstrip("\n").replace("\n  ", " ").split("\n")  # a line broken to fit continues indented
    assert len(entries) == 5 and all(re.search(r", \d+:\d\d elapsed, about \d+:\d\d left$", e) for e in entries)
    if width == 80:
        assert len(lines) > len(entries)


def test_clock():
    assert [clock(5), clock(65), clock(3725)] == ["0:05", "1:05", "1:02:05"]


def test_latency_profiling_and_measured_latency_in_a_log(monkeypatch):
    """Profiling this machine says so and logs a line per tenth; a candidate's line has its measured latency and,
    with a latency model, the prediction; the --round-to notice is printed as given; all within 80 columns."""
    clock_ = Clock()
    monkeypatch.setattr(view_module.time, "monotonic", clock_)
    out = io.StringIO()
    view = SynthView(Console(file=out, width=80, force_terminal=False), "accuracy")
    view("notice", "--round-to 8: 1 layer group(s) have fewer channels than that and keep their own step and "
                   "minimum: conv1 (6)")
    view("latency_profile", {"out": "runs/x/latency-model.json", "runtime": "onnxruntime", "threads": 1})
    for done in range(41):
        view("latency_profile_progress", {"done": done, "total": 40, "what": "layer conv"})
    assert view.phase == "profiling latency 40/40"
    view("candidate", dataclasses.replace(candidate("0:0", 0.6, 0.6), latency=0.00125, predicted_latency=0.0012))
    text = out.getvalue()
    lines = text.rstrip("\n").split("\n")
    assert all(len(line) <= 80 for line in lines)
    assert "no --latency-model given, profiling this machine first (onnxruntime, 1 thread)" in text.replace("\n  ", " ")
    assert text.count("profiling latency: ") == 11 and "40/40 measurements (100%)" in text
    assert "1.250 ms (predicted 1.200)" in text and "conv1 (6)" in text.replace("\n  ", " ")
