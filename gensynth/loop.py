"""The synthesis loop: train the prototype, then cycles of (sample seeds, inquire, update θG), then final training.

Every evaluated candidate is journaled at once, and θG after every cycle, so `resume` continues a killed run
without redoing or losing a finished candidate.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compiler.diagnostics import NetError
from compiler.printer import print_network
from gensynth.executor import Executor, local_executor
from gensynth.generator import (
    ALLOCATION_SPREAD,
    FACTORIZE,
    STRIDE,
    GeneratorState,
    Sample,
    initial_state,
    magnitude_prior,
    prototype_hash,
    sample,
)
from gensynth.inquisitor import Budget, Task, candidate_task, inquire
from gensynth.journal import Journal
from gensynth.records import FINAL_PREFIX, PROTOTYPE, Candidate, Failure
from gensynth.requirements import parse_requirement, parse_requirements
from gensynth.space import SearchSpace, search_space, smallest_reachable
from gensynth.update import update_generator

JOURNAL = "journal.sqlite"


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
    prototype_weights: str | None = None
    finalists: int = 2
    min_fraction: float = 0.1
    data_options: dict = field(default_factory=dict)
    allocation_spread: float = ALLOCATION_SPREAD  # per-sample sd of each group's log width factor (θG's exploration)
    factorize: float = FACTORIZE  # θG's initial probability of factorizing each factorizable conv (0: never)
    stride: float = STRIDE  # θG's initial probability of giving each stridable conv stride 2 (0: never)
    export: str | None = None  # also export the FermiNets: "onnx", or "onnx-int8" (float and int8 side by side)

    def to_json(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Raise NetError on a setting out of range, before any work (named as its `netdsl synth` flag)."""
        b = self.budget
        counts = {"cycles": self.cycles, "per_cycle": self.per_cycle, "workers": self.workers,
                  "prototype_epochs": self.prototype_epochs, "images": b.images, "finalists": self.finalists,
                  "final_epochs": b.final_epochs}
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

    @classmethod
    def from_json(cls, data: dict) -> SynthConfig:
        data = dict(data)
        data["budget"] = Budget(**data["budget"])
        data.setdefault("stride", 0.0)  # journals from before --stride never strided
        data.setdefault("export", None)
        return cls(**data)


@dataclass(frozen=True)
class WorkPlan:
    """A run's work, counted in training images seen, per phase, and how much a resumed run has done already:
    what a progress display estimates the time remaining from."""

    prototype: int  # images the prototype's training sees (0 when --weights gives it)
    prototype_done: bool
    per_candidate: int  # fine-tune images of one search candidate
    candidates: int
    candidates_done: int
    per_final: int  # images one finalist's training sees
    finals: int
    finals_done: int

    @property
    def total(self) -> int:
        return self.prototype + self.per_candidate * self.candidates + self.per_final * self.finals

    @property
    def done(self) -> int:
        return (self.prototype if self.prototype_done else 0) + self.per_candidate * self.candidates_done + \
            self.per_final * self.finals_done


