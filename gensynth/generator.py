"""The generator G(s; θG): a seeded rewrite of the prototype IR under learned keep-probabilities.

θG holds, per free channel group, a keep-probability for each of the prototype's channels; per skippable
residual block, a keep-probability; per factorizable conv, the probability of rewriting it as depthwise + 1 x 1
(compiler.rewrite.factorize); per stridable conv, the probability of giving it stride 2 (compiler.rewrite.striding); per declared
choice, probabilities over its options. A seed s draws one
uniform number per decision; a channel is kept when u/p is below a threshold λ, which is lowered (one batched
cost-model call over a grid of λ) until the MAC and parameter requirements hold, and with a latency model
(gensynth.latency.model, predicted over the same grid at once) the latency requirement too. So every sample meets
the structural requirements (and is predicted to meet the latency one) by construction, and (θG, s) always gives
the same network. With `round_to` N, widths move in steps of N where a group has that many channels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from compiler.backend.atomic import atomic_write
from compiler.cost import batched_costs, compile_costs, network_cost
from compiler.diagnostics import NetError
from compiler.ir import architecture_hash, to_dict
from compiler.ops import OPS
from compiler.printer import print_network
from compiler.rewrite.coupling import apply_widths, channel_plan
from compiler.rewrite.factorize import factorize_convs
from compiler.rewrite.residual import drop_blocks
from compiler.rewrite.striding import stride_convs
from gensynth.records import Decisions
from gensynth.requirements import Requirement
from gensynth.space import SearchSpace, apply_decisions, channel_step

FORMAT = "netdsl-generator/1"
LAMBDA_GRID = np.concatenate([np.geomspace(1.0, 0.02, 96), [0.0]])  # thresholds tried, largest first
# With utility "accuracy" the projection also tries thresholds above 1: a channel is kept when u < λ p, so
# λ > 1 keeps more than θG expects, and the network grows to what the requirements allow instead of staying
# at θG's expected size (which the update shrinks whenever small candidates did well).
FILL_GRID = np.concatenate([np.geomspace(50.0, 1.0, 48, endpoint=False), LAMBDA_GRID])  # 50 = 1 / update.PROBABILITY_FLOOR
MAX_ATTEMPTS = 8  # re-draws when even the smallest threshold breaks a requirement
# The grid's steps are 4-8% apart in λ, which left up to 14% of a MAC budget unused; REFINE thresholds between
# the last grid value that breaks a requirement and the first that holds fill it to within a channel or so.
REFINE = 64
PRIOR_FLOOR = 0.2  # the weakest channel's keep-probability under the magnitude prior (the strongest: 1)
# A widened group's new channels (compiler.rewrite.widening) start below the weakest trained one: a sample keeps them
# mostly once it keeps most of the prototype's, i.e. when the budget (or the group's drawn width factor) reaches past
# the prototype's width.
WIDEN_PRIOR = 0.1
# Each sample scales each group's keep-probabilities by exp(scale + ALLOCATION_SPREAD * z), z ~ N(0, 1) per group:
# with one shared threshold λ alone, every group keeps about the same share of its channels, so the generator
# could only propose (noisy) uniform widths; the per-group factor lets it try other splits of the budget, and
# θG's per-group `scales` learn which split the inquisitor rewards. 0.8 (factors 0.45-2.2 at one sd) rather than
# 0.4: on Fashion-MNIST (docs/benchmarks.md, bench/peers.py, 3 seeds) the finalists it found scored higher on
# validation at 4x and 8x fewer MACs and the same at 2x; at 0.4 twelve candidates rarely tried a wide last stage.
ALLOCATION_SPREAD = 0.8
FACTORIZE = 0.0  # θG's initial probability of factorizing each factorizable conv (0: never)
# θG's initial probability of striding each stridable conv; 0: never. Off by default, like factorizing: under the
# default NetScore utility a stride mostly buys smallness, and the learned generator's samples then spread far below
# the MAC budget (docs/benchmarks.md, bench/synth_fashion.py: 9 of 20 generated networks reached the accuracy
# requirement, against 20 of 20 without). For a fixed MAC budget (--utility accuracy, which fills it) 0.5 is the
# better choice: on Fashion-MNIST (bench/peers.py) its finalists scored 0.3 / 0.9 / 1.1 points higher on validation
# than without strides at 2x / 4x / 8x fewer MACs, running at lower resolution with wider layers.
STRIDE = 0.0


@dataclass
class GeneratorState:
    """θG plus what it was learned for; saved as generator.json."""

    prototype: str  # canonical .net text of the prototype, for people
    prototype_hash: str
    prototype_ir: dict  # the same network as compiler.ir.to_dict, for loading without the front end
    requirements: list[str]
    utility: str = "netscore"
    channels: dict[str, list[float]] = field(default_factory=dict)  # group id -> keep-probability per channel
    blocks: dict[str, float] = field(default_factory=dict)  # skippable block id -> keep-probability
    choices: dict[str, list[float]] = field(default_factory=dict)  # decision id -> option probabilities
    scales: dict[str, float] = field(default_factory=dict)  # group id -> log of its keep-probability factor
    factorize: dict[str, float] = field(default_factory=dict)  # conv name -> probability of factorizing it
    stride: dict[str, float] = field(default_factory=dict)  # conv name -> probability of giving it stride 2
    spread: float = ALLOCATION_SPREAD  # the factor's per-sample standard deviation (log scale)
    min_fraction: float = 0.1  # a group keeps at least this share of its channels
    widen: float = 1.0  # θG's channels index the prototype widened this much (gensynth.space.search_space)
    round_to: int = 1  # widths are multiples of this where a group has that many channels (synth --round-to)
    latency_model: str | None = None  # the latency model projected onto, relative to the generator file
    cycle: int = 0
    weights: str | None = None  # the prototype's trained weights, relative to the generator file

    def to_json(self) -> dict:
        return {"format": FORMAT, **self.__dict__}

    def save(self, path: Path) -> None:
        """Write atomically, so a killed run never leaves half a generator."""
        atomic_write(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def from_json(cls, data: dict, where: str = "generator") -> GeneratorState:
        """θG from JSON, every field checked for its type and range (a hand-edited file fails here, in words)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NetError(f"{where} is not a netdsl generator (expected \"format\": \"{FORMAT}\")")
        try:
            state = cls(**{k: v for k, v in data.items() if k != "format"})
        except TypeError as err:
            raise NetError(f"{where} is damaged: {err}") from None
        problem = _field_problem(state)
        if problem:
            raise NetError(f"{where} is damaged: {problem}")
        if hashlib.sha256(state.prototype.encode()).hexdigest()[:16] != state.prototype_hash:
            raise NetError(f"{where} is damaged: its prototype text does not match its hash")
        return state

    def check_space(self, space: SearchSpace, where: str = "generator") -> None:
        """θG must have exactly the prototype's decisions: a probability per channel of every free group, one
        per skippable block and per choice option (a shortened list is damage, not something to guess around)."""
        groups = {str(grp.id): grp.channels for grp in space.groups}
        problems = [f"channel group {gid} has {len(self.channels.get(gid, []))} probabilities, the prototype "
                    f"{n} channels" for gid, n in groups.items() if len(self.channels.get(gid, [])) != n]
        problems += [f"it has channel group {gid}, which the prototype lacks" for gid in self.channels if gid not in groups]
        blocks = {b.id for b in space.blocks}
        problems += [f"block {b!r} is not a skippable block of the prototype" for b in self.blocks if b not in blocks]
        for did, options in space.decisions.items():
            if did in self.choices and len(self.choices[did]) != len(options):
                problems.append(f"choice {did!r} has {len(self.choices[did])} probabilities for {len(options)} options")
        for attr, known in (("factorize", space.factorizable), ("stride", space.stridable)):
            problems += [f"{attr} names {name!r}, which the prototype cannot {attr}"
                         for name in getattr(self, attr) if name not in known]
        if problems:
            raise NetError(f"{where} is damaged: {problems[0]}", notes=problems[1:8])

    @classmethod
    def load(cls, path: str | Path) -> GeneratorState:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise NetError(f"cannot read generator {path}: {err.strerror or err}") from None
        except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, an integer of 5,000 digits, deep nesting
            raise NetError(f"{path} is not a generator file (not JSON: {str(err)[:200]})") from None
        return cls.from_json(data, str(path))


