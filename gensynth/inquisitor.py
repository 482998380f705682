"""The inquisitor: build a generated network, inherit weights, fine-tune, probe it and measure every metric.

`inquire(task)` is a pure function of (candidate IR, inherited weights, data spec, budget, seed) and returns a
typed record (gensynth.records.Candidate), so it can run in this process, in a worker pool, or on another machine.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from compiler.backend.lower import lower_to_torch
from compiler.backend.weights import save_weights
from compiler.cost import network_cost
from compiler.ir import architecture_hash, from_dict, to_dict
from compiler.rewrite.transfer import transfer_weights
from gensynth.data import Dataset, load_dataset
from gensynth.data.normalized import NormalizedImages
from gensynth.generator import Sample
from gensynth.latency.measure import measure, runner
from gensynth.records import Candidate, Decisions
from gensynth.requirements import judge, parse_requirements
from gensynth.space import SearchSpace
from gensynth.tasks.objectives import objective_for
from gensynth.training.device import resolve_device
from gensynth.training.evaluate import evaluate
from gensynth.training.preprocessing import metadata_for
from gensynth.training.probe import probe
from gensynth.training.recalibrate import recalibrate_batchnorm
from gensynth.training.train import (
    FINE_TUNE_LR,
    OPTIMIZER_DEFAULTS,
    TASK_OPTIMIZER,
    TrainConfig,
    default_batch_size,
    train,
)
from gensynth.utility import UTILITIES, information_density, netscore


@dataclass(frozen=True)
class Budget:
    """How much work one candidate gets: a short fine-tune while searching, a full training at the end."""

    images: int = 12000  # fine-tune images per search candidate (a random subset, drawn per seed)
    epochs: int = 1
    final_epochs: int = 10
    batch_size: int | None = None  # None: the training split's default (gensynth.training.train.default_batch_size)
    lr: float | None = None  # None: FINE_TUNE_LR of the optimizer (sgd 0.02, adamw 1e-3)
    final_lr: float | None = None
    optimizer: str | None = None  # None: the task's (sgd for classification, adamw otherwise)
    probe_images: int = 512
    latency_runtime: str = "torch"  # how latency is measured (gensynth.latency.measure): runtime, threads, time cap
    latency_threads: int = 1
    latency_clock: str = "wall"
    latency_seconds: float = 3.0
    device: str = "auto"
    distill: float = 0.0  # weight of distilling the prototype's outputs in every fine-tune (classification)
    distill_temperature: float = 4.0
    bn_images: int = 1024  # training images that re-estimate a search candidate's BN statistics (0: off)
    final_init: str = "inherit"  # finalists: "inherit" the prototype's weights, or train from "scratch"
    search_init: str = "inherit"  # search candidates: the same choice, for their short training
    augment: bool = False  # random crop and flip in every training (classification)
    warmup_epochs: float = 0.0  # linear lr warm-up of every training, in epochs

    def warmup_over(self, epochs: int) -> float:
        """The warm-up of a phase of `epochs` epochs: the budget's, but never longer than the phase."""
        return min(self.warmup_epochs, max(epochs, 1))


@dataclass(frozen=True)
class Task:
    """Everything one evaluation needs, as plain data."""

    key: str
    cycle: int
    seed: int
    child: dict  # compiler.ir.to_dict of the candidate
    kept: dict  # node -> prototype output channels kept
    groups: dict  # free group id (str) -> the candidate's member node names
    parent: dict  # the prototype IR (to_dict)
    parent_weights: str  # safetensors file of the trained prototype
    data: str
    data_options: dict = field(default_factory=dict)
    budget: Budget = Budget()
    requirements: tuple[str, ...] = ()
    utility: str = "netscore"
    final: bool = False
    save_to: str | None = None  # where a final candidate's weights go
    decisions: Decisions = field(default_factory=Decisions)
    predicted_latency: float | None = None  # seconds, by the run's latency model (when it has one)


def candidate_task(key: str, cycle: int, s: Sample, space: SearchSpace, data: str, parent_weights: str | Path, *,
                   budget: Budget, requirements: Iterable[str] = (), utility: str = "netscore",
                   data_options: dict | None = None, final: bool = False, save_to: str | None = None) -> Task:
    """The task that evaluates a generated sample of a search space's prototype."""
    groups = {}
    for grp in space.groups:
        members = [m for m in grp.members if m in s.graph]
        if members:
            groups[str(grp.id)] = members
    return Task(key=key, cycle=cycle, seed=s.seed, child=to_dict(s.graph), kept=s.kept, groups=groups,
                parent=to_dict(space.prototype), parent_weights=str(parent_weights), data=data,
                data_options=dict(data_options or {}), budget=budget, requirements=tuple(requirements),
                utility=utility, final=final, save_to=save_to, decisions=s.decisions(),
                predicted_latency=s.latency)


def fine_tune_config(budget: Budget, task: str, seed: int, final: bool, n_train: int | None = None) -> TrainConfig:
    """How a candidate trains: a search candidate's short training, or a finalist's full one (fine-tuning
    inherited weights at the gentler FINE_TUNE_LR, or from scratch at the optimizer's standard rate). The default
    batch size is that of the whole training split (n_train images), also for a search candidate's subset."""
    optimizer = budget.optimizer or TASK_OPTIMIZER[task]
    scratch = from_scratch(budget, final)
    standard = OPTIMIZER_DEFAULTS[optimizer]["lr"] if scratch else FINE_TUNE_LR[optimizer]
    lr = (budget.final_lr if final else budget.lr) or standard
    epochs = budget.final_epochs if final else budget.epochs
    batch = budget.batch_size or (default_batch_size(n_train) if n_train else None)
    return TrainConfig(epochs=max(epochs, 1), lr=lr, optimizer=optimizer, batch_size=batch, seed=seed,
                       device=budget.device, schedule="cosine", distill=budget.distill,
                       distill_temperature=budget.distill_temperature, augment=budget.augment,
                       warmup_epochs=budget.warmup_over(epochs))


