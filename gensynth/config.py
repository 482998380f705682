"""The settings of a synthesis run (SynthConfig, journaled with it), and which of them a resumed run may change."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compiler.diagnostics import NetError
from gensynth.generator import ALLOCATION_SPREAD, FACTORIZE, STRIDE
from gensynth.inquisitor import Budget
from gensynth.journal import JOURNAL, REPAIR, Journal
from gensynth.update import UPDATE_RATE


@dataclass
class SynthConfig:
    """A synthesis run; saved in the journal so --resume needs nothing else."""

    data: str
    requirements: list[str]
    cycles: int = 4
    per_cycle: int = 6
    budget: Budget = field(default_factory=Budget)
    workers: int = 1
    utility: str = "netscore"
    seed: int = 0
    prototype_epochs: int = 8
    prototype_lr: float | None = None  # None: the optimizer's standard rate
    prototype_weights: str | None = None
    finalists: int = 2
    min_fraction: float = 0.1
    data_options: dict = field(default_factory=dict)
    allocation_spread: float = ALLOCATION_SPREAD  # per-sample sd of each group's log width factor (θG's exploration)
    factorize: float = FACTORIZE  # θG's initial probability of factorizing each factorizable conv (0: never)
    stride: float = STRIDE  # θG's initial probability of giving each stridable conv stride 2 (0: never)
    export: str | None = None  # also export the FermiNets: "onnx", or "onnx-int8" (float and int8 side by side)
    # False: θG stays at its initial state, so every cycle draws from the same distribution: random search in the
    # generator's space, with everything else (candidates, seeds, projection, scoring, finalists) unchanged
    learn: bool = True
    # free channel groups may grow to this many times the prototype's channels (compiler.rewrite.widening); 1: narrow only
    widen: float = 1.0
    # > 1: from the second cycle on, G draws this many samples per candidate and a predictor fitted on the journal
    # (gensynth.predictor) keeps those it expects to improve most; finalists are then the best predicted candidates
    screen: int = 1
    # θG's step per cycle toward the utility-weighted candidates (0-1), and the softmax temperature of that weighting
    # as a share of the candidates' utility spread (below 1: the best candidates weigh more)
    update_rate: float = UPDATE_RATE
    update_temperature: float = 1.0
    round_to: int = 1  # widths at multiples of this where a group has that many channels
    latency_model: str | None = None  # a latency model file (netdsl profile); with a latency requirement and none,
    # the run profiles this machine first

    def to_json(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Raise NetError on a setting out of range, before any work (named as its `netdsl synth` flag)."""
        b = self.budget
        counts = {"cycles": self.cycles, "per_cycle": self.per_cycle, "workers": self.workers,
                  "prototype_epochs": self.prototype_epochs, "images": b.images, "finalists": self.finalists,
                  "final_epochs": b.final_epochs, "screen": self.screen}
        for name, value in counts.items():
            if value < 1:
                raise NetError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.export is not None and self.export not in ("onnx", "onnx-int8"):
            raise NetError(f"--export must be onnx or onnx-int8, got {self.export!r}")
        if not 0 < self.min_fraction <= 1:
            raise NetError(f"--min-fraction must be in (0, 1], got {self.min_fraction}")
        for name, value in (("distill", b.distill), ("factorize", self.factorize), ("stride", self.stride)):
            if not 0 <= value <= 1:
                raise NetError(f"--{name} must be in [0, 1], got {value}")
        if not 1 <= self.widen <= 16:
            raise NetError(f"--widen must be in [1, 16], got {self.widen}")
        for name, value in (("prototype_lr", self.prototype_lr), ("lr", b.lr), ("final_lr", b.final_lr),
                            ("batch_size", b.batch_size)):
            if value is not None and value <= 0:
                raise NetError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if not 0 < self.update_rate <= 1:
            raise NetError(f"--update-rate must be in (0, 1], got {self.update_rate}")
        if not self.update_temperature > 0:
            raise NetError(f"--update-temperature must be positive, got {self.update_temperature}")
        if self.round_to < 1:
            raise NetError(f"--round-to must be at least 1, got {self.round_to}")
        if b.warmup_epochs < 0:
            raise NetError(f"--warmup-epochs must be at least 0, got {b.warmup_epochs}")
        if b.latency_threads < 1:
            raise NetError(f"--threads must be at least 1, got {b.latency_threads}")

    @classmethod
    def from_json(cls, data: dict, where: str = "the journal") -> SynthConfig:
        try:
            data = dict(data)
            data["budget"] = Budget(**{k: v for k, v in data["budget"].items() if k != "latency_runs"})  # pre-latency
            data.setdefault("stride", 0.0)  # journals from before --stride never strided
            data.setdefault("export", None)
            return cls(**data)
        except (KeyError, TypeError, ValueError) as err:
            raise NetError(f"{where} is damaged: its run settings cannot be read ({type(err).__name__}: {err})",
                           notes=[REPAIR]) from None


# The settings a resumed run may change: where and how fast it computes, never what it computes.
RESUMABLE = ("workers", "budget.device")


def flat_settings(cfg: SynthConfig) -> dict[str, object]:
    """Every setting by name, the budget's as budget.NAME."""
    out = {k: v for k, v in cfg.to_json().items() if k != "budget"}
    out.update({f"budget.{k}": v for k, v in asdict(cfg.budget).items()})
    return out


def stored_config(out: Path) -> SynthConfig:
    """The settings journaled in a run folder (validated); NetError when there is nothing to resume."""
    path = Path(out) / JOURNAL
    if not path.exists():
        raise NetError(f"nothing to resume in {out}: it has no {JOURNAL}")
    journal = Journal(path)
    try:
        return SynthConfig.from_json(journal.get_meta("config"), str(path))
    finally:
        journal.close()


def run_config(out: Path, cfg: SynthConfig, explicit: set[str] | None = None) -> tuple[SynthConfig, list[str]]:
    """The settings a resumed run continues with, and what that means in words: its own, as journaled, except the
    RESUMABLE ones, which follow `cfg`. A setting in `explicit` (given on the command line) that differs from the
    run's is a NetError: the run keeps its settings, and ignoring the flag silently would mislead."""
    stored = stored_config(out)
    mine, theirs = flat_settings(stored), flat_settings(cfg)
    changed = {k for k in mine if mine[k] != theirs.get(k)}
    refused = sorted(k for k in changed - set(RESUMABLE) if explicit is None or k in explicit)
    if refused:
        raise NetError(f"--resume continues {out} with its own settings, and {', '.join(refused)} differ from them",
                       notes=[f"{k}: the run has {mine[k]!r}, this command gives {theirs.get(k)!r}" for k in refused]
                       + [f"leave these out to resume, or start a new run with another --out; only "
                          f"{' and '.join(RESUMABLE)} may change on resume"])
    budget = dataclasses.replace(stored.budget, device=cfg.budget.device)
    resumed = dataclasses.replace(stored, workers=cfg.workers, budget=budget)
    notes = [f"{k}: {theirs[k]!r} (the run had {mine[k]!r})" for k in sorted(changed & set(RESUMABLE))]
    return resumed, notes