def _is_prob(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _field_problem(state: GeneratorState) -> str | None:
    """What is wrong with a loaded θG's fields, or None."""
    checks = [
        ("prototype", isinstance(state.prototype, str), "text"),
        ("prototype_hash", isinstance(state.prototype_hash, str), "text"),
        ("prototype_ir", isinstance(state.prototype_ir, dict), "an object"),
        ("requirements", isinstance(state.requirements, list) and all(isinstance(r, str) for r in state.requirements),
         "a list of texts"),
        ("utility", state.utility in ("netscore", "density", "accuracy"), '"netscore", "density" or "accuracy"'),
        ("channels", isinstance(state.channels, dict) and all(
            isinstance(v, list) and all(_is_prob(p) for p in v) for v in state.channels.values()),
         "an object of lists of probabilities in [0, 1]"),
        ("choices", isinstance(state.choices, dict) and all(
            isinstance(v, list) and v and all(_is_prob(p) for p in v) and sum(v) > 0 for v in state.choices.values()),
         "an object of lists of probabilities"),
        ("scales", isinstance(state.scales, dict) and all(_is_number(v) for v in state.scales.values()),
         "an object of numbers"),
        ("spread", _is_number(state.spread) and state.spread >= 0, "a number >= 0"),
        ("min_fraction", _is_number(state.min_fraction) and 0 < state.min_fraction <= 1, "a number in (0, 1]"),
        ("cycle", isinstance(state.cycle, int) and not isinstance(state.cycle, bool) and state.cycle >= 0,
         "a whole number >= 0"),
        ("weights", state.weights is None or (isinstance(state.weights, str) and "/" not in state.weights
                                              and state.weights not in ("", ".", "..")),
         "a file name beside the generator, or null"),
    ]
    for attr in ("blocks", "factorize", "stride"):
        value = getattr(state, attr)
        checks.append((attr, isinstance(value, dict) and all(_is_prob(v) for v in value.values()),
                       "an object of probabilities in [0, 1]"))
    for name, ok, want in checks:
        if not ok:
            return f"{name!r} must be {want}"
    return None


def prototype_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def magnitude_prior(space: SearchSpace, weights: dict) -> dict[str, list[float]]:
    """Keep-probabilities from the trained prototype: per free group, channels ranked by the L2 norm of the
    filters that write them (summed over writers, each scaled to its largest), mapped to [PRIOR_FLOOR, 1]; a
    widened group's new channels (untrained) at WIDEN_PRIOR.

    Without it the first cycle keeps random channels, and a one-shot 3x cut of a trained network loses far
    more than a magnitude cut does; probing then refines the ranking cycle by cycle."""
    prior = {}
    for grp in space.groups:
        score = np.zeros(grp.channels)
        old = space.original.get(grp.id, list(range(grp.channels)))
        for node in grp.writers:
            w = weights.get(f"{node}.weight")
            layer = OPS[space.prototype.nodes[node]["op"]].layer  # writers are conv, conv_transpose or linear
            if w is None or layer is None:
                continue
            w = np.asarray(w, dtype=np.float64)
            if layer == "conv_transpose":  # [in, out / groups, k, k]: output channels on dim 1
                w = np.swapaxes(w, 0, 1)
            norms = np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1))
            if len(norms) == grp.channels and norms[old].max() > 0:
                score += norms / norms[old].max()
        ranks = np.argsort(np.argsort(score[old], kind="stable"), kind="stable")  # 0 = weakest
        probs = np.full(grp.channels, WIDEN_PRIOR)
        probs[old] = PRIOR_FLOOR + (1 - PRIOR_FLOOR) * ranks / max(len(old) - 1, 1)
        prior[str(grp.id)] = probs.tolist()
    return prior


