"""Strided convs: stride 2 where the network allows it, only spatial extents change, parameters keep their shapes."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.backend.lower import lower_to_torch
from compiler.cost import network_cost
from compiler.ir import architecture_hash
from compiler.lint import lint
from compiler.printer import print_network
from compiler.rewrite.striding import can_stride, stridable_convs, stride_convs
from netdsl.loader import load_network, load_network_text

MIXED = """
network Mixed {
    input x: [3, 16, 16]
    a = x -> conv(8, k=3, padding="same") as same -> relu as same_relu
    b = relu(add(a, a -> conv(8, k=3, padding=1) as residual)) as join
    c = b -> conv(8, k=1) as pointwise -> relu as pw_relu
    d = c -> fixed conv(8, k=3, padding=1) as frozen -> relu as f_relu
    e = d -> conv(8, k=3, padding=1, stride=2) as already -> relu as a_relu
    f = e -> conv(8, k=3, padding=1) as last -> gap as pool
    output y = f -> linear(2) as fc
}
"""

FLAT = """
network Flat {
    input x: [1, 8, 8]
    output y = x -> conv(4, k=3, padding=1) as c -> flatten as flat -> linear(3) as fc
}
"""


def test_which_convs_may_be_strided():
    g = load_network_text(MIXED, "mixed.net")
    # not the residual branch (the add would see two sizes), a 1 x 1 conv, a fixed one or one already strided
    assert stridable_convs(g) == ["same", "last"]
    assert not can_stride(load_network_text(FLAT, "flat.net"), "c")  # the linear layer would see more features
    even = load_network_text(MIXED.replace('k=3, padding="same"', 'k=2, padding="same"'), "even.net")
    assert stridable_convs(even) == ["last"]  # "same" around an even kernel pads unequally: no explicit padding keeps it
    fashion = load_network("examples/fashion_cnn.net")
    assert stridable_convs(fashion) == ["conv", "conv_2", "conv_4"]  # the stem and each stage's first conv


def test_depthwise_convs_outside_residual_blocks_may_be_strided():
    g = load_network("examples/mobilenet_v2.net")
    found = stridable_convs(g)
    # the three stride-1 blocks that change width (32 -> 16, 64 -> 96, 160 -> 320) have no shortcut to break
    assert len(found) == 3 and all(g.nodes[n]["op"] == "dwconv" for n in found)
    assert sorted(g.nodes[n]["shape"][0] for n in found) == [32, 384, 960]  # their expanded inputs' widths
    s, done = stride_convs(g, found[:1])
    lint(s)
    assert done == tuple(found[:1])
    assert network_cost(s).params == network_cost(g).params and network_cost(s).macs < network_cost(g).macs


def test_striding_halves_resolution_downstream_and_keeps_every_parameter():
    g = load_network("examples/fashion_cnn.net")
    s, done = stride_convs(g, ["conv"])
    lint(s)
    assert done == ("conv",) and s.nodes["conv"]["attrs"]["stride"] == 2
    for name, d in g.nodes(data=True):
        old, new = d["shape"], s.nodes[name]["shape"]
        assert old[:1] == new[:1] and len(old) == len(new)
        if len(old) == 3 and name != "image":
            assert new[1] == old[1] // 2, name
    assert network_cost(s).params == network_cost(g).params
    assert network_cost(s).macs < network_cost(g).macs / 3
    assert g.nodes["conv"]["attrs"]["stride"] == 1  # the original is untouched
    # the prototype's weights load into the strided network unchanged, and it runs
    torch.manual_seed(0)
    model = lower_to_torch(s)
    model.load_state_dict(lower_to_torch(g).state_dict())
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_same_padding_becomes_explicit_and_the_result_prints_and_parses_back():
    g = load_network_text(MIXED, "mixed.net")
    s, done = stride_convs(g, ["last", "same", "residual"])
    lint(s)
    assert done == ("same", "last")  # topological order; the residual conv is skipped
    assert s.nodes["same"]["attrs"]["padding"] == 1 and s.nodes["same"]["shape"] == (8, 8, 8)
    again = load_network_text(print_network(s), "again.net")
    assert architecture_hash(again) == architecture_hash(s)


def test_a_conv_that_is_eligible_alone_is_skipped_when_resolution_runs_out():
    text = """
    network Small {
        input x: [1, 10, 10]
        a = x -> conv(4, k=3, padding=1) as first
        b = a -> conv(4, k=3) as second
        output y = b -> conv(4, k=3) as third -> gap as pool -> linear(2) as fc
    }
    """
    g = load_network_text(text, "small.net")
    assert can_stride(g, "first") and can_stride(g, "second")
    s, done = stride_convs(g, ["first", "second"])
    lint(s)
    # alone, 10 -> 5 -> 3 -> 1 and 10 -> 10 -> 4 -> 2; together 5 -> 2, too small for the third 3 x 3 conv
    assert done == ("first",)
    assert s.nodes["third"]["shape"] == (4, 1, 1)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(4, 20), convs=st.lists(st.tuples(st.sampled_from([1, 3, 5]), st.integers(0, 2),
                                                         st.sampled_from([1, 2])), min_size=1, max_size=4),
       picks=st.lists(st.booleans(), min_size=4, max_size=4))
def test_any_set_of_strides_leaves_a_valid_network_with_the_same_parameters(size, convs, picks):
    lines, prev = [], "x"
    for i, (k, pad, stride) in enumerate(convs):
        lines.append(f"    h{i} = {prev} -> conv(4, k={k}, padding={pad}, stride={stride}) as c{i} -> relu as r{i}")
        prev = f"h{i}"
    text = "network Chain {\n" + f"    input x: [2, {size}, {size}]\n" + "\n".join(lines) + \
        f"\n    output y = {prev} -> gap as pool -> linear(3) as fc\n}}\n"
    try:
        g = load_network_text(text, "chain.net")
    except Exception:
        return  # the drawn chain shrinks below one pixel: not a network
    names = [f"c{i}" for i in range(len(convs)) if picks[i]]
    s, done = stride_convs(g, names)
    lint(s)
    assert set(done) <= set(names) and set(done) <= set(stridable_convs(g))
    assert network_cost(s).params == network_cost(g).params
    assert s.nodes["fc"]["shape"] == g.nodes["fc"]["shape"]
    assert all(s.nodes[n]["attrs"]["stride"] == (2 if n in done else g.nodes[n]["attrs"]["stride"])
               for n in g if g.nodes[n]["op"] == "conv")
