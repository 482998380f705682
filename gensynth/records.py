"""Typed records of a synthesis run (as Optuna's FrozenTrial): the decisions that made a network, and everything
the inquisitor measured of it. The journal stores a record as one flat JSON object (`val_acc`, `macs`, ...);
`from_json` also reads the records of journals written before tasks, scales or rewrites existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gensynth.tasks.metrics import METRICS

PROTOTYPE = "prototype"  # the key of the prototype's record
FINAL_PREFIX = "final:"  # the keys of fully trained finalists: final:<arch>


@dataclass(frozen=True)
class Decisions:
    """What the generator decided for one network (gensynth.generator.Sample), as the update reads it back."""

    widths: dict[str, int] = field(default_factory=dict)  # free group id -> channels kept
    dropped: tuple[str, ...] = ()  # skipped residual blocks
    picks: dict[str, int] = field(default_factory=dict)  # decision id -> option index
    scales: dict[str, float] = field(default_factory=dict)  # group id -> log width factor drawn
    factorized: tuple[str, ...] = ()  # convs rewritten as depthwise + 1 x 1
    strided: tuple[str, ...] = ()  # convs given stride 2

    def to_json(self) -> dict:
        return {"widths": dict(self.widths), "dropped": list(self.dropped), "picks": dict(self.picks),
                "scales": dict(self.scales), "factorized": list(self.factorized), "strided": list(self.strided)}

    @classmethod
    def from_json(cls, data: dict | None) -> Decisions:
        """Decisions from JSON; what an older journal lacks is the default (nothing scaled, factorized, strided)."""
        data = data or {}
        return cls(widths=dict(data.get("widths", {})), dropped=tuple(data.get("dropped", ())),
                   picks=dict(data.get("picks", {})), scales=dict(data.get("scales", {})),
                   factorized=tuple(data.get("factorized", ())), strided=tuple(data.get("strided", ())))


# Fields written as they are (in this order, after the split metrics); the rest of a record's JSON is derived.
_COST_FIELDS = ("macs", "params", "memory", "latency", "latency_fast", "latency_slow", "predicted_latency")
_TAIL_FIELDS = ("netscore", "density", "utility", "meets", "missed", "violation", "wall_s", "attempts")


@dataclass(frozen=True)
class Candidate:
    """One evaluated network: the prototype, a search candidate (cycle >= 0) or a fully trained finalist.

    `val` and `test` hold the task's metrics (gensynth.tasks.metrics) on the validation and test split; only
    finalists and the prototype are scored on test. `score` is the primary metric on validation, what
    requirements, utilities and the report call the network's accuracy.
    """

    key: str  # "prototype", "cycle:index", or "final:<arch>"
    cycle: int  # -1 for the prototype
    seed: int
    arch: str  # architecture hash
    decisions: Decisions = field(default_factory=Decisions)
    final: bool = False
    task: str = "classify"
    metric: str = "acc"  # the task's primary metric
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    macs: int = 0
    params: int = 0
    memory: int = 0  # peak activation bytes
    latency: float = 0.0  # seconds, batch 1: the median (gensynth.latency.measure)
    latency_fast: float | None = None  # its spread: 10th and 90th percentiles of single runs
    latency_slow: float | None = None
    predicted_latency: float | None = None  # by the run's latency model, when synthesis had one
    netscore: float = 0.0
    density: float = 0.0  # information density
    utility: float = 0.0
    meets: bool = True  # every requirement holds (decided on validation)
    missed: tuple[str, ...] = ()  # the requirements it misses
    violation: float = 0.0  # their summed relative violation
    wall_s: float = 0.0
    attempts: int = 1  # evaluations started: more than 1 when a worker died under it (gensynth.executor)
    importance: dict[str, list[float]] = field(default_factory=dict)  # search candidates: group -> per channel
    name: str | None = None  # finalists: fermi-N

    @property
    def score(self) -> float:
        """The primary metric on validation."""
        return self.val[self.metric]

    @property
    def test_score(self) -> float | None:
        """The primary metric on test (finalists and the prototype), else None."""
        return self.test.get(self.metric)

    @property
    def searched(self) -> bool:
        """A candidate of the search (not the prototype, not a finalist)."""
        return self.cycle >= 0 and not self.final

    def value(self, metric: str) -> float | None:
        """The value of a requirement metric (task metrics on validation), None where it was not measured."""
        if METRICS[metric].per_task:
            return self.val.get(metric)
        return getattr(self, metric)

    def with_verdict(self, verdict) -> Candidate:
        """This record with a requirements verdict (gensynth.requirements.judge)."""
        return replace(self, meets=verdict.meets, missed=tuple(verdict.missed), violation=verdict.violation)

    def summary(self) -> dict:
        """What a person or script compares networks by: metrics, cost and whether it meets the requirements."""
        keep = ("name", "arch", "task", "metric", "score", "test_score", "macs", "params", "memory", "latency",
                "latency_fast", "latency_slow", "predicted_latency", "netscore", "density", "meets", "missed")
        return {k: v for k, v in self.to_json().items() if k in keep or k.startswith(("val_", "test_"))}

    def to_json(self) -> dict:
        """The flat JSON object the journal stores."""
        out = {"key": self.key, "cycle": self.cycle, "seed": self.seed, "arch": self.arch,
               "decisions": self.decisions.to_json(), "final": self.final, "task": self.task,
               "metric": self.metric, "score": self.score, **{f"val_{m}": v for m, v in self.val.items()},
               "device": self.device}
        if self.test:
            out.update({f"test_{m}": v for m, v in self.test.items()}, test_score=self.test_score)
        if self.importance:
            out["importance"] = self.importance
        out.update({k: getattr(self, k) for k in _COST_FIELDS})
        out["accuracy"] = self.score  # read by the utilities (gensynth.utility) and by older tools
        out.update({k: getattr(self, k) for k in _TAIL_FIELDS})
        out["missed"] = list(self.missed)
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_json(cls, data: dict) -> Candidate:
        """A record from the journal's JSON, including those written before tasks existed (val_acc only)."""
        splits = {"val": {}, "test": {}}
        for k, v in data.items():
            split, _, metric = k.partition("_")
            if split in splits and metric in METRICS and METRICS[metric].per_task:
                splits[split][metric] = v
        metric = data.get("metric", "acc")
        if "score" in data:
            splits["val"].setdefault(metric, data["score"])
        return cls(key=data["key"], cycle=data["cycle"], seed=data["seed"], arch=data["arch"],
                   decisions=Decisions.from_json(data.get("decisions")), final=bool(data.get("final", False)),
                   task=data.get("task", "classify"), metric=metric, val=splits["val"], test=splits["test"],
                   device=data.get("device", "cpu"), importance=data.get("importance", {}),
                   missed=tuple(data.get("missed", ())), name=data.get("name"),
                   **{k: data[k] for k in (*_COST_FIELDS, *_TAIL_FIELDS) if k in data and k != "missed"})


@dataclass(frozen=True)
class Failure:
    """A search candidate that could not be evaluated: it raised (out of memory, say), or its worker died more
    often than the executor retries. Journaled beside the Candidates, with "failed": true, and never scored."""

    key: str
    cycle: int
    seed: int
    arch: str
    decisions: Decisions = field(default_factory=Decisions)
    error: str = ""  # the exception, or why its last attempt was lost
    attempts: int = 1

    def to_json(self) -> dict:
        return {"key": self.key, "cycle": self.cycle, "seed": self.seed, "arch": self.arch,
                "decisions": self.decisions.to_json(), "failed": True, "error": self.error, "attempts": self.attempts}

    @classmethod
    def from_json(cls, data: dict) -> Failure:
        return cls(key=data["key"], cycle=data["cycle"], seed=data["seed"], arch=data["arch"],
                   decisions=Decisions.from_json(data.get("decisions")), error=data.get("error", ""),
                   attempts=data.get("attempts", 1))