def starting_channels(space: SearchSpace, grp) -> list[float]:
    """θG's keep-probabilities without a prior: 1 for the prototype's channels, WIDEN_PRIOR for a widened group's
    new ones."""
    old = set(space.original.get(grp.id, range(grp.channels)))
    return [1.0 if c in old else WIDEN_PRIOR for c in range(grp.channels)]


def initial_state(space: SearchSpace, requirements: list[Requirement], utility: str = "netscore",
                  min_fraction: float = 0.1, channel_prior: dict[str, list[float]] | None = None,
                  spread: float = ALLOCATION_SPREAD, factorize: float = FACTORIZE,
                  stride: float = STRIDE) -> GeneratorState:
    """θG at the prototype: every channel and block kept (or channels ranked by a prior), choices uniform, each
    factorizable conv factorized with probability `factorize`, each stridable conv strided with `stride`."""
    text = print_network(space.unwidened)
    return GeneratorState(
        prototype=text, prototype_hash=prototype_hash(text), prototype_ir=to_dict(space.unwidened),
        requirements=[r.text for r in requirements], widen=space.widen,
        utility=utility,
        channels={str(grp.id): list((channel_prior or {}).get(str(grp.id), starting_channels(space, grp)))
                  for grp in space.groups},
        blocks={b.id: 1.0 for b in space.blocks},
        scales={str(grp.id): 0.0 for grp in space.groups},
        choices={d: [1.0 / len(opts)] * len(opts) for d, opts in space.decisions.items()},
        factorize={name: factorize for name in space.factorizable},
        stride={name: stride for name in space.stridable},
        min_fraction=min_fraction,
        spread=spread,
    )


