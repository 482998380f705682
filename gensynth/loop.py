"""The synthesis loop: train the prototype, then cycles of (sample seeds, inquire, update θG), then final training.

Every evaluated candidate is journaled at once, and θG after every cycle, so `resume` continues a killed run
without redoing or losing a finished candidate. The run's settings (SynthConfig, and what a resume may change)
live in gensynth.config; its folder and the files the journal must know, in gensynth.runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from compiler.diagnostics import NetError
from compiler.ir import to_dict
from compiler.printer import print_network
from gensynth.config import SynthConfig, run_config
from gensynth.executor import Executor, local_executor
from gensynth.feasibility import check_feasible, round_to_notices
from gensynth.generator import (
    GeneratorState,
    Sample,
    initial_state,
    magnitude_prior,
    prototype_hash,
    sample,
)
from gensynth.inquisitor import Task, candidate_task, inquire
from gensynth.journal import JOURNAL, Journal
from gensynth.latency.measure import setup_text
from gensynth.plan import finished_so_far, work_plan
from gensynth.predictor import by_prediction, screened_seeds
from gensynth.records import FINAL_PREFIX, PROTOTYPE, Candidate, Failure
from gensynth.requirements import parse_requirement, parse_requirements
from gensynth.runs import SYNTH_FILES, check_run_files, claim_folder, digest, journal_without_work, write_file
from gensynth.space import SearchSpace, search_space
from gensynth.update import update_generator

LATENCY_MODEL = "latency-model.json"  # the run's copy of its latency model (generator.json names it)


def candidate_seed(run_seed: int, cycle: int, index: int) -> int:
    """A seed per candidate, derived from its position alone (never from a shared stream)."""
    h = hashlib.sha256(f"{run_seed}:{cycle}:{index}".encode()).digest()
    return int.from_bytes(h[:4], "little")


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


class Run:
    """One run directory: journal, generator.json, prototype weights, FermiNets, report."""

    def __init__(self, out: Path, prototype, cfg: SynthConfig, resume: bool,
                 on_event: Callable[[str, object], None] | None = None, executor: Executor | None = None):
        """Nothing is written yet: open() claims the folder once every check has passed."""
        self.out = Path(out)
        self.cfg = cfg
        self.executor = executor or local_executor(cfg.workers, cfg.budget.device)
        self.resume = resume
        self.on_event = on_event or (lambda kind, payload: None)
        self.reqs = parse_requirements(cfg.requirements)
        self.prototype = prototype
        self.space = search_space(prototype, cfg.widen)  # over the widened prototype when cfg.widen > 1
        self.graphs: dict = {}  # FermiNet name -> its IR
        self.latency = None  # the latency model (prepare_latency)
        self.text = print_network(prototype)
        self.network = prototype.graph["name"]
        self.journal: Journal | None = None
        self.class_names: list[str] = []

    def open(self) -> None:
        """Claim the folder for a new run (a journal left by a run that did no work yet is replaced), or open and
        validate the journal of the run to resume, checked against the files beside it."""
        path = self.out / JOURNAL
        if self.resume:
            self.journal = Journal(path)
            stored = self.journal.get_meta("prototype_hash")
            if stored != prototype_hash(self.text):
                raise NetError(f"{self.out} holds a run of another prototype ({self.journal.get_meta('network')}); "
                               "resume it with the same prototype, or choose another --out")
            self.check_files()
            if not (self.out / "classes.txt").exists():  # runs from before classes.txt
                write_file(self.out / "classes.txt", "".join(f"{name}\n" for name in self.class_names))
            return
        if path.exists() and not (self.out / "prototype.safetensors").exists() and journal_without_work(path):
            for leftover in (path, path.with_name(JOURNAL + "-wal"), path.with_name(JOURNAL + "-shm")):
                leftover.unlink(missing_ok=True)
        claim_folder(self.out, SYNTH_FILES, "synthesis run",
                     hint=f"continue it with --resume {self.out}, or choose another --out")
        self.journal = Journal(path, create=True)
        # output k of every network of this run is class k: the names go with the run (one a line, in order)
        write_file(self.out / "classes.txt", "".join(f"{name}\n" for name in self.class_names))
        self.journal.set_meta("prototype_hash", prototype_hash(self.text))
        self.journal.set_meta("prototype", self.text)
        self.journal.set_meta("network", self.network)
        self.journal.set_meta("config", self.cfg.to_json())

    def check_files(self) -> None:
        """The journal must know every file the run wrote beside it (gensynth.runs.check_run_files)."""
        check_run_files(self.journal, self.out)

    def check_weights(self) -> None:
        """--weights must be readable weights that fit the prototype, before anything is written."""
        if self.cfg.prototype_weights and not self.resume:
            from compiler.backend.lower import lower_to_torch
            from compiler.backend.weights import check_weights_file

            model = lower_to_torch(self.prototype, device="meta")
            for note in check_weights_file(model, self.cfg.prototype_weights):
                self.on_event("note", note)

    def check_data(self):
        """The prototype must fit the data's task, and every trained requirement must be a metric of that task;
        the data, once checked."""
        from gensynth.data import load_dataset
        from gensynth.tasks.metrics import METRICS, task_metrics
        from gensynth.tasks.objectives import TASK_WORDS, check_network_fits

        data = load_dataset(self.cfg.data, **self.cfg.data_options)
        check_network_fits(self.space.prototype, data)
        self.class_names = list(data.class_names)  # written to classes.txt once the folder is claimed
        if not self.cfg.prototype_weights:
            from gensynth.training.train import TrainConfig

            TrainConfig(device=self.cfg.budget.device).check_fits(self.prototype, "training the prototype")
        for r in self.reqs:
            if METRICS[r.metric].per_task and data.task not in METRICS[r.metric].tasks:
                raise NetError(f"requirement '{r.text}' asks for {r.metric}, which {TASK_WORDS[data.task]} on "
                               f"{data.name} does not measure", notes=[
                                   f"{TASK_WORDS[data.task]} measures: {', '.join(task_metrics(data.task))}"])
        if self.cfg.budget.distill > 0 and data.task != "classify":
            raise NetError(f"distillation is for classification only; {data.name} is {TASK_WORDS[data.task]}",
                           notes=["leave out --distill"])
        return data

    def prepare_latency(self) -> None:
        """The run's latency model (gensynth.latency.profile.model_for_run), when it has or needs one."""
        from gensynth.latency.profile import ProfileOptions, model_for_run

        cfg, b = self.cfg, self.cfg.budget
        options = ProfileOptions(runtime=b.latency_runtime, threads=b.latency_threads, clock=b.latency_clock,
                                 min_fraction=cfg.min_fraction, stride=cfg.stride > 0, factorize=cfg.factorize > 0,
                                 seed=cfg.seed)
        self.latency = model_for_run(self.space.prototype, self.out / LATENCY_MODEL, cfg.latency_model,
                                     any(r.metric == "latency" for r in self.reqs), options, self.on_event)

    def prototype_weights(self) -> tuple[Path, Candidate]:
        """Train the prototype (or take --weights) once; its record is journaled. Weights this run saved are never
        trained again: a run killed while measuring them measures them again."""
        path = self.out / "prototype.safetensors"
        record = self.journal.candidate(PROTOTYPE)
        if path.exists() and self.journal.get_meta("prototype_weights") is None:
            self.journal.set_meta("prototype_weights", digest(path))  # journals from before the mark
        if record is not None and path.exists():
            return path, record
        if path.exists():
            return path, self._measure_prototype(path)
        cfg = self.cfg
        from compiler.backend.lower import lower_to_torch
        from compiler.backend.weights import load_weights_file, save_weights
        from gensynth.data import load_dataset
        from gensynth.training.preprocessing import metadata_for

        data = load_dataset(cfg.data, **cfg.data_options)
        if cfg.prototype_weights:
            model = lower_to_torch(self.prototype)
            load_weights_file(model, cfg.prototype_weights)
        else:
            from gensynth.training.train import TrainConfig, train

            self.on_event("prototype_training", {"epochs": cfg.prototype_epochs})
            import torch

            torch.manual_seed(cfg.seed)  # initial weights from the run's seed, not from what ran before
            model = lower_to_torch(self.prototype)
            no_test = dataclasses.replace(data, test_x=data.test_x[:0], test_y=data.test_y[:0])
            recipe = TrainConfig(epochs=cfg.prototype_epochs, seed=cfg.seed, device=cfg.budget.device,
                                 lr=cfg.prototype_lr, optimizer=cfg.budget.optimizer, batch_size=cfg.budget.batch_size,
                                 augment=cfg.budget.augment,
                                 warmup_epochs=cfg.budget.warmup_over(cfg.prototype_epochs))
            train(model, no_test, recipe,
                  on_epoch=lambda stats: self.on_event("prototype_epoch", {"stats": stats}))
        save_weights(model, path, metadata_for(self.prototype, data))
        self.journal.set_meta("prototype_weights", digest(path))
        return path, self._measure_prototype(path)

    def _measure_prototype(self, path: Path) -> Candidate:
        """Measured exactly as the finalists are, with its own weights; journaled."""
        full = Sample(seed=self.cfg.seed, graph=self.prototype, kept={}, widths={}, dropped=(), picks={},
                      macs=0, params=0, memory=0, meets=True, arch="",
                      latency=self.latency.predict(self.prototype) if self.latency else None)
        task = make_task(PROTOTYPE, -1, full, self.space, self.cfg, path)
        record = inquire_without_training(dataclasses.replace(task, parent=to_dict(self.prototype)))
        self.journal.add_candidate(record)
        return record

    def search_weights(self, path: Path) -> Path:
        """What candidates inherit: the trained prototype's weights, embedded in the widened prototype when the
        space widens (compiler.rewrite.widening: new channels initialised from the run's seed)."""
        if not self.space.original:
            return path
        wide = self.out / "prototype-wide.safetensors"
        if wide.exists():
            return wide
        import torch
        from safetensors.numpy import save
        from safetensors.torch import load_file

        from compiler.backend.atomic import atomic_write
        from compiler.backend.lower import lower_to_torch
        from compiler.rewrite.widening import embed_weights, widen

        torch.manual_seed(self.cfg.seed)
        init = lower_to_torch(self.space.prototype).state_dict()
        state = embed_weights(self.prototype, load_file(str(path)), widen(self.prototype, self.cfg.widen), init)
        atomic_write(wide, save(state))
        return wide

    def generator(self, weights: Path) -> GeneratorState:
        latest = self.journal.latest_generator()
        if latest is not None:
            return GeneratorState.from_json(latest[1], f"{self.out / JOURNAL} (generator)")
        from safetensors.numpy import load_file

        prior = magnitude_prior(self.space, load_file(str(weights)))
        state = initial_state(self.space, self.reqs, self.cfg.utility, self.cfg.min_fraction, prior,
                              spread=self.cfg.allocation_spread, factorize=self.cfg.factorize,
                              stride=self.cfg.stride)
        state.weights = weights.name
        state.round_to = self.cfg.round_to
        state.latency_model = LATENCY_MODEL if self.latency is not None else None
        self.journal.save_generator(0, state.to_json())
        return state

    def search(self, state: GeneratorState, weights: Path) -> GeneratorState:
        cfg = self.cfg
        while state.cycle < cfg.cycles:
            cycle = state.cycle
            done = {r.key for r in self.journal.candidates(cycle)}  # a failure of this cycle is tried again
            tasks = []
            for i, seed in enumerate(self.cycle_seeds(state, cycle)):
                key = f"{cycle}:{i}"
                if key in done:
                    continue
                s = sample(state, self.space, seed, self.reqs, self.latency)
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
            if cfg.learn:
                state = update_generator(state, self.space, records, self.reqs, cfg.update_rate,
                                         cfg.update_temperature)
            else:
                state = dataclasses.replace(state, cycle=state.cycle + 1)
            self.journal.save_generator(state.cycle, state.to_json())
            state.save(self.out / "generator.json")
            self.on_event("cycle_end", {"cycle": cycle, "records": records, "state": state})
        state.save(self.out / "generator.json")
        return state

    def cycle_seeds(self, state: GeneratorState, cycle: int) -> list[int]:
        """The seeds of a cycle's candidates: G's own, or the ones the predictor screens from `screen` times as many."""
        cfg = self.cfg
        if cfg.screen <= 1 or cycle == 0 or not cfg.learn:
            return [candidate_seed(cfg.seed, cycle, i) for i in range(cfg.per_cycle)]
        seen = [r for r in self.journal.searched() if r.cycle < cycle]
        seeds = [candidate_seed(cfg.seed, cycle, j) for j in range(cfg.per_cycle * cfg.screen)]
        return screened_seeds(state, self.space, self.reqs, seen, seeds, cfg.per_cycle, self.latency)

    def finals(self, state: GeneratorState, weights: Path) -> list[Candidate]:
        """Fully train the best distinct candidates among those meeting the structural requirements (by utility, or
        by the predictor's estimate of it when it screens)."""
        cfg = self.cfg
        searched = self.journal.searched()
        structural = [r for r in searched if not any(parse_requirement(m).stage != "trained" for m in r.missed)]
        pool = structural or searched
        learned = cfg.screen > 1 and cfg.learn
        chosen, seen = [], set()
        ranked = sorted(pool, key=lambda r: (-r.utility, r.cycle, r.key))
        for r in by_prediction(self.space, ranked) if learned else ranked:
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
            s = sample(GeneratorState.from_json(self.journal.generator_at(r.cycle)), self.space, r.seed, self.reqs,
                       self.latency)
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
                                        self.out / r.name, self.cfg.data, int8=self.cfg.export == "onnx-int8",
                                        threads=self.cfg.budget.latency_threads)  # as the run measures latency
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
               on_event: Callable[[str, object], None] | None = None, executor: Executor | None = None,
               explicit: set[str] | None = None) -> SynthResult:
    """Run (or continue) generative synthesis from a prototype IR; everything lands in `out`.

    The data, the requirements and --weights are checked before anything is written, so a run that cannot start
    leaves nothing behind. A resumed run continues with its own journaled settings (gensynth.config.run_config:
    only RESUMABLE ones may change; `explicit` names the settings the caller asked for, and one that differs is an
    error). Candidates are evaluated by `executor` (default: in this process, or a local pool of cfg.workers),
    started before anything is written, so that a cluster which cannot run them is an error up front.
    on_event(kind, payload) hears "resume" ({"notes", "config"}: what changed), "note" (a text), "start"
    ({"total", "done"} search candidates, "executor" in words), "plan" (a WorkPlan), "notice" (a sentence),
    "latency_profile" and "latency_profile_progress" (when it profiles this machine), "prototype_training",
    "prototype_epoch", "prototype", "cycle_start", "candidate" (a Candidate, or a Failure), "candidate_retry"
    ({"key", "reason", "attempt"}), "cycle_end", "final_start", "final", and with cfg.export "export_start" and "export"
    (gensynth.deploy.compare.Exported); records come as Candidate."""
    import time

    from gensynth.report import write_report

    notes = []
    if resume:
        cfg, notes = run_config(out, cfg, explicit)
    cfg.validate()
    if cfg.prototype_weights and "mean" not in cfg.data_options:
        from gensynth.training.preprocessing import normalization_options

        # the whole run sees the data as the given prototype weights were trained on it
        cfg = dataclasses.replace(cfg, data_options={
            **cfg.data_options, **normalization_options(cfg.prototype_weights, cfg.data, prototype)})
    executor = executor or local_executor(cfg.workers, cfg.budget.device)
    with executor:
        run = Run(out, prototype, cfg, resume, on_event, executor)
        data = run.check_data()
        check_feasible(run.space, run.reqs, cfg)
        run.check_weights()
        run.open()
        if resume:
            run.on_event("resume", {"notes": notes, "config": cfg})
        where = executor.describe()
        sessions = run.journal.get_meta("executors") or []  # every session's, for the report of a resumed run
        if where not in sessions:
            sessions = [*sessions, where]
            run.journal.set_meta("executors", sessions)
        run.on_event("start", {"total": cfg.cycles * cfg.per_cycle, "executor": where,
                               "done": min(finished_so_far(run.journal), cfg.cycles * cfg.per_cycle)})
        run.on_event("plan", work_plan(run.journal, cfg, len(data.train_x)))
        started = run.journal.get_meta("wall_s") or 0.0
        t0 = time.perf_counter()
        try:
            for notice in round_to_notices(run.space, cfg.round_to):
                run.on_event("notice", notice)
            run.prepare_latency()  # the run's copy of its model is written into the claimed folder
            if run.latency is not None:
                # now with the latency bound, still before any training
                check_feasible(run.space, run.reqs, cfg, run.latency, run.out / LATENCY_MODEL)
            weights, proto_record = run.prototype_weights()
            run.on_event("prototype", proto_record)
            weights = run.search_weights(weights)
            state = run.search(run.generator(weights), weights)
            finals = run.finals(state, weights)
            exported = run.export(finals) if cfg.export else []
            candidates, failed = run.journal.searched(), run.journal.failures()
            front = pareto_front(candidates)
            wall = started + time.perf_counter() - t0
            from compiler.cost.diff import network_diff

            diffs = {r.name: network_diff(run.prototype, run.graphs[r.name]) for r in finals}
            report = write_report(run.out, prototype.graph["name"], cfg.requirements, proto_record, finals,
                                  candidates, front, wall, executors=sessions, failed=failed, diffs=diffs,
                                  exported=exported, measured_with=setup_text(cfg.budget.latency_runtime, cfg.budget.latency_threads,
                                                           cfg.budget.latency_clock))
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