def candidate_seed(run_seed: int, cycle: int, index: int) -> int:
    """A seed per candidate, derived from its position alone (never from a shared stream)."""
    digest = hashlib.sha256(f"{run_seed}:{cycle}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def pareto_front(records: list[Candidate]) -> list[Candidate]:
    """Records not dominated by another (fewer or equal MACs and higher or equal score, one strictly)."""
    front = []
    for r in sorted(records, key=lambda r: (r.macs, -r.score)):
        if not front or r.score > front[-1].score:
            front.append(r)
    return front


def make_task(key: str, cycle: int, s: Sample, space: SearchSpace, cfg: SynthConfig, weights: Path,
              final: bool = False, save_to: str | None = None) -> Task:
    """The inquisitor's task for a sample of this run."""
    return candidate_task(key, cycle, s, space, cfg.data, weights, budget=cfg.budget, requirements=cfg.requirements,
                          utility=cfg.utility, data_options=cfg.data_options, final=final, save_to=save_to)


def run_config(out: Path, cfg: SynthConfig) -> SynthConfig:
    """The settings a resumed run continues with: its own, as journaled; only the worker count may change (and
    the executor, which is not a setting of the run)."""
    if not (Path(out) / JOURNAL).exists():
        return cfg
    journal = Journal(Path(out) / JOURNAL)
    try:
        stored = journal.get_meta("config")
    finally:
        journal.close()
    return dataclasses.replace(SynthConfig.from_json(stored), workers=cfg.workers) if stored else cfg


class Run:
    """One run directory: journal, generator.json, prototype weights, FermiNets, report."""

    def __init__(self, out: Path, prototype, cfg: SynthConfig, resume: bool,
                 on_event: Callable[[str, object], None] | None = None, executor: Executor | None = None):
        self.out = Path(out)
        self.cfg = cfg
        self.executor = executor or local_executor(cfg.workers, cfg.budget.device)
        self.on_event = on_event or (lambda kind, payload: None)
        self.reqs = parse_requirements(cfg.requirements)
        self.space = search_space(prototype)
        self.graphs: dict = {}  # FermiNet name -> its IR
        self.text = print_network(prototype)
        exists = (self.out / JOURNAL).exists()
        if exists and not resume:
            raise NetError(f"{self.out} already holds a synthesis run; continue it with --resume {self.out}, "
                           "or choose another --out")
        if resume and not exists:
            raise NetError(f"nothing to resume in {self.out}: it has no {JOURNAL}")
        self.out.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.out / JOURNAL)
        stored = self.journal.get_meta("prototype_hash")
        if stored is not None and stored != prototype_hash(self.text):
            raise NetError(f"{self.out} holds a run of another prototype ({self.journal.get_meta('network')}); "
                           "resume it with the same prototype, or choose another --out")
        if stored is None:
            self.journal.set_meta("prototype_hash", prototype_hash(self.text))
            self.journal.set_meta("prototype", self.text)
            self.journal.set_meta("network", prototype.graph["name"])
            self.journal.set_meta("config", cfg.to_json())

    def check_data(self):
        """The prototype must fit the data's task, and every trained requirement must be a metric of that task;
        the data, once checked."""
        from gensynth.data import load_dataset
        from gensynth.tasks.metrics import METRICS, task_metrics
        from gensynth.tasks.objectives import TASK_WORDS, check_network_fits

        data = load_dataset(self.cfg.data, **self.cfg.data_options)
        check_network_fits(self.space.prototype, data)
        # output k of every network of this run is class k: the names go with the run (one a line, in order)
        (self.out / "classes.txt").write_text("".join(f"{name}\n" for name in data.class_names))
        for r in self.reqs:
            if METRICS[r.metric].per_task and data.task not in METRICS[r.metric].tasks:
                raise NetError(f"requirement '{r.text}' asks for {r.metric}, which {TASK_WORDS[data.task]} on "
                               f"{data.name} does not measure", notes=[
                                   f"{TASK_WORDS[data.task]} measures: {', '.join(task_metrics(data.task))}"])
        if self.cfg.budget.distill > 0 and data.task != "classify":
            raise NetError(f"distillation is for classification only; {data.name} is {TASK_WORDS[data.task]}",
                           notes=["leave out --distill"])
        return data

    def plan(self, train_images: int) -> WorkPlan:
        """The run's work in training images, and what the journal says is done."""
        cfg = self.cfg
        prototype = 0 if cfg.prototype_weights else cfg.prototype_epochs * train_images
        finals = [r for r in self.journal.candidates() if r.key.startswith(FINAL_PREFIX)]
        return WorkPlan(prototype=prototype, prototype_done=self.journal.candidate(PROTOTYPE) is not None,
                        per_candidate=cfg.budget.images * cfg.budget.epochs,
                        candidates=cfg.cycles * cfg.per_cycle,
                        candidates_done=min(finished_so_far(self.journal), cfg.cycles * cfg.per_cycle),
                        per_final=cfg.budget.final_epochs * train_images, finals=cfg.finalists,
                        finals_done=min(len(finals), cfg.finalists))

    def check_feasible(self) -> dict:
        """Structural requirements the smallest reachable network still breaks are an error before any training."""
        smallest = smallest_reachable(self.space, self.cfg.min_fraction, factorize=self.cfg.factorize > 0,
                                      stride=self.cfg.stride > 0)
        for r in self.reqs:
            if r.metric in smallest and not r.holds(smallest[r.metric]):
                raise NetError(f"requirement '{r.text}' cannot be met: the smallest network the generator can "
                               f"reach from this prototype has {r.metric} = {smallest[r.metric]:,.0f}",
                               notes=["relax the requirement, lower --min-fraction, or start from a smaller prototype"])
        return smallest

    def prototype_weights(self) -> tuple[Path, Candidate]:
        """Train the prototype (or take --weights) once; its record is journaled."""
        path = self.out / "prototype.safetensors"
        record = self.journal.candidate(PROTOTYPE)
        if record is not None and path.exists():
            return path, record
        space, cfg = self.space, self.cfg
        full = Sample(seed=cfg.seed, graph=space.prototype, kept={}, widths={}, dropped=(), picks={}, macs=0,
                      params=0, memory=0, meets=True, arch="")
        from compiler.backend.lower import lower_to_torch
        from compiler.backend.weights import load_weights_file, save_weights
        from gensynth.data import load_dataset
        from gensynth.training.preprocessing import metadata_for

        data = load_dataset(cfg.data, **cfg.data_options)
        if cfg.prototype_weights:
            model = lower_to_torch(space.prototype)
            load_weights_file(model, cfg.prototype_weights)
        else:
            from gensynth.training.train import TrainConfig, train

            self.on_event("prototype_training", {"epochs": cfg.prototype_epochs})
            import torch

            torch.manual_seed(cfg.seed)  # initial weights from the run's seed, not from what ran before
            model = lower_to_torch(space.prototype)
            no_test = dataclasses.replace(data, test_x=data.test_x[:0], test_y=data.test_y[:0])
            train(model, no_test, TrainConfig(epochs=cfg.prototype_epochs, seed=cfg.seed, device=cfg.budget.device),
                  on_epoch=lambda stats: self.on_event("prototype_epoch", {"stats": stats}))
        save_weights(model, path, metadata_for(space.prototype, data))
        # measured exactly as the finalists are, with its own weights
        task = make_task(PROTOTYPE, -1, full, space, cfg, path)
        record = inquire_without_training(task)
        self.journal.add_candidate(record)
        return path, record

    def generator(self) -> GeneratorState:
        latest = self.journal.latest_generator()
        if latest is not None:
            return GeneratorState.from_json(latest[1], f"{self.out / JOURNAL} (generator)")
        from safetensors.numpy import load_file

        prior = magnitude_prior(self.space, load_file(str(self.out / "prototype.safetensors")))
        state = initial_state(self.space, self.reqs, self.cfg.utility, self.cfg.min_fraction, prior,
                              spread=self.cfg.allocation_spread, factorize=self.cfg.factorize,
                              stride=self.cfg.stride)
        state.weights = "prototype.safetensors"
        self.journal.save_generator(0, state.to_json())
        return state

    def search(self, state: GeneratorState, weights: Path) -> GeneratorState:
        cfg = self.cfg
        while state.cycle < cfg.cycles:
            cycle = state.cycle
            done = {r.key for r in self.journal.candidates(cycle)}  # a failure of this cycle is tried again
            tasks = []
            for i in range(cfg.per_cycle):
                key = f"{cycle}:{i}"
                if key in done:
                    continue
                s = sample(state, self.space, candidate_seed(cfg.seed, cycle, i), self.reqs)
                tasks.append(make_task(key, cycle, s, self.space, cfg, weights))
            self.on_event("cycle_start", {"cycle": cycle, "cycles": cfg.cycles, "todo": len(tasks), "done": len(done)})

            def finished(task: Task, record: Candidate | Failure) -> None:
                self.journal.add_candidate(record)
                self.on_event("candidate", record)

            def retried(task: Task, reason: str, attempt: int) -> None:
                self.on_event("candidate_retry", {"key": task.key, "reason": reason, "attempt": attempt})

            self.executor.run(tasks, finished, retried)
            # in index order, whatever order they finished in, so that θG does not depend on the executor
            records = sorted(self.journal.candidates(cycle), key=lambda r: int(r.key.split(":")[1]))
            if not records:
                failures = self.journal.failures(cycle)
                raise NetError(f"every candidate of cycle {cycle + 1} failed; the first: {failures[0].error}",
                               notes=[f"fix the cause, then continue with --resume {self.out}"])
            state = update_generator(state, self.space, records, self.reqs)
            self.journal.save_generator(state.cycle, state.to_json())
            state.save(self.out / "generator.json")
            self.on_event("cycle_end", {"cycle": cycle, "records": records, "state": state})
        state.save(self.out / "generator.json")
        return state

    def finals(self, state: GeneratorState, weights: Path) -> list[Candidate]:
        """Fully train the best distinct candidates (by utility among those meeting the structural requirements)."""
        cfg = self.cfg
        searched = self.journal.searched()
        structural = [r for r in searched if not any(parse_requirement(m).stage != "trained" for m in r.missed)]
        pool = structural or searched
        chosen, seen = [], set()
        for r in sorted(pool, key=lambda r: (-r.utility, r.cycle, r.key)):
            if r.arch not in seen:
                seen.add(r.arch)
                chosen.append(r)
            if len(chosen) == cfg.finalists:
                break
        results = []
        for rank, r in enumerate(chosen):
            key = f"{FINAL_PREFIX}{r.arch}"
            name = f"fermi-{rank + 1}"
            # θG as it was when the candidate was sampled, so its seed regenerates the same network
            s = sample(GeneratorState.from_json(self.journal.generator_at(r.cycle)), self.space, r.seed, self.reqs)
            self.graphs[name] = renamed(s.graph, name)  # its exports are named as its .net file
            done = self.journal.candidate(key)
            if done is not None:
                results.append(done)
                continue
            task = make_task(key, r.cycle, s, self.space, cfg, weights, final=True,
                             save_to=str(self.out / f"{name}.safetensors"))
            self.on_event("final_start", {"name": name, "arch": r.arch})
            record = dataclasses.replace(inquire(task), name=name)
            (self.out / f"{name}.net").write_text(print_network(self.graphs[name]))
            self.journal.add_candidate(record)
            self.on_event("final", record)
            results.append(record)
        return results

    def export(self, finals: list[Candidate]) -> list:
        """Each FermiNet as fermi-N.onnx (and fermi-N.int8.onnx), scored on test from the files and timed."""
        from gensynth.deploy.compare import export_and_compare

        shipped = []
        for r in finals:
            self.on_event("export_start", {"name": r.name, "export": self.cfg.export})
            result = export_and_compare(r.name, self.graphs[r.name], self.out / f"{r.name}.safetensors",
                                        self.out / r.name, self.cfg.data, int8=self.cfg.export == "onnx-int8")
            self.on_event("export", result)
            shipped.append(result)
        return shipped


