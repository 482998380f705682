"""Skippable residual blocks: dropping any set of them leaves a sound network whose other nodes keep their shapes."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.cost import network_cost
from compiler.ir import architecture_hash
from compiler.lint import lint
from compiler.printer import print_network
from compiler.rewrite.residual import drop_blocks, skippable_blocks
from netdsl.loader import load_network, load_network_text

BLOCKS = """
network Blocks {
    input x: [4, 8, 8]
    a = x -> conv(8, k=3, padding=1) as stem
    b = add(a, a -> conv(8, k=3, padding=1) as body -> relu as body_relu) as skip
    c = add(b, b) as doubled
    d = add(c, c -> fixed conv(8, k=1) as frozen) as kept
    output y = d -> gap as pool -> linear(2) as fc
}
"""


def test_which_blocks_are_skippable_and_what_dropping_one_leaves():
    g = load_network_text(BLOCKS, "blocks.net")
    (block,) = skippable_blocks(g)  # add(b, b) has no body; the fixed conv's block stays
    assert (block.add, block.shortcut, block.body) == ("skip", "stem", ("body", "body_relu"))
    dropped = lint(drop_blocks(g, [block]))
    assert "skip" not in dropped and "body" not in dropped
    assert dropped.nodes["doubled"]["inputs"] == ["stem", "stem"] and list(dropped.predecessors("doubled")) == ["stem"]
    assert g.nodes["doubled"]["inputs"] == ["skip", "skip"]  # the original is untouched


NESTED = """
network Nested {
    input x: [4, 8, 8]
    a = x -> conv(8, k=3, padding=1) as stem
    p = a -> conv(8, k=3, padding=1) as p
    q = add(p, p -> conv(8, k=1) as inner_body) as inner
    b = add(a, q -> relu as r) as outer
    output y = add(b, b -> conv(8, k=1) as chained_body) as chained -> gap as pool -> linear(2) as fc
}
"""


@pytest.mark.parametrize("order", [["inner", "outer", "chained"], ["chained", "outer", "inner"]])
def test_nested_and_chained_blocks_drop_together_in_any_order(order):
    g = load_network_text(NESTED, "nested.net")
    blocks = {b.id: b for b in skippable_blocks(g)}
    assert set(blocks) == {"inner", "outer", "chained"}
    out = lint(drop_blocks(g, [blocks[i] for i in order]))
    assert list(out) == ["x", "stem", "pool", "fc"] and out.nodes["pool"]["inputs"] == ["stem"]


@cache
def example(name: str):
    g = load_network(f"examples/{name}.net")
    return g, skippable_blocks(g)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "detector_small"])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_any_set_of_dropped_blocks_leaves_a_sound_network_of_the_same_shapes(name, data):
    g, blocks = example(name)
    chosen = data.draw(st.lists(st.sampled_from(blocks), unique_by=lambda b: b.id, max_size=len(blocks)))
    out = lint(drop_blocks(g, chosen))
    gone = {n for b in chosen for n in (*b.body, b.add)}
    assert set(out) == set(g) - gone
    assert all(out.nodes[n]["shape"] == g.nodes[n]["shape"] for n in out)
    assert network_cost(out).params <= network_cost(g).params
    assert architecture_hash(load_network_text(print_network(out), "again.net")) == architecture_hash(out)
