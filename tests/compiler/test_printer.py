"""The canonical printer: exact text for a known network, literals, non-default parameters only, line
wrapping, and graphs that never came from text."""

from __future__ import annotations

import pytest

from compiler.ir import add_node, new_graph, structure
from compiler.printer import LINE_WIDTH, format_value, key_attrs, print_network
from compiler.shapes import infer_shapes
from netdsl.loader import load_network_text

SOURCE = """
network My {
    input x: [4, 8, 8]
    input z: [4, 8, 8]
    a = x -> fixed conv(choice(8, 4), k=3, padding=1) -> bn(eps=0.001) -> relu
    b = z -> conv(8, 1, bias=false)
    s, t = add(a, b) -> split([2, 6])
    output o = concat(s, t) -> gap -> linear(3)
    output p = b -> upsample(1.5, mode="bilinear", align_corners=true)
}
"""

PRINTED = """network My {
    input x: [4, 8, 8]
    input z: [4, 8, 8]
    @x
        -> fixed conv(choice(8, 4, id="conv.out"), k=3, padding=1) as conv
        -> bn(eps=0.001) as bn
        -> relu as relu
    @z -> conv(8, k=1, bias=false) as conv_1
    add(@relu, @conv_1) as add
    @add -> split([2, 6], part=0) as split
    @add -> split([2, 6], part=1) as split_1
    concat(@split, @split_1) as concat -> gap as gap -> linear(3) as linear
    @conv_1 -> upsample(scale=1.5, mode="bilinear", align_corners=true) as upsample
    output o = @linear
    output p = @upsample
}
"""


def test_canonical_text():
    g = load_network_text(SOURCE, "my.net")
    assert print_network(g) == PRINTED
    again = load_network_text(PRINTED, "printed.net")
    assert structure(again) == structure(g)
    assert print_network(again) == PRINTED


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (None, "none"), ("same", '"same"'), (3, "3"), (2.0, "2.0"), (0.5, "0.5"),
    (1e-05, "1e-05"), (1e20, "1e+20"), ([1, [True, None], "a"], '[1, [true, none], "a"]'), ((1, 2), "[1, 2]"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_printed_floats_read_back_as_floats():
    g = load_network_text("network N { input x: [2, 4, 4]\n output o = x -> bn(eps=1e-05, momentum=1.0) -> dropout(0.0) }",
                          "f.net")
    again = load_network_text(print_network(g), "p.net")
    assert again.nodes["bn"]["attrs"]["momentum"] == 1.0 and isinstance(again.nodes["bn"]["attrs"]["momentum"], float)
    assert again.nodes["dropout"]["attrs"]["p"] == 0.0 and isinstance(again.nodes["dropout"]["attrs"]["p"], float)
    assert structure(again) == structure(g)


def test_key_attrs_show_only_what_differs_from_pytorch_defaults():
    g = load_network_text("network N { input x: [2, 8, 8]\n output o = x -> conv(4, 3, stride=1, bias=true)"
                          " -> maxpool(2, stride=2) -> bn -> dwconv(3, multiplier=2) -> split(4, part=1) }", "k.net")
    assert key_attrs(g, "conv") == "4, k=3"
    assert key_attrs(g, "maxpool") == "k=2, stride=2"  # stride=None (the default) differs from an explicit 2
    assert key_attrs(g, "bn") == ""
    assert key_attrs(g, "dwconv") == "k=3, multiplier=2"
    assert key_attrs(g, "split") == "4, part=1"


def test_long_chains_wrap_one_step_per_line():
    g = load_network_text("network N { input x: [2, 8, 8]\n output o = x -> relu -> relu }", "w.net")
    assert "    @x -> relu as relu -> relu as relu_1\n" in print_network(g)
    g = load_network_text("network N { input x: [2, 8, 8]\n output o = x -> repeat(6) conv(4, 3, padding=1, bias=false) }",
                          "w.net")
    text = print_network(g)
    assert all(len(line) <= LINE_WIDTH for line in text.splitlines())
    assert "\n        -> conv(4, k=3, padding=1, bias=false) as conv_5\n" in text


def test_a_chosen_value_prints_first_as_the_new_prototype():
    g = load_network_text("network N { input x: [2, 8, 8]\n output o = x -> conv(choice(8, 4, 16, id=\"w\"), 1) }", "c.net")
    g.nodes["conv"]["attrs"]["out"] = 4  # what synthesis does when it picks an option
    infer_shapes(g)
    text = print_network(g)
    assert 'conv(choice(4, 8, 16, id="w"), k=1) as conv' in text
    again = load_network_text(text, "p.net")
    assert again.nodes["conv"]["shape"] == (4, 8, 8) and again.graph["decisions"] == {"w": [4, 8, 16]}


def test_graphs_built_without_text_print_and_load():
    g = new_graph("hand made!")
    add_node(g, "img", "input", {"shape": [3, 16, 16]}, [])
    add_node(g, "stem.conv", "conv", {"out": 8, "k": 3, "stride": 2, "padding": 1, "dilation": 1, "groups": 1,
                                      "bias": False}, ["img"], fixed=True)
    add_node(g, "stem.act", "relu", {}, ["stem.conv"])
    add_node(g, "left", "conv", {"out": 8, "k": 1, "stride": 1, "padding": 0, "dilation": 1, "groups": 1,
                                 "bias": True}, ["stem.act"])
    add_node(g, "sum", "add", {}, ["left", "stem.act"])
    add_node(g, "head", "gap", {}, ["sum"])
    g.graph["outputs"] = {"features": "head"}
    infer_shapes(g)
    text = print_network(g)
    assert text.startswith("network hand_made_ {\n    input img: [3, 16, 16]\n")
    assert "fixed conv(8, k=3, stride=2, padding=1, bias=false) as stem.conv" in text
    assert "add(@left, @stem.act) as sum -> gap as head" in text
    again = load_network_text(text, "hand.net")
    a, b = structure(g), structure(again)
    assert a["name"] != b["name"]  # the name was made a valid identifier
    del a["name"], b["name"]
    assert a == b


def test_multi_consumer_values_are_referenced_not_chained():
    g = load_network_text("network N { input x: [2, 4, 4]\n y = x -> relu\n output o = add(y -> sigmoid, y -> relu6) }",
                          "m.net")
    text = print_network(g)
    assert "    @x -> relu as relu\n    @relu -> sigmoid as sigmoid\n    @relu -> relu6 as relu6\n" in text
    assert "    add(@sigmoid, @relu6) as add\n" in text