@dataclass(frozen=True, eq=False)
class Sample:
    """One generated network and the decisions that made it."""

    seed: int
    graph: nx.DiGraph
    kept: dict[str, list[int]]  # node -> prototype output channels it keeps (for weight transfer)
    widths: dict[str, int]  # free group id -> channels kept
    dropped: tuple[str, ...]  # skipped residual blocks
    picks: dict[str, int]  # decision id -> option index
    macs: int
    params: int
    memory: int
    meets: bool  # the structural requirements hold
    arch: str
    scales: dict[str, float] = field(default_factory=dict)  # group id -> log factor this sample drew
    factorized: tuple[str, ...] = ()  # convs rewritten as depthwise + 1 x 1
    strided: tuple[str, ...] = ()  # convs given stride 2
    latency: float | None = None  # predicted seconds, when sampled with a latency model

    def decisions(self) -> Decisions:
        """What was decided, as the candidate's record keeps it."""
        return Decisions(widths=self.widths, dropped=self.dropped, picks=self.picks, scales=self.scales,
                         factorized=self.factorized, strided=self.strided)


def _structural_ok(reqs: list[Requirement], macs: float, params: float, memory: float | None = None,
                   latency: float | None = None) -> bool:
    values = {"macs": macs, "params": params, "memory": memory, "latency": latency}
    return all(r.holds(values[r.metric]) for r in reqs if r.metric in values and values[r.metric] is not None)


def _violation(reqs: list[Requirement], values: dict) -> float:
    return sum(r.violation(values[r.metric]) for r in reqs if r.metric in values)


def sample(state: GeneratorState, space: SearchSpace, seed: int, reqs: list[Requirement], latency=None) -> Sample:
    """G(s; θG): the network for seed s, projected onto the structural requirements and, with a latency model
    (gensynth.latency.model.LatencyModel), the latency requirement (capped re-draws)."""
    rng = np.random.default_rng([seed, 0x6E657464])
    structural = [r for r in reqs if r.stage == "structural" or (latency is not None and r.metric == "latency")]
    best = None
    for attempt in range(MAX_ATTEMPTS):
        candidate = _draw(state, space, seed, rng, structural, force_small=attempt == MAX_ATTEMPTS - 1,
                          latency=latency)
        if candidate.meets:
            return candidate
        values = {"macs": candidate.macs, "params": candidate.params, "memory": candidate.memory,
                  "latency": candidate.latency}
        if best is None or _violation(structural, values) < best[0]:
            best = (_violation(structural, values), candidate)
    return best[1]


