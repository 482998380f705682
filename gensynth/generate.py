"""Generate networks from a learned generator: G(s; θG) for each seed, optionally fine-tuned and checked."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from compiler.cost import network_cost
from compiler.diagnostics import NetError
from compiler.ir import from_dict, to_dict
from compiler.printer import print_network
from gensynth.generator import GeneratorState, sample
from gensynth.inquisitor import Budget, Task, inquire, requirement_status
from gensynth.requirements import parse_requirements
from gensynth.space import search_space


def prototype_graph(state: GeneratorState, path: Path):
    """The prototype IR stored in the generator (validated and shape-checked again)."""
    from compiler.shapes import infer_shapes
    from compiler.validate import validate

    try:
        return validate(infer_shapes(from_dict(state.prototype_ir)))
    except (KeyError, TypeError, ValueError) as err:
        raise NetError(f"{path} is damaged: its prototype network cannot be read ({err})") from None


def generate_networks(path: Path, seeds: Iterable[int], out: Path, *, train_data: str | None = None,
                      epochs: int = 3, lr: float | None = None, device: str = "auto", limit_train: int | None = None,
                      on_network: Callable[[dict], None] | None = None) -> list[dict]:
    """Write fermi-<seed>.net for every seed (and weights with train_data); return one record per network."""
    state = GeneratorState.load(path)
    prototype = prototype_graph(state, path)
    space = search_space(prototype)
    reqs = parse_requirements(state.requirements)
    out.mkdir(parents=True, exist_ok=True)
    weights = (path.parent / state.weights) if state.weights else None
    if train_data is not None and (weights is None or not weights.exists()):
        raise NetError(f"--train needs the prototype's weights next to the generator ({weights}); "
                       "they are written by netdsl synth")
    records = []
    for seed in seeds:
        s = sample(state, space, seed, reqs)
        name = f"fermi-{seed}"
        g = s.graph.copy()
        g.graph = dict(s.graph.graph, name=f"Fermi{seed}")
        (out / f"{name}.net").write_text(print_network(g))
        cost = network_cost(s.graph)
        record = {"seed": seed, "file": str(out / f"{name}.net"), "arch": s.arch, "macs": cost.macs,
                  "params": cost.params, "memory": cost.peak_activation_bytes, "decisions": s.decisions()}
        if train_data is not None:
            groups = {str(grp.id): [m for m in grp.members if m in s.graph] for grp in space.groups}
            task = Task(key=name, cycle=-1, seed=seed, child=to_dict(s.graph), kept=s.kept, groups=groups,
                        parent=to_dict(prototype), parent_weights=str(weights), data=train_data,
                        data_options={"limit_train": limit_train} if limit_train else {},
                        budget=Budget(final_epochs=epochs, final_lr=lr, device=device),
                        requirements=tuple(state.requirements), utility=state.utility, final=True,
                        save_to=str(out / f"{name}.safetensors"), decisions=s.decisions())
            trained = inquire(task)
            record.update({k: v for k, v in trained.items()
                           if k.startswith(("val_", "test_")) or k in ("task", "metric", "score", "test_score",
                                                                      "latency", "netscore", "utility")})
        record.update(requirement_status(record, state.requirements))
        records.append(record)
        if on_network:
            on_network(record)
    (out / "generated.json").write_text(json.dumps(records, indent=1))
    return records