def renamed(g, name: str):
    """The network with a new name (for fermi-N.net files)."""
    from compiler.ir import copy_graph

    out = copy_graph(g)
    out.graph["name"] = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
    return out


def inquire_without_training(task: Task) -> Candidate:
    """Measure a network with the weights it has (the prototype): accuracy, cost, latency, utility."""
    return inquire(dataclasses.replace(task, final=True, budget=dataclasses.replace(task.budget, final_epochs=0)))


def finished_so_far(journal: Journal) -> int:
    """Search candidates that will not run again: those evaluated, and the failures of cycles θG has moved past."""
    latest = journal.latest_generator()
    moved_past = latest[0] if latest else 0
    return len(journal.searched()) + sum(1 for f in journal.failures() if f.cycle < moved_past)


@dataclass
class SynthResult:
    """A finished run: its directory, the records of the prototype, finalists and search, θG, and with --export the
    exported FermiNets (gensynth.deploy.compare.Exported)."""

    out: Path
    prototype: Candidate
    finals: list[Candidate]
    candidates: list[Candidate]
    front: list[Candidate]
    state: GeneratorState
    report: Path
    failed: list[Failure] = field(default_factory=list)  # search candidates that could not be evaluated
    executor: str = ""  # where this session evaluated candidates, in words
    exported: list = field(default_factory=list)


