"""A trained network exported as float ONNX and (optionally) int8 ONNX, both scored on the test split from the
exported files and timed side by side with onnxruntime at batch 1: what `netdsl synth --export onnx-int8` puts in
report.md and bench/deploy.py measures."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from compiler.diagnostics import NetWarning
from gensynth.deploy.exported import evaluate_exported
from gensynth.deploy.package import DEFAULT_CALIBRATION, export_model
from gensynth.latency.measure import Latency, file_runner, measure
from gensynth.tasks.metrics import primary_metric

EXPORTS = ("onnx", "onnx-int8")  # what `netdsl synth --export` can write for its FermiNets


@dataclass(frozen=True)
class Exported:
    """One network's exported files with their test scores (the task's primary metric) and batch-1 latencies."""

    name: str
    metric: str
    float_path: Path
    float_score: float
    float_latency: Latency
    int8_path: Path | None = None
    int8_score: float | None = None
    int8_latency: Latency | None = None
    float_ops: tuple[str, ...] = ()  # op types the int8 file keeps float

    def to_json(self) -> dict:
        return {"name": self.name, "metric": self.metric, "float": str(self.float_path), "float_score": self.float_score,
                "float_latency": self.float_latency.median,
                "int8": str(self.int8_path) if self.int8_path else None, "int8_score": self.int8_score,
                "int8_latency": self.int8_latency.median if self.int8_latency else None,
                "float_ops": list(self.float_ops)}


def export_and_compare(name: str, graph: nx.DiGraph, weights: str | Path, stem: str | Path, data: str, *,
                       int8: bool = True, calibration: int = DEFAULT_CALIBRATION, threads: int = 1,
                       limit_test: int | None = None) -> Exported:
    """Write `stem`.onnx (and `stem`.int8.onnx), score each file on `data`'s test split with onnxruntime and time
    them on `threads` threads side by side with the one latency measurement (gensynth.latency.measure)."""
    stem = Path(stem)
    float_path, int8_path = stem.with_name(stem.name + ".onnx"), stem.with_name(stem.name + ".int8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NetWarning)  # weights written by this run carry their metadata
        export_model(graph, "onnx", float_path, weights=weights, data=data)
        shipped = export_model(graph, "onnx", int8_path, weights=weights, data=data, int8=True,
                               calibration=calibration) if int8 else None
    paths = [float_path] + ([int8_path] if int8 else [])
    scores = [evaluate_exported(p, data, limit_test=limit_test, threads=threads).result for p in paths]
    latencies = measure([file_runner(p, threads) for p in paths])
    metric = primary_metric(scores[0].task)
    return Exported(name, metric, float_path, scores[0].score, latencies[0],
                    int8_path if int8 else None, scores[1].score if int8 else None, latencies[1] if int8 else None,
                    tuple(shipped.int8.float_ops) if shipped else ())
