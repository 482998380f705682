"""Every metric netdsl measures, named once: what it is, its unit, which way is better, the tasks that report it,
how a candidate record holds it and how it is written. Requirements, records, the report and the CLI read this
table (and nothing here imports torch, so rendering and parsing stay light).

Adding a metric is one `Metric(...)` line below; a task metric also needs its task's Scorer to compute it
(gensynth/tasks/objectives.py) under the same name.
"""

from __future__ import annotations

from dataclasses import dataclass

# Unit families: the units a requirement may carry (--req "macs<=2M"), each with its factor to the base unit
# (count, bytes, seconds, fraction) in which records hold every value.
UNITS: dict[str, dict[str, float]] = {
    "count": {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "k": 1e3},
    "bytes": {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "K": 1024, "M": 1024**2, "G": 1024**3},
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6},
    "fraction": {"": 1, "%": 0.01},
    "score": {"": 1},
}
# When a metric is known: structural from the IR alone, before any training; measured needs the built network;
# trained needs a trained network and validation data.
STAGES = ("structural", "measured", "trained")


@dataclass(frozen=True)
class Metric:
    """One metric: its name in --req and in records, its words, unit, direction, stage and display format."""

    name: str  # as written in --req, in records and in metrics dicts: "acc", "macs"
    label: str  # short, for progress lines and tables: "mIoU"
    words: str  # in sentences of the report: "mean IoU"
    description: str  # what a requirement on it bounds: "validation mean IoU"
    unit: str  # a key of UNITS
    stage: str  # a member of STAGES
    higher_is_better: bool
    tasks: tuple[str, ...] = ()  # the tasks whose Scorer reports it (empty: a cost or utility metric of any task)
    scale: float = 1.0  # display: value / scale, then the suffix
    suffix: str = ""
    digits: int = 2

    @property
    def per_task(self) -> bool:
        """A task metric: measured on validation (and test) data, held per split in a record."""
        return bool(self.tasks)

    def format(self, value: float) -> str:
        """The value as the report and the CLI write it: "91.20%", "2.31 M", "1.234 ms"."""
        if self.unit == "fraction":
            return f"{value:.{self.digits}%}"
        return f"{value / self.scale:.{self.digits}f}{self.suffix}"


_ALL = (
    Metric("macs", "MACs", "MACs", "multiply-accumulates per image", "count", "structural", False,
           scale=1e6, suffix=" M"),
    Metric("params", "params", "parameters", "parameters", "count", "structural", False, scale=1e3, suffix=" K",
           digits=1),
    Metric("memory", "memory", "peak activation memory", "peak activation memory", "bytes", "structural", False,
           scale=1024, suffix=" KB", digits=1),
    Metric("latency", "latency", "latency", "median batch-1 latency on this machine's device", "time", "measured",
           False, scale=1e-3, suffix=" ms", digits=3),
    Metric("acc", "acc", "accuracy", "validation accuracy", "fraction", "trained", True, ("classify",)),
    Metric("netscore", "NetScore", "NetScore", "NetScore", "score", "trained", True, digits=1),
    Metric("miou", "mIoU", "mean IoU", "validation mean IoU", "fraction", "trained", True, ("segment",)),
    Metric("pixel_acc", "pixel acc", "pixel accuracy", "validation pixel accuracy", "fraction", "trained", True,
           ("segment",)),
    Metric("map50", "mAP@.5", "mAP@0.5", "validation mAP at IoU 0.5", "fraction", "trained", True, ("detect",)),
    Metric("map", "mAP@[.5:.95]", "mAP@[.5:.95]", "validation mAP at IoU 0.5:0.95", "fraction", "trained", True,
           ("detect",)),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def task_metrics(task: str) -> tuple[str, ...]:
    """The metrics a task's Scorer reports, the primary one first (its "accuracy" in NetScore and requirements)."""
    return tuple(m.name for m in _ALL if task in m.tasks)


def primary_metric(task: str) -> str:
    """The metric that stands for "accuracy" in utilities and requirements of this task."""
    return task_metrics(task)[0]


def label(name: str) -> str:
    """The short label of a metric, or the name itself for one this table does not know."""
    return METRICS[name].label if name in METRICS else name
