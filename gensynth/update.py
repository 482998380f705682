"""ΔθG: how the inquisitor's observations move the generator's keep-probabilities.

Each cycle's candidates are weighted by utility (a softmax; candidates that miss a requirement are penalised by
how far they miss). A channel's keep-probability moves toward the utility-weighted evidence that it matters:
its first-order Taylor importance, normalised by the candidate's mean importance, mapped to [0, 1) by 1 - e^-s.
Blocks, factorizations, strides and choices move toward the utility-weighted frequency with which good candidates
kept, factorized, strided or picked them (a rewrite at probability 0 is switched off and stays so),
and each group's log width factor toward the utility-weighted mean of the factors the candidates drew.
A pressure step then scales channel probabilities down until the expected network meets the MAC and parameter
requirements, so the generator's typical sample needs little projection.
"""

from __future__ import annotations

import copy

import numpy as np

from compiler.cost import batched_costs, compile_costs
from gensynth.generator import GeneratorState
from gensynth.records import Candidate
from gensynth.requirements import Requirement
from gensynth.space import SearchSpace

PROBABILITY_FLOOR = 0.02  # never rule a channel or block out completely: keep exploring
VIOLATION_PENALTY = 50.0  # utility points lost per unit of relative requirement violation
UPDATE_RATE = 0.5  # θG's step per cycle toward what the cycle's candidates say (netdsl synth --update-rate)


def candidate_weights(records: list[Candidate], temperature: float = 1.0) -> np.ndarray:
    """Softmax of penalised utilities at `temperature` times their spread (below 1: the best weigh more)."""
    scores = np.array([r.utility - VIOLATION_PENALTY * r.violation for r in records], dtype=float)
    temperature = temperature * max(float(np.std(scores)), 1e-3)
    z = (scores - scores.max()) / temperature
    w = np.exp(z)
    return w / w.sum()


def _channel_targets(records: list[Candidate], weights: np.ndarray, gid: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Utility-weighted mean of 1 - exp(-importance / candidate mean) per channel, and the weight behind it."""
    total = np.zeros(n)
    mass = np.zeros(n)
    for rec, w in zip(records, weights):
        imp = rec.importance
        if gid not in imp:
            continue
        values = np.asarray(imp[gid], dtype=float)[:n]
        everything = np.concatenate([np.asarray(v, dtype=float) for v in imp.values()])
        scale = np.nanmean(everything) if np.isfinite(everything).any() else np.nan
        if not np.isfinite(scale) or scale <= 0:
            continue
        seen = np.isfinite(values)
        target = 1.0 - np.exp(-values[seen] / scale)
        total[: len(values)][seen] += w * target
        mass[: len(values)][seen] += w
    with np.errstate(invalid="ignore"):
        return np.where(mass > 0, total / np.maximum(mass, 1e-12), np.nan), mass


def update_generator(state: GeneratorState, space: SearchSpace, records: list[Candidate],
                     reqs: list[Requirement], rate: float = UPDATE_RATE, temperature: float = 1.0) -> GeneratorState:
    """θG after one cycle of observations (a new state; the old one is untouched): a step of `rate` toward the
    candidates weighted by candidate_weights(records, temperature)."""
    new = copy.deepcopy(state)
    new.cycle = state.cycle + 1
    if not records:
        return new
    weights = candidate_weights(records, temperature)
    for gid, probs in new.channels.items():
        p = np.asarray(probs, dtype=float)
        target, mass = _channel_targets(records, weights, gid, len(p))
        seen = np.isfinite(target)
        p[seen] = (1 - rate * np.minimum(mass[seen] * len(records), 1.0)) * p[seen] + \
            rate * np.minimum(mass[seen] * len(records), 1.0) * target[seen]
        new.channels[gid] = np.clip(p, PROBABILITY_FLOOR, 1.0).tolist()
    for bid in new.blocks:
        kept = np.array([bid not in r.decisions.dropped for r in records], dtype=float)
        new.blocks[bid] = float(np.clip((1 - rate) * new.blocks[bid] + rate * (weights @ kept),
                                        PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR))
    for rewrite, probs in (("factorized", new.factorize), ("strided", new.stride)):
        for name, q in probs.items():
            if q > 0:
                done = np.array([name in getattr(r.decisions, rewrite) for r in records], dtype=float)
                probs[name] = float(np.clip((1 - rate) * q + rate * (weights @ done),
                                            PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR))
    new.scales = _updated_scales(new.scales, records, weights, rate)
    for did, probs in new.choices.items():
        picked = np.zeros(len(probs))
        for r, w in zip(records, weights):
            pick = r.decisions.picks.get(did)
            if pick is not None:
                picked[pick] += w
        q = (1 - rate) * np.asarray(probs) + rate * picked
        q = np.maximum(q, PROBABILITY_FLOOR)
        new.choices[did] = (q / q.sum()).tolist()
    return apply_pressure(new, space, reqs)


def _updated_scales(scales: dict[str, float], records: list[Candidate], weights: np.ndarray,
                    rate: float) -> dict[str, float]:
    """Move each group's log factor toward the utility-weighted mean of what the candidates drew (a
    cross-entropy-method step), then centre them: only the split between groups is theirs to learn, the
    overall width is the threshold's."""
    out = dict(scales)
    for gid in scales:
        drawn = [(w, r.decisions.scales[gid]) for r, w in zip(records, weights) if gid in r.decisions.scales]
        if drawn:
            mass = sum(w for w, _ in drawn)
            if mass > 0:
                out[gid] = (1 - rate) * scales[gid] + rate * sum(w * v for w, v in drawn) / mass
    centre = float(np.mean(list(out.values()))) if out else 0.0
    return {gid: float(v - centre) for gid, v in out.items()}


def apply_pressure(state: GeneratorState, space: SearchSpace, reqs: list[Requirement]) -> GeneratorState:
    """Scale channel probabilities down until the expected network meets the MAC/parameter bounds."""
    bounds = [r for r in reqs if r.metric in ("macs", "params") and r.comparison.startswith("<")]
    if not bounds or not state.channels:
        return state
    program = compile_costs(space.prototype)
    column = {gid: j for j, gid in enumerate(program.width_groups)}
    base = program.prototype_widths.astype(float)
    scales = np.geomspace(1.0, 0.05, 60)
    rows = np.repeat(base[None, :], len(scales), axis=0)
    for grp in space.groups:
        if grp.id in column:
            expected = float(np.sum(state.channels[str(grp.id)]))
            m = grp.multiple_of
            rows[:, column[grp.id]] = np.maximum(m, np.floor(expected * scales / m) * m)
    macs, params = batched_costs(program, rows.astype(np.int64))
    values = {"macs": macs, "params": params}
    ok = np.ones(len(scales), dtype=bool)
    for r in bounds:
        ok &= np.array([r.holds(v) for v in values[r.metric]])
    scale = scales[int(np.argmax(ok))] if ok.any() else scales[-1]
    if scale < 1.0:
        for gid in state.channels:
            state.channels[gid] = np.clip(np.asarray(state.channels[gid]) * scale, PROBABILITY_FLOOR, 1.0).tolist()
    return state
