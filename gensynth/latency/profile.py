"""`netdsl profile`: measure, on the machine where it runs (the target), the layers a prototype's search space can
produce, and fit its latency model (gensynth.latency.model).

Networks are drawn from the search space as synthesis could make them (blocks dropped, choices picked, convs
strided or factorized, each with probability 1/2; every free channel group at a uniform width between its
minimum and the prototype's, and in half the networks at multiples of 8 so that aligned counts are well
covered). Their units (gensynth.latency.units) give, per signature, up to `samples` distinct channel
configurations, each measured alone. Whole networks then fit the per-network overhead and, held out, tell how
well the model predicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from compiler.diagnostics import NetError
from compiler.printer import print_network
from compiler.rewrite.coupling import apply_widths, channel_plan, evaluate
from compiler.rewrite.factorize import factorize_convs
from compiler.rewrite.residual import drop_blocks
from compiler.rewrite.striding import stride_convs
from gensynth.generator import prototype_hash
from gensynth.latency.measure import check_runtime, measure, runner
from gensynth.latency.model import (
    Basis,
    LatencyModel,
    UnitSamples,
    calibrate,
    choose_basis,
    cross_validated_error,
    fit_relative,
)
from gensynth.latency.units import Unit, describe, kind, network_units, unit_channels, unit_graph
from gensynth.space import SearchSpace, apply_decisions, channel_step, search_space

ALIGNED = 8  # half the drawn networks keep every width at a multiple of this (where the group allows)
MAX_DRAWS = 2000  # networks drawn at most while looking for configurations of rare signatures


@dataclass(frozen=True)
class ProfileOptions:
    """How to profile: the runtime and threads of the target, how many measurements, how long each."""

    runtime: str = "torch"
    threads: int = 1
    clock: str = "wall"
    samples: int = 24  # channel configurations measured per unit signature
    fit_networks: int = 24  # whole networks that fit the network-level terms (at least twice their unknowns)
    check_networks: int = 12  # held-out whole networks that measure the model's accuracy
    unit_seconds: float = 0.5  # time cap of one unit's measurement
    network_seconds: float = 2.0  # time cap of one network's measurement
    min_fraction: float = 0.1  # the fewest channels a group keeps (as synth --min-fraction)
    stride: bool = False  # also the strided convs synthesis may make (synth --stride)
    factorize: bool = False  # also the factorized convs (synth --factorize)
    seed: int = 0


@dataclass(frozen=True)
class Accuracy:
    """Predicted against measured latency of held-out networks."""

    networks: int
    within_10: float  # share of networks predicted within ±10%
    within_20: float
    median_error: float  # median relative error
    errors: tuple[float, ...]  # signed relative errors (predicted / measured - 1)

    @classmethod
    def of(cls, predicted: np.ndarray, measured: np.ndarray) -> Accuracy:
        err = np.asarray(predicted) / np.asarray(measured) - 1
        a = np.abs(err)
        return cls(len(err), float(np.mean(a <= 0.10)), float(np.mean(a <= 0.20)),
                   float(np.median(a)) if len(a) else 0.0, tuple(float(e) for e in err))


def random_network(space: SearchSpace, rng: np.random.Generator, min_fraction: float, aligned: int = 1,
                   stride: bool = False, factorize: bool = False) -> nx.DiGraph:
    """A network synthesis could produce: structure and widths drawn uniformly (widths at multiples of
    `aligned` where a group allows it)."""
    picks = {did: int(rng.integers(len(options))) for did, options in space.decisions.items()}
    g = apply_decisions(space.prototype, picks)
    dropped = [b for b in space.blocks if rng.random() < 0.5]
    if dropped:
        g = drop_blocks(g, dropped)
    if stride:
        g, _ = stride_convs(g, [name for name in space.stridable if rng.random() < 0.5])
    factorized = [name for name in space.factorizable if factorize and name in g and rng.random() < 0.5]
    if factorized:
        g = factorize_convs(g, factorized)
    plan = channel_plan(g)
    proto = {m: grp for grp in space.groups for m in grp.members}
    widths = {}
    for grp in plan.free_groups():
        p = next((proto[m] for m in grp.members if m in proto), None)
        if p is None:
            continue
        m = channel_step(grp.multiple_of, grp.channels, aligned)
        lo = -(-space.min_width(p, min_fraction) // m)
        widths[grp.id] = int(rng.integers(lo, max(lo, grp.channels // m) + 1)) * m
    return apply_widths(g, widths, plan)


def configurations(g: nx.DiGraph) -> list[tuple[Unit, tuple[int, ...]]]:
    """The network's units, each with its channel counts (the layout of unit_channels)."""
    plan = channel_plan(g)
    widths = [grp.channels for grp in plan.groups]
    return [(unit, tuple(int(evaluate(e, widths)) for e in unit_channels(g, plan, unit))) for unit in network_units(g)]


def draw_networks(space: SearchSpace, options: ProfileOptions, rng: np.random.Generator) -> list[nx.DiGraph]:
    """Networks until every signature seen has `samples` distinct configurations (or MAX_DRAWS)."""
    networks, configs = [], {}
    for k in range(MAX_DRAWS):
        g = random_network(space, rng, options.min_fraction, ALIGNED if k % 2 else 1, options.stride,
                           options.factorize)
        networks.append(g)
        for unit, channels in configurations(g):
            configs.setdefault(unit.signature, set()).add(channels)
        if k + 1 >= options.fit_networks + options.check_networks and \
                all(len(c) >= options.samples for c in configs.values()):
            break
    return networks