def from_scratch(budget: Budget, final: bool) -> bool:
    """Whether a finalist (final) or a search candidate trains from a fresh initialisation."""
    return (budget.final_init if final else budget.search_init) == "scratch" and \
        (budget.final_epochs if final else budget.epochs) > 0


@lru_cache(maxsize=4)
def _parent_state(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def _subset(data: Dataset, images: int, seed: int) -> Dataset:
    """A seeded random subset of the training split, without validation or test (we evaluate those ourselves)."""
    n = len(data.train_y)
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(n)[: min(images, n)])
    empty_x, empty_y = data.val_x[:0], data.val_y[:0]
    train_x = data.train_x.subset(idx) if isinstance(data.train_x, NormalizedImages) else data.train_x[idx]
    return dataclasses.replace(data, train_x=train_x, train_y=data.train_y[idx], val_x=empty_x,
                               val_y=empty_y, test_x=empty_x, test_y=empty_y)


def group_importance(stats: dict, groups: dict, kept: dict, prototype_channels: dict) -> dict:
    """Per free group: Taylor importance per prototype channel (NaN where the candidate dropped it)."""
    out = {}
    for gid, members in groups.items():
        if gid not in prototype_channels:
            continue
        values = np.full(prototype_channels[gid], np.nan)
        rows = [stats[m].importance for m in members if m in stats and stats[m].importance is not None]
        if rows:
            mean = np.mean(np.stack(rows), axis=0)
            keep = kept.get(members[0], list(range(len(mean))))
            values[np.asarray(keep[: len(mean)], dtype=int)] = mean
        out[gid] = values.tolist()
    return out


def inquire(task: Task, data: Dataset | None = None, parent_state: dict | None = None) -> Candidate:
    """Evaluate one candidate: inherit, fine-tune, measure accuracy and cost, probe channel importance.

    `data` and `parent_state` (the trained prototype's tensors) are what a remote worker already holds; by default
    they are loaded from task.data and task.parent_weights.
    """
    start = time.perf_counter()
    child, parent = from_dict(task.child), from_dict(task.parent)
    data = data if data is not None else load_dataset(task.data, **task.data_options)
    parent_state = parent_state if parent_state is not None else _parent_state(task.parent_weights)
    torch.manual_seed(task.seed)
    model = lower_to_torch(child)
    b = task.budget
    if not from_scratch(b, task.final):
        state = transfer_weights(parent, parent_state, child, task.kept)
        model.load_state_dict(state, strict=False)
    epochs = b.final_epochs if task.final else b.epochs
    if task.final:  # the whole training split; the test split is evaluated once below, for the report
        subset = dataclasses.replace(data, test_x=data.test_x[:0], test_y=data.test_y[:0])
    else:
        subset = _subset(data, b.images, task.seed)
    config = fine_tune_config(b, data.task, task.seed, task.final, n_train=len(data.train_y))
    if epochs > 0:
        teacher = None
        if config.distill > 0:  # the trained prototype, whose responses the candidate learns to reproduce
            teacher = lower_to_torch(parent)
            teacher.load_state_dict(parent_state)
        device = torch.device(train(model, subset, config, teacher=teacher).device)
    else:  # measure the weights as they are (the trained prototype)
        device = resolve_device(b.device)
        model.to(device)
    if not task.final and b.bn_images > 0:  # score the candidate, not its stale BN statistics (EagleEye)
        recalibrate_batchnorm(model, subset.train_x[: b.bn_images], device)
    objective = objective_for(data)
    val = evaluate(model, data.val_x, data.val_y, device=device, objective=objective)
    test, importance = {}, {}
    if task.final:  # the test split is reported only, never used to choose
        test = evaluate(model, data.test_x, data.test_y, device=device, objective=objective).metrics
        if task.save_to:
            save_weights(model, task.save_to, metadata_for(child, data))
    else:
        n = min(b.probe_images, len(data.val_y))

        def loss_sum(out, y):  # summed over the batch, so importance is a per-example mean
            return objective.loss(out, y) * len(y)

        stats = probe(model, data.val_x[:n].to(device), data.val_y[:n].to(device), loss_fn=loss_sum)
        channels = {gid: parent.nodes[members[0]]["shape"][0] for gid, members in task.groups.items() if members}
        importance = group_importance(stats, task.groups, task.kept, channels)
    cost = network_cost(child)
    latency = measure([runner(child, b.latency_runtime, b.latency_threads, module=model.to("cpu"))],
                      max_seconds=b.latency_seconds, clock=b.latency_clock)[0]
    # the task's primary metric stands for accuracy in the utilities
    measured = {"accuracy": val.score, "params": cost.params, "macs": cost.macs}
    record = Candidate(key=task.key, cycle=task.cycle, seed=task.seed, arch=architecture_hash(child),
                       decisions=task.decisions, final=task.final, task=data.task, metric=objective.primary,
                       val=dict(val.metrics), test=dict(test), device=str(device), macs=cost.macs,
                       params=cost.params, memory=cost.peak_activation_bytes, latency=latency.median,
                       latency_fast=latency.fast, latency_slow=latency.slow,
                       predicted_latency=task.predicted_latency,
                       netscore=netscore(val.score, cost.params, cost.macs),
                       density=information_density(val.score, cost.params),
                       utility=UTILITIES[task.utility](measured), importance=importance)
    record = record.with_verdict(judge(parse_requirements(list(task.requirements)), record.value))
    return dataclasses.replace(record, wall_s=time.perf_counter() - start)
