"""The search space of a prototype: what the generator may rewrite (channel groups, skippable blocks, factorizable
and stridable convs, choices)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from compiler.cost import batched_costs, compile_costs, network_cost
from compiler.diagnostics import NetError
from compiler.ir import copy_graph
from compiler.rewrite.coupling import ChannelGroup, ChannelPlan, channel_plan
from compiler.rewrite.factorize import factorizable_convs, factorize_convs
from compiler.rewrite.residual import SkippableBlock, drop_blocks, skippable_blocks
from compiler.rewrite.striding import stridable_convs, stride_convs
from compiler.rewrite.widening import widen as widen_network
from compiler.shapes import infer_shapes


@dataclass(frozen=True, eq=False)
class SearchSpace:
    """Everything G(s; θ) decides about: free channel groups, optional blocks, convs it may factorize into
    depthwise + 1 x 1 or give stride 2, and declared choices."""

    prototype: nx.DiGraph
    plan: ChannelPlan
    groups: tuple[ChannelGroup, ...]  # the free groups (keys of θ's channel probabilities, by str(id))
    blocks: tuple[SkippableBlock, ...]
    factorizable: tuple[str, ...]  # conv node names (compiler.rewrite.factorize)
    stridable: tuple[str, ...]  # conv and depthwise conv node names (compiler.rewrite.striding)
    decisions: dict[str, list]  # decision id -> options (first = prototype's)
    # group id -> the prototype's channels where `prototype` is a widened prototype (compiler.rewrite.widening) and the
    # group grew: its channel positions that were the prototype's
    original: dict[int, list[int]] = field(default_factory=dict)
    base: nx.DiGraph | None = None  # the prototype before widening (None: `prototype` itself)
    widen: float = 1.0  # how far free groups were widened (search_space's argument)

    @property
    def unwidened(self) -> nx.DiGraph:
        """The user's prototype, as the generator saves it (search_space(unwidened, widen) gives this space)."""
        return self.prototype if self.base is None else self.base

    def group(self, gid: int) -> ChannelGroup:
        return self.plan.groups[gid]

    def min_width(self, grp: ChannelGroup, min_fraction: float, round_to: int = 1) -> int:
        """The fewest channels a group may keep: a fraction of the (unwidened) prototype's, and at least one step."""
        m = channel_step(grp.multiple_of, grp.channels, round_to)
        want = max(1, int(np.ceil(len(self.original.get(grp.id, range(grp.channels))) * min_fraction)))
        return max(m, (want + m - 1) // m * m)

    def unrounded(self, round_to: int) -> list[ChannelGroup]:
        """The free groups too narrow for --round-to N: they keep their own steps (and minimum)."""
        return [grp for grp in self.groups
                if channel_step(grp.multiple_of, grp.channels, round_to) != math.lcm(grp.multiple_of, round_to)]


def channel_step(multiple_of: int, channels: int, round_to: int = 1) -> int:
    """The step a group's width moves in: its own multiple, or with --round-to N the least common multiple of the
    two where the group has that many channels (hardware runs channels in blocks; a narrower group keeps its own)."""
    step = math.lcm(multiple_of, round_to)
    return step if channels >= step else multiple_of


def search_space(g: nx.DiGraph, widen: float = 1.0) -> SearchSpace:
    """The prototype's search space, its free groups widened to `widen` x their channels (compiler.rewrite.widening;
    1: only narrowing); NetError when synthesis could change nothing (saying why)."""
    original, base = {}, g
    if widen > 1:
        widened = widen_network(g, widen)
        writers = {name: grp.id for grp in channel_plan(widened.graph).groups for name in grp.writers}
        original = {writers[name]: positions for name, positions in widened.kept.items()}
        g = widened.graph
    plan = channel_plan(g)
    groups = tuple(grp for grp in plan.groups if not grp.fixed and grp.channels > grp.multiple_of)
    blocks = tuple(skippable_blocks(g))
    decisions = dict(g.graph.get("decisions", {}))
    for did, options in decisions.items():
        for name, d in g.nodes(data=True):
            for attr, ref in d.get("choices", {}).items():
                if ref == did and attr == "out" and any(o > options[0] for o in options):
                    raise NetError(f"choice '{did}' of '{name}': synthesis narrows channels from the prototype's "
                                   f"count, so the first option must be the largest ({options})", d.get("span"))
    factorizable = tuple(factorizable_convs(g))
    stridable = tuple(stridable_convs(g))
    if not groups and not blocks and not decisions and not factorizable and not stridable:
        reasons = sorted({grp.reason for grp in plan.groups if grp.fixed})
        raise NetError(f"network '{g.graph['name']}' has nothing synthesis can rewrite: every channel group is fixed "
                       "and there are no skippable residual blocks, factorizable or stridable convs or choice(...) "
                       "declarations",
                       notes=reasons[:6])
    return SearchSpace(g, plan, groups, blocks, factorizable, stridable, decisions, original,
                       base if base is not g else None, widen if base is not g else 1.0)


def apply_decisions(g: nx.DiGraph, picks: dict[str, int]) -> nx.DiGraph:
    """A copy of g with every declared choice set to the picked option, shapes re-inferred."""
    if not picks:
        return g
    new = copy_graph(g)
    for _, d in new.nodes(data=True):
        for attr, did in d.get("choices", {}).items():
            if did in picks:
                d["attrs"][attr] = new.graph["decisions"][did][picks[did]]
        d["choices"] = {}
    new.graph["decisions"] = {}
    return infer_shapes(new)


def largest_reachable(space: SearchSpace) -> dict[str, float] | None:
    """The largest MACs, parameters and peak memory the generator can produce: the prototype's own channels,
    no block dropped, nothing factorized or strided, under the costliest combination of choices (None when
    there are too many combinations to try)."""
    combos = [{}]
    for did, options in space.decisions.items():
        combos = [{**c, did: i} for c in combos for i in range(len(options))]
        if len(combos) > 64:
            return None
    best = {"macs": 0.0, "params": 0.0, "memory": 0.0}
    for picks in combos:
        report = network_cost(apply_decisions(space.prototype, picks))
        for key, value in (("macs", report.macs), ("params", report.params), ("memory", report.peak_activation_bytes)):
            best[key] = max(best[key], float(value))
    return best


def smallest_reachable(space: SearchSpace, min_fraction: float, factorize: bool = False, stride: bool = False,
                       round_to: int = 1, latency=None) -> dict[str, float]:
    """The MACs, parameters and memory of the smallest network the generator can produce (every block dropped,
    and every factorizable conv factorized and stridable conv strided when the generator may do so); with a
    latency model (gensynth.latency.model), the fastest predicted latency among its narrowest widths and those
    rounded up to multiples of 2, 4, 8 and 16 (narrower is not always faster)."""
    g = drop_blocks(space.prototype, list(space.blocks)) if space.blocks else space.prototype
    if stride:
        g, _ = stride_convs(g, list(space.stridable))
    if factorize:
        g = factorize_convs(g, [name for name in space.factorizable if name in g])
    program = compile_costs(g)
    by_member = {m: grp for grp in space.groups for m in grp.members}
    row = []
    for gid in program.width_groups:
        grp = program.plan.groups[gid]
        proto = next((by_member[m] for m in grp.members if m in by_member), None)
        row.append(space.min_width(proto, min_fraction, round_to) if proto else grp.channels)
    macs, params = batched_costs(program, np.array([row], dtype=np.int64))
    memory = network_cost(g).peak_activation_bytes
    out = {"macs": float(macs[0]), "params": float(params[0]), "memory": float(memory)}
    if latency is not None:
        base = np.array(row, dtype=np.int64)
        top = program.prototype_widths // program.multiple_of * program.multiple_of
        rows = [base] + [np.minimum(-(-base // step) * step, np.maximum(top, base))
                         for step in (np.lcm(program.multiple_of, a) for a in (2, 4, 8, 16))]
        out["latency"] = float(latency.program(g, program.width_groups, program.plan).predict(np.stack(rows)).min())
    return out
