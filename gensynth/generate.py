"""Generate networks from a learned generator: G(s; θG) for each seed, optionally fine-tuned and checked."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from compiler.cost import network_cost
from compiler.diagnostics import NetError
from compiler.ir import from_dict
from compiler.printer import print_network
from gensynth.generator import GeneratorState, sample
from gensynth.inquisitor import Budget, candidate_task, inquire
from gensynth.records import Candidate, Decisions
from gensynth.requirements import Verdict, judge, parse_requirements
from gensynth.runs import write_file
from gensynth.space import search_space
from gensynth.training.preprocessing import normalization_options


@dataclass(frozen=True)
class Generated:
    """One network from a learned generator: its file, cost and decisions, and with --train what it scored."""

    seed: int
    file: str
    arch: str
    macs: int
    params: int
    memory: int
    decisions: Decisions = field(default_factory=Decisions)
    trained: Candidate | None = None  # the fine-tuned network's record (generate --train)
    verdict: Verdict = Verdict(True)

    def value(self, metric: str) -> float | None:
        """A requirement metric's value: the trained record's, else the structural ones (None for the rest)."""
        if self.trained is not None:
            return self.trained.value(metric)
        return getattr(self, metric) if metric in ("macs", "params", "memory") else None

    def to_json(self) -> dict:
        """The entry of generated.json (and of `netdsl generate --json`)."""
        out = {"seed": self.seed, "file": self.file, "arch": self.arch, "macs": self.macs, "params": self.params,
               "memory": self.memory, "decisions": self.decisions.to_json()}
        if self.trained is not None:
            out.update({k: v for k, v in self.trained.to_json().items()
                        if k.startswith(("val_", "test_")) or k in ("task", "metric", "score", "test_score",
                                                                   "latency", "netscore", "utility")})
        return {**out, "meets": self.verdict.known, "missed": list(self.verdict.missed),
                "unmeasured": list(self.verdict.unmeasured), "violation": self.verdict.violation}


def prototype_graph(state: GeneratorState, path: Path):
    """The prototype IR stored in the generator (validated and shape-checked again)."""
    from compiler.shapes import infer_shapes
    from compiler.validate import validate

    try:
        return validate(infer_shapes(from_dict(state.prototype_ir)))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise NetError(f"{path} is damaged: its prototype network cannot be read ({type(err).__name__}: {err})") from None


def file_name(seed: int) -> str:
    """The files of the network for a seed: seed-<N>.net (synth's fermi-<rank>.net are other networks)."""
    return f"seed-{seed}"


def generate_networks(path: Path, seeds: Iterable[int], out: Path, *, train_data: str | None = None,
                      epochs: int = 3, lr: float | None = None, device: str = "auto", limit_train: int | None = None,
                      on_network: Callable[[Generated], None] | None = None) -> list[Generated]:
    """Write fermi-<seed>.net for every seed (and weights with train_data); return one record per network."""
    state = GeneratorState.load(path)
    prototype = prototype_graph(state, path)
    space = search_space(prototype, state.widen)
    state.check_space(space, str(path))
    reqs = parse_requirements(state.requirements)
    latency = None
    if state.latency_model:  # the generator projects onto latency as it did when it learned
        from gensynth.latency.model import LatencyModel

        model_path = path.parent / state.latency_model
        if not model_path.exists():
            raise NetError(f"{path} was learned with the latency model {model_path}, which is missing; "
                           "keep it beside the generator (netdsl synth writes both)")
        latency = LatencyModel.load(model_path)
    weights = (path.parent / state.weights) if state.weights else None
    if train_data is not None:
        if weights is None or not weights.exists():
            raise NetError(f"--train needs the prototype's weights next to the generator ({weights}); "
                           "they are written by netdsl synth")
        from compiler.backend.lower import lower_to_torch
        from compiler.backend.weights import check_weights_file

        check_weights_file(lower_to_torch(space.prototype, device="meta"), weights)  # widened when the run widened
    data_options = {"limit_train": limit_train} if limit_train else {}
    if train_data is not None:  # fine-tune on the data as the prototype was trained on it
        data_options.update(normalization_options(weights, train_data, prototype))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NetError(f"cannot create {out}: {err.strerror or err}") from None
    if out.exists() and not out.is_dir():
        raise NetError(f"-o {out} is a file; give a folder")
    records = []
    for seed in seeds:
        s = sample(state, space, seed, reqs, latency)
        name = file_name(seed)
        g = s.graph.copy()
        g.graph = dict(s.graph.graph, name=f"Seed{seed}")
        write_file(out / f"{name}.net", print_network(g))
        cost = network_cost(s.graph)
        trained = None
        if train_data is not None:
            trained = inquire(candidate_task(
                name, -1, s, space, train_data, weights, budget=Budget(final_epochs=epochs, final_lr=lr, device=device),
                requirements=state.requirements, utility=state.utility,
                data_options={**data_options,
                              "input_shape": list(s.graph.nodes[s.graph.graph["inputs"][0]]["shape"])}, final=True,
                save_to=str(out / f"{name}.safetensors")))
        record = Generated(seed=seed, file=str(out / f"{name}.net"), arch=s.arch, macs=cost.macs, params=cost.params,
                           memory=cost.peak_activation_bytes, decisions=s.decisions(), trained=trained)
        record = dataclasses.replace(record, verdict=judge(reqs, record.value))
        records.append(record)
        if on_network:
            on_network(record)
    write_file(out / "generated.json", json.dumps([r.to_json() for r in records], indent=1, allow_nan=False))
    return records