def _draw(state: GeneratorState, space: SearchSpace, seed: int, rng: np.random.Generator, structural,
          force_small: bool, latency=None) -> Sample:
    """One draw of every decision from rng, then the widths projected onto the structural requirements."""
    u_channels = {str(grp.id): rng.random(grp.channels) for grp in space.groups}
    u_blocks = rng.random(len(space.blocks))
    picks = {}
    for did, options in space.decisions.items():
        probs = np.asarray(state.choices.get(did, [1.0 / len(options)] * len(options)), dtype=float)
        picks[did] = int(rng.choice(len(options), p=probs / probs.sum()))
    z = rng.standard_normal(len(space.groups))
    scales = {str(grp.id): float(state.scales.get(str(grp.id), 0.0) + state.spread * zg)
              for grp, zg in zip(space.groups, z)}
    u_factorize = rng.random(len(space.factorizable))  # drawn after the rest: older generators' streams stay the same
    u_stride = rng.random(len(space.stridable))  # likewise, after the factorizations
    dropped = [b for b, u in zip(space.blocks, u_blocks) if force_small or u >= state.blocks.get(b.id, 1.0)]
    g = apply_decisions(space.prototype, picks)
    if dropped:
        g = drop_blocks(g, dropped)
    p_stride = [state.stride.get(name, 0.0) for name in space.stridable]
    g, strided = stride_convs(g, [name for name, u, p in zip(space.stridable, u_stride, p_stride)
                                  if p > 0 and (force_small or u < p)])
    p_factorize = [state.factorize.get(name, 0.0) for name in space.factorizable]
    factorized = tuple(name for name, u, p in zip(space.factorizable, u_factorize, p_factorize)
                       if name in g and p > 0 and (force_small or u < p))
    if factorized:
        g = factorize_convs(g, list(factorized))
    plan = channel_plan(g)
    program = compile_costs(g)
    predictor = latency.program(g, program.width_groups, program.plan) if latency is not None else None
    proto_group = {m: grp for grp in space.groups for m in grp.members}
    # order each group's channels by u/p: a smaller ratio is kept first (p = 0 is never kept unless forced)
    order, columns = {}, []
    for gid in program.width_groups:
        grp = plan.groups[gid]
        proto = next((proto_group[m] for m in grp.members if m in proto_group), None)
        if proto is None:
            columns.append(None)
            continue
        n = grp.channels  # may be below the prototype's after a choice picked a narrower option
        p = np.asarray(state.channels[str(proto.id)][:n], dtype=float) * np.exp(scales[str(proto.id)])
        with np.errstate(divide="ignore"):
            ratio = np.where(p > 0, u_channels[str(proto.id)][:n] / np.maximum(p, 1e-12), np.inf)
        order[gid] = np.argsort(ratio, kind="stable")
        m = channel_step(grp.multiple_of, n, state.round_to)
        low = max(m, -(-space.min_width(proto, state.min_fraction, state.round_to) // m) * m)
        columns.append((np.sort(ratio), min(low, n // m * m), m, str(proto.id)))
    grid = np.asarray([0.0] if force_small else FILL_GRID if state.utility == "accuracy" else LAMBDA_GRID)
    rows, macs, params, lat = _rows_at(program, plan, columns, grid, predictor)
    ok = [i for i in range(len(grid)) if _structural_ok(structural, macs[i], params[i], latency=lat[i])]
    i = ok[0] if ok else len(grid) - 1
    if ok and i > 0:  # refine λ between the last grid value that broke a requirement and the first that holds
        fine = np.linspace(grid[i - 1], grid[i], REFINE + 1)[1:]
        fine_rows, fine_macs, fine_params, fine_lat = _rows_at(program, plan, columns, fine, predictor)
        j = next(j for j in range(len(fine))
                 if _structural_ok(structural, fine_macs[j], fine_params[j], latency=fine_lat[j]))
        lat = [*fine_lat, *lat[i + 1:]]
        grid, rows, i = np.concatenate([fine, grid[i + 1:]]), np.vstack([fine_rows, rows[i + 1:]]), j
    while True:  # memory needs the full cost model: step down the grid until it holds
        widths = {program.width_groups[j]: int(rows[i, j]) for j, col in enumerate(columns) if col is not None}
        child = apply_widths(g, widths, plan)
        report = network_cost(child)
        meets = _structural_ok(structural, report.macs, report.params, report.peak_activation_bytes, lat[i])
        if meets or i >= len(grid) - 1 or not any(r.metric == "memory" for r in structural):
            break
        i += 1
    kept, named_widths = {}, {}
    for j, col in enumerate(columns):
        if col is None:
            continue
        gid = program.width_groups[j]
        w = int(rows[i, j])
        keep = sorted(int(c) for c in order[gid][:w])
        named_widths[col[3]] = w
        for member in plan.groups[gid].members:
            kept[member] = keep
    return Sample(seed=seed, graph=child, kept=kept, widths=named_widths, dropped=tuple(b.id for b in dropped),
                  picks=picks, macs=report.macs, params=report.params, memory=report.peak_activation_bytes,
                  meets=meets, arch=architecture_hash(child), scales=scales, factorized=factorized,
                  strided=strided, latency=None if lat[i] is None else float(lat[i]))


def _rows_at(program, plan, columns: list, grid: np.ndarray, predictor=None) -> tuple:
    """The width row each threshold in grid gives (channels with u / p below it), with its MACs and params and
    its predicted latency (None per row without a predictor)."""
    rows = np.empty((len(grid), len(program.width_groups)), dtype=np.int64)
    for j, col in enumerate(columns):
        gid = program.width_groups[j]
        if col is None:
            rows[:, j] = plan.groups[gid].channels
            continue
        sorted_ratio, low, m, _ = col
        counts = np.searchsorted(sorted_ratio, grid, side="left")
        rows[:, j] = np.clip(counts // m * m, low, len(sorted_ratio) // m * m)
    macs, params = batched_costs(program, rows)
    lat = predictor.predict(rows) if predictor is not None else [None] * len(rows)
    return rows, macs, params, lat


def describe_sample(s: Sample) -> str:
    """One line: what a sample is."""
    return f"seed {s.seed}: {s.macs / 1e6:.2f} M MACs, {s.params / 1e3:.1f} K params, arch {s.arch}"