def synthesize(prototype, cfg: SynthConfig, out: Path, resume: bool = False,
               on_event: Callable[[str, object], None] | None = None, executor: Executor | None = None) -> SynthResult:
    """Run (or continue) generative synthesis from a prototype IR; everything lands in `out`.

    A resumed run continues with its own journaled settings (only `workers` may change). Candidates are evaluated
    by `executor` (default: in this process, or a local pool of cfg.workers), started before anything is written,
    so that a cluster which cannot run them is an error up front. on_event(kind, payload) hears "start"
    ({"total", "done"} search candidates, "executor" in words), "plan" (a WorkPlan), "prototype_training",
    "prototype_epoch",
    "prototype", "cycle_start", "candidate" (a Candidate, or a Failure), "candidate_retry" ({"key", "reason",
    "attempt"}), "cycle_end", "final_start", "final", and with cfg.export "export_start" and "export"
    (gensynth.deploy.compare.Exported); records come as Candidate."""
    import time

    from gensynth.report import write_report

    if resume:
        cfg = run_config(out, cfg)
    cfg.validate()
    if cfg.prototype_weights and "mean" not in cfg.data_options:
        from gensynth.training.preprocessing import normalization_options

        # the whole run sees the data as the given prototype weights were trained on it
        cfg = dataclasses.replace(cfg, data_options={
            **cfg.data_options, **normalization_options(cfg.prototype_weights, cfg.data, prototype)})
    executor = executor or local_executor(cfg.workers, cfg.budget.device)
    with executor:
        run = Run(out, prototype, cfg, resume, on_event, executor)
        where = executor.describe()
        sessions = run.journal.get_meta("executors") or []  # every session's, for the report of a resumed run
        if where not in sessions:
            sessions = [*sessions, where]
            run.journal.set_meta("executors", sessions)
        run.on_event("start", {"total": cfg.cycles * cfg.per_cycle, "executor": where,
                               "done": min(finished_so_far(run.journal), cfg.cycles * cfg.per_cycle)})
        started = run.journal.get_meta("wall_s") or 0.0
        t0 = time.perf_counter()
        try:
            data = run.check_data()
            run.on_event("plan", run.plan(len(data.train_x)))
            run.check_feasible()
            weights, proto_record = run.prototype_weights()
            run.on_event("prototype", proto_record)
            state = run.search(run.generator(), weights)
            finals = run.finals(state, weights)
            exported = run.export(finals) if cfg.export else []
            candidates, failed = run.journal.searched(), run.journal.failures()
            front = pareto_front(candidates)
            wall = started + time.perf_counter() - t0
            from compiler.cost.diff import network_diff

            diffs = {r.name: network_diff(run.space.prototype, run.graphs[r.name]) for r in finals}
            report = write_report(run.out, prototype.graph["name"], cfg.requirements, proto_record, finals,
                                  candidates, front, wall, executors=sessions, failed=failed, diffs=diffs,
                                  exported=exported)
            return SynthResult(run.out, proto_record, finals, candidates, front, state, report, failed, where,
                               exported)
        finally:
            run.journal.set_meta("wall_s", started + time.perf_counter() - t0)
            run.journal.close()


def stored_prototype(out: Path) -> str:
    """The prototype a run in `out` was started from, as the canonical .net text its journal keeps (for resuming
    without the prototype's file)."""
    path = Path(out) / JOURNAL
    if not path.exists():
        raise NetError(f"nothing to resume in {out}: it has no {JOURNAL}")
    journal = Journal(path)
    try:
        text = journal.get_meta("prototype")
    finally:
        journal.close()
    if text is None:
        raise NetError(f"{path} keeps no prototype; resume with the prototype's file: netdsl synth FILE --resume {out}")
    return text
