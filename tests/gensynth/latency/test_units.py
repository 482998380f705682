"""Latency units: a partition of the network into fused kernels, signatures without channel counts, units alone."""

from __future__ import annotations

import pytest

from compiler.cost import network_cost
from compiler.rewrite.coupling import apply_widths, channel_plan, evaluate
from gensynth.latency.units import describe, network_units, unit_channels, unit_graph
from netdsl.loader import load_network_text
from tests.gensynth.synth_fixtures import TINY_NET

BRANCHY = """
network Branchy() {
    input x: [3, 16, 16]
    a = x -> conv(8, k=3, padding=1) -> bn -> relu
    b = a -> conv(8, k=1) -> relu6
    c = a -> dwconv(k=3, padding=1) -> bn
    output y = concat(b, c) -> gap -> flatten -> linear(5)
}
"""


@pytest.fixture(scope="module")
def tiny():
    return load_network_text(TINY_NET)


def test_units_partition_the_network_and_fuse_followers(tiny):
    units = network_units(tiny)
    nodes = [n for u in units for n in u.nodes]
    assert sorted(nodes) == sorted(n for n, d in tiny.nodes(data=True) if d["op"] != "input")
    heads = [tiny.nodes[u.head]["op"] for u in units]
    assert heads == ["conv", "conv", "add", "maxpool", "conv", "gap", "linear"]
    first = units[0]
    assert [tiny.nodes[n]["op"] for n in first.nodes] == ["conv", "bn", "relu"]
    assert "conv k=3 + bn + relu on 12x12" == describe(first.signature)


def test_a_tensor_read_twice_ends_its_unit():
    g = load_network_text(BRANCHY)
    units = {u.head: u for u in network_units(g)}
    ops = {h: [g.nodes[n]["op"] for n in u.nodes] for h, u in units.items()}
    assert ["conv", "bn", "relu"] in ops.values()  # a is read by two convs, but relu is the unit's last node
    assert ["dwconv", "bn"] in ops.values() and ["gap", "flatten"] in ops.values()
    dense = {g.nodes[u.head]["op"]: u.dense for u in units.values()}
    assert dense["conv"] and dense["linear"] and not dense["dwconv"] and not dense["concat"]


def test_signatures_ignore_channel_counts_but_not_resolution(tiny):
    plan = channel_plan(tiny)
    narrow = apply_widths(tiny, {grp.id: grp.channels // 2 for grp in plan.free_groups()}, plan)
    assert [u.signature for u in network_units(narrow)] == [u.signature for u in network_units(tiny)]
    units = network_units(tiny)
    assert units[0].signature != units[4].signature  # 12x12 against 6x6


def test_unit_graph_is_the_unit_alone_at_given_channels(tiny):
    plan = channel_plan(tiny)
    widths = [grp.channels for grp in plan.groups]
    units = network_units(tiny)
    for unit in units:
        channels = tuple(evaluate(e, widths) for e in unit_channels(tiny, plan, unit))
        alone = unit_graph(tiny, unit, channels)
        assert alone.nodes[alone.graph["outputs"]["y"]]["shape"] == tiny.nodes[unit.last]["shape"]
    conv = units[4]  # 12 -> 24 channels on 6x6
    alone = unit_graph(tiny, conv, (5, 7))
    assert alone.nodes[alone.graph["outputs"]["y"]]["shape"] == (7, 6, 6)
    assert network_cost(alone).macs == 5 * 7 * 9 * 36
