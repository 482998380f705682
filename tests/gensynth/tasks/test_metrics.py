import pytest
import torch

from gensynth.data.targets import TASKS
from gensynth.requirements import parse_requirement
from gensynth.tasks.metrics import METRICS, STAGES, UNITS, primary_metric, task_metrics
from gensynth.tasks.objectives import Objective


def test_every_metric_has_a_unit_family_and_a_stage():
    for m in METRICS.values():
        assert m.unit in UNITS and m.stage in STAGES and all(t in TASKS for t in m.tasks)
        assert m.per_task == (m.stage == "trained" and m.name != "netscore")


@pytest.mark.parametrize("task, out, y", [
    ("classify", torch.randn(6, 3), torch.randint(0, 3, (6,))),
    ("segment", torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))),
    ("detect", {"heatmap": torch.randn(2, 3, 4, 4), "boxes": torch.rand(2, 4, 4, 4)},
     torch.tensor([[[0, 1.0, 1.0, 9.0, 9.0]], [[2, 4.0, 4.0, 12.0, 12.0]]])),
])
def test_each_scorer_reports_exactly_the_registered_metrics_of_its_task(task, out, y):
    scorer = Objective(task, 3, (16, 16) if task == "detect" else (4, 4)).scorer()
    scorer.add(out, y)
    metrics, _ = scorer.result()
    assert tuple(metrics) == task_metrics(task) and primary_metric(task) == task_metrics(task)[0]


def test_every_metric_parses_in_a_requirement_with_a_unit_of_its_family():
    for m in METRICS.values():
        unit = next(u for u in UNITS[m.unit] if u) if m.unit != "score" else ""
        value = "0.5" if m.unit == "fraction" else "2"
        r = parse_requirement(f"{m.name}<={value}{unit}")
        assert r.metric == m.name and r.value == pytest.approx(float(value) * UNITS[m.unit][unit])


def test_display_formats():
    assert METRICS["acc"].format(0.9123) == "91.23%"
    assert METRICS["macs"].format(2_310_000) == "2.31 M"
    assert METRICS["params"].format(12_345) == "12.3 K"
    assert METRICS["latency"].format(0.0012345) == "1.234 ms"
