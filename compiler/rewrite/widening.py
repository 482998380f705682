"""Widened networks: free channel groups given more channels than the prototype has, with its trained weights inside.

Pruning and width scaling only narrow a network. A MAC budget that another rewrite frees (a strided conv costs a
quarter of the MACs after it, a dropped block its whole body) can be spent on width only if the search may go
past the prototype's widths. `widen(g, factor)` is g with every free channel group (no `fixed` member, no declared
choice of width) at `factor` times its channels, rounded up to the group's multiple; `embed_weights` puts a
trained state of g into it. The prototype's channels sit in the widened network at `Widened.kept` (the first ones
of the group, or the first ones of each block when a grouped conv, an equal split or a channel shuffle cuts the
group into blocks), so narrowing the widened network back to them gives g and its weights unchanged. Every other
entry of a weight starts from the widened network's own initialisation, except where one of g's output channels
reads a new input channel: that entry is zero, so the widened network computes exactly what g computes, and its
new channels are free to learn (as Net2Net's function-preserving widening, by zero columns instead of copies).
Synthesis then narrows the widened network as it narrows a prototype: a kept old channel inherits its weights, a
kept new one starts from its initialisation. Tensors are numpy arrays or torch tensors; the result is numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np

from compiler.ops import OPS
from compiler.rewrite.coupling import ChannelGroup, apply_widths, channel_plan
from compiler.rewrite.transfer import CHOSEN, transfer_weights

WIDEN = 2.0  # the default bound: a group may grow to twice the prototype's channels


@dataclass(frozen=True)
class Widened:
    """A widened network and where the prototype's channels sit in it."""

    graph: nx.DiGraph
    kept: dict[str, list[int]]  # conv/linear node -> the widened output channels that are the prototype's, in order
    widths: dict[int, int]  # group id -> its width in the widened network (only the groups that grew)


def widenable_groups(g: nx.DiGraph) -> list[ChannelGroup]:
    """Free channel groups whose width no `choice(...)` declares (the user's options are the user's decision)."""
    chosen = {name for name, d in g.nodes(data=True) if "out" in d.get("choices", {})}
    return [grp for grp in channel_plan(g).groups if not grp.fixed and not chosen & set(grp.writers)]


def widened_width(grp: ChannelGroup, factor: float) -> int:
    """factor x the group's channels, rounded up to its multiple."""
    m = grp.multiple_of
    return max(grp.channels, math.ceil(grp.channels * factor / m - 1e-9) * m)


def block_positions(channels: int, wide: int, blocks: int) -> list[int]:
    """Where `channels` prototype channels sit among `wide` when both are cut into `blocks` equal blocks: the first
    channels of each block, so a grouped conv, an equal split or a shuffle sees each old channel in its old block."""
    old, new = channels // blocks, wide // blocks
    return [b * new + i for b in range(blocks) for i in range(old)]


def widen(g: nx.DiGraph, factor: float = WIDEN) -> Widened:
    """g with every widenable group at factor x its channels (factor >= 1; 1 gives g itself)."""
    if factor < 1:
        raise ValueError(f"a widening factor is at least 1, got {factor}")
    plan = channel_plan(g)
    widths = {grp.id: widened_width(grp, factor) for grp in widenable_groups(g)}
    widths = {gid: w for gid, w in widths.items() if w > plan.groups[gid].channels}
    wide = apply_widths(g, widths, plan) if widths else g
    kept = {}
    for grp in plan.groups:
        if grp.id in widths:
            positions = block_positions(grp.channels, widths[grp.id], grp.multiple_of)
            kept.update({name: positions for name in grp.writers
                         if OPS[g.nodes[name]["op"]].channels in CHOSEN and name not in plan.depthwise})
    return Widened(wide, kept, widths)


def _output_dim(wide: nx.DiGraph, key: str) -> int:
    """The dim of a weight that indexes output channels: 1 for a transposed conv's [in, out, k, k], else 0."""
    node = key.rsplit(".", 1)[0]
    return 1 if node in wide and OPS[wide.nodes[node]["op"]].layer == "conv_transpose" else 0


def _numpy(value) -> np.ndarray:
    """A numpy copy of a torch tensor or an array."""
    return value.detach().cpu().numpy().copy() if hasattr(value, "detach") else np.array(value)


def embed_weights(g: nx.DiGraph, state: Mapping, widened: Widened, init: Mapping) -> dict[str, np.ndarray]:
    """The widened network's state: g's trained `state` where g has the channel, `init` (the widened network's own
    initial state) for new output channels, zero where an old output channel reads a new input channel."""
    positions = {key: np.arange(int(np.prod(np.shape(value)))).reshape(np.shape(value)) for key, value in init.items()}
    taken = transfer_weights(widened.graph, positions, g, widened.kept)  # g's tensors as positions in the wide ones
    out = {}
    for key, value in init.items():
        new = _numpy(value)
        if key in taken:
            index = np.asarray(taken[key]).ravel()
            inherited = np.zeros(new.size, dtype=bool)
            inherited[index] = True
            new.reshape(-1)[index] = _numpy(state[key]).reshape(-1)
            if new.ndim >= 2:  # a row (output channel) that g has reads nothing new
                dim = _output_dim(widened.graph, key)
                mask = np.moveaxis(inherited.reshape(new.shape), dim, 0)
                rows = mask.reshape(mask.shape[0], -1).any(axis=1)
                view = np.moveaxis(new, dim, 0)
                view[rows] = np.where(mask[rows], view[rows], 0)
        out[key] = new
    return out