def unit_configurations(networks: list[nx.DiGraph], samples: int) -> list[tuple[nx.DiGraph, Unit, tuple]]:
    """Up to `samples` distinct (network, unit, channels) per signature, in order of first appearance."""
    chosen: dict[str, dict[tuple, tuple]] = {}
    for g in networks:
        for unit, channels in configurations(g):
            seen = chosen.setdefault(unit.signature, {})
            if len(seen) < samples and channels not in seen:
                seen[channels] = (g, unit, channels)
    return [config for seen in chosen.values() for config in seen.values()]


def measure_units(configs: list, options: ProfileOptions,
                  progress: Callable[[int, str], None]) -> dict[str, UnitSamples]:
    """Each (network, unit, channels) configuration measured alone, grouped by signature."""
    samples: dict[str, UnitSamples] = {}
    for done, (g, unit, channels) in enumerate(configs):
        progress(done, f"layer {describe(unit.signature)}")
        lat = measure([runner(unit_graph(g, unit, channels), options.runtime, options.threads)],
                      max_seconds=options.unit_seconds, clock=options.clock, min_seconds=options.unit_seconds / 4)[0]
        s = samples.setdefault(unit.signature, UnitSamples(unit.dense))
        s.channels.append(channels)
        s.seconds.append(lat.median)
    return samples


def fit_units(samples: dict[str, UnitSamples]) -> tuple[Basis, dict[str, dict]]:
    """The basis that predicts held-out units best, and each signature's coefficients under it."""
    basis = choose_basis(samples)
    units = {}
    for sig, s in samples.items():
        ci, co, y = s.arrays()
        units[sig] = {"dense": s.dense, "coef": fit_relative(basis.features(s.dense, ci, co), y).tolist(),
                      "samples": len(y), "error": cross_validated_error({sig: s}, basis), "what": describe(sig)}
    return basis, units


def measure_networks(networks: list[nx.DiGraph], options: ProfileOptions,
                     progress: Callable[[int, str], None]) -> np.ndarray:
    """Median seconds of each whole network."""
    out = []
    for k, g in enumerate(networks):
        progress(k, f"network {k + 1} of {len(networks)}")
        out.append(measure([runner(g, options.runtime, options.threads)], max_seconds=options.network_seconds,
                           clock=options.clock)[0].median)
    return np.array(out)


def profile(prototype: nx.DiGraph, options: ProfileOptions = ProfileOptions(),
            on_progress: Callable[[int, int, str], None] | None = None) -> tuple[LatencyModel, Accuracy]:
    """Measure the prototype's search space on this machine and fit its latency model; with the accuracy on
    held-out networks (also stored in the model)."""
    check_runtime(options.runtime, options.threads)
    for name in ("samples", "fit_networks", "check_networks"):
        if getattr(options, name) < 1:
            raise NetError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if options.samples < 4:
        raise NetError(f"--samples must be at least 4 (the fit has 4 folds), got {options.samples}")
    start = time.perf_counter()
    report = on_progress or (lambda done, total, what: None)
    space = search_space(prototype)
    rng = np.random.default_rng(options.seed)
    networks = draw_networks(space, options, rng)
    configs = unit_configurations(networks, options.samples)
    kinds = len({kind(unit.signature) for _, unit, _ in configs})
    n_fit = max(options.fit_networks, 2 * (kinds + 4))  # twice the calibration's unknowns
    while len(networks) < n_fit + options.check_networks:
        networks.append(random_network(space, rng, options.min_fraction, ALIGNED if len(networks) % 2 else 1,
                                       options.stride, options.factorize))
    whole = [prototype] + networks[:n_fit + options.check_networks - 1]
    total = len(configs) + len(whole)
    samples = measure_units(configs, options, lambda done, what: report(done, total, what))
    basis, units = fit_units(samples)
    model = LatencyModel(prototype.graph["name"], prototype_hash(print_network(prototype)),
                         list(prototype.nodes[prototype.graph["inputs"][0]]["shape"]), options.runtime,
                         options.threads, options.clock, {"block": basis.block, "align": basis.align}, units, {})
    measured = measure_networks(whole, options, lambda done, what: report(len(configs) + done, total, what))
    report(total, total, "fitting")
    programs = [model.program(g) for g in whole]
    fit, check = slice(0, n_fit), slice(n_fit, None)
    model.calibration, alphas = calibrate(programs[fit], measured[fit], {sig: kind(sig) for sig in units})
    for sig, alpha in alphas.items():
        units[sig]["alpha"] = alpha
    accuracy = Accuracy.of(np.array([model.predict(g) for g in whole[check]]), measured[check])
    model.accuracy = {"networks": accuracy.networks, "within_10": accuracy.within_10,
                      "within_20": accuracy.within_20, "median_error": accuracy.median_error}
    model.profile_seconds = time.perf_counter() - start
    return model, accuracy


def model_for_run(prototype: nx.DiGraph, copy: Path, given: str | None, wanted: bool, options: ProfileOptions,
                  on_event: Callable[[str, object], None]) -> LatencyModel | None:
    """A synthesis run's latency model: its copy in the run directory (on resume), else the given file, else, when
    a latency requirement wants one, one profiled on this machine now (on_event hears "latency_profile" and
    "latency_profile_progress"); checked against the prototype, runtime and threads, and kept as `copy`."""
    if copy.exists():
        model, where = LatencyModel.load(copy), str(copy)
    elif given:
        model, where = LatencyModel.load(given), given
    elif wanted:
        on_event("latency_profile", {"out": str(copy), "runtime": options.runtime, "threads": options.threads})
        model, _ = profile(prototype, options, lambda done, total, what: on_event(
            "latency_profile_progress", {"done": done, "total": total, "what": what}))
        where = "the latency model profiled now"
    else:
        return None
    model.check_for(prototype_hash(print_network(prototype)), prototype.graph["name"], options.runtime,
                    options.threads, where=f"latency model {where}")
    if not copy.exists():
        model.save(copy)
    return model
