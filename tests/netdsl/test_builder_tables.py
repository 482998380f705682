"""What per-stage tables need (issue 23): file-level `let`, list indexing, log/pow, blocks reading the network's
parameters as `network.NAME`, `repeat(0)` and `repeat(n, start=k)`; their errors are located at what the user
wrote."""

from __future__ import annotations

import math

import pytest

from compiler.diagnostics import NetError
from netdsl.loader import load_network, load_network_text


def build(text: str, **kw):
    return load_network_text(text, "t.net", **kw)


def error_of(text: str, **kw) -> NetError:
    with pytest.raises(NetError) as info:
        build(text, **kw)
    return info.value


def at(err: NetError) -> tuple[int, int]:
    return err.span.line, err.span.column


STAGES = """
let widths = [8, 16, 24]
let depths = [1, 2, 0]
let last = widths[-1] * 2

block unit(out, stride=1) {
    conv(out, k=3, stride=stride, padding=1, bias=false) as conv1 -> bn as bn1 -> relu
}

# a stage: a first unit that may stride, then depths[i] - 1 more (none for a stage of one)
block stage(i) {
    unit(divisible(widths[i] * network.width), stride=2) as first
        -> repeat(depths[i] - 1, start=1) unit(divisible(widths[i] * network.width)) as more
}

network Net(width=1.0, classes=10) {
    input image: [3, 32, 32]
    stage(0) as s0
    stage(1) as s1
    output logits = conv(last, k=1) as head -> gap -> linear(classes) as fc
}
"""


def test_file_constants_indexing_network_parameters_and_stages_of_one():
    g = build(STAGES)
    convs = [n for n, d in g.nodes(data=True) if d["op"] == "conv"]
    # stage 0 has one unit (repeat(0) adds none), stage 1 two: the second numbered from start=1
    assert convs == ["s0.first.conv1", "s1.first.conv1", "s1.more.1.conv1", "head"]
    assert [g.nodes[c]["shape"][0] for c in convs] == [8, 16, 16, 48]
    assert g.nodes["s1.first.conv1"]["attrs"]["stride"] == 2 and g.nodes["s1.more.1.conv1"]["attrs"]["stride"] == 1
    wide = build(STAGES, params={"width": 2.0})
    assert wide.nodes["s1.more.1.conv1"]["shape"][0] == 32  # the block read the overridden network parameter


def test_repeat_zero_passes_its_input_through():
    g = build("network N { input x: [4, 8, 8]\n y = x -> repeat(0) conv(4, 3, padding=1) -> relu\n"
              "z = repeat(0) conv(8, 1)\n output o = add(y, z) }")
    assert [n for n in g if g.nodes[n]["op"] != "input"] == ["relu", "add"]
    assert g.nodes["add"]["inputs"] == ["relu", "relu"]  # z is the current value, y's relu, untouched
    block = build("block b(c) { conv(c, 1) }\nnetwork N { input x: [4, 8, 8]\n"
                  "output o = x -> repeat(0) b(8) as none_of_these -> relu }")
    assert list(block) == ["x", "relu"] and not block.graph["scopes"]


def test_repeat_start_numbers_the_names():
    g = build("network N { input x: [4, 8, 8]\n x -> conv(4, 1) as features.0\n"
              "output o = repeat(3, start=1) relu as features }")
    assert [n for n in g if n != "x"] == ["features.0", "features.1", "features.2", "features.3"]
    err = error_of("network N { input x: [4, 8, 8]\n output o = x -> repeat(2, start=1) relu }")
    assert "start= numbers the names given by `as`" in err.message and at(err) == (2, 34)
    err = error_of("network N { input x: [4, 8, 8]\n output o = x -> repeat(2, start=-1) relu as r }")
    assert "repeat start must be a non-negative integer, got the int -1" in err.message


def test_a_bad_repeat_count_is_reported_at_the_call_that_passed_it():
    text = ("block stage(n) {\n"
            "    conv(8, 1) -> repeat(n - 1) relu\n"
            "}\n"
            "block outer(depth) { stage(depth) }\n"
            "network N {\n"
            "    input x: [4, 8, 8]\n"
            "    output o = x -> outer(depth=0)\n"
            "}\n")
    err = error_of(text)
    assert "repeat count must be a non-negative integer, got the int -1 (n - 1 with n = 0)" in err.message
    assert at(err) == (7, 27)  # depth=0 in the network: passed on by outer to stage unchanged
    assert err.notes[0] == "'n' is used as the repeat count at t.net:2:26"
    # the traceback of block calls: stage inside outer inside the network
    assert err.notes[1:] == ["in block 'stage', called at t.net:4:22: stage(depth)"]
    direct = error_of("block stage(n) { repeat(n) relu }\nnetwork N { input x: [4, 8, 8]\noutput o = x -> stage(-2) }")
    assert at(direct) == (3, 23) and "got the int -2" in direct.message


def test_network_parameters_are_read_explicitly():
    g = build("block b(c=network.width * 2) { conv(c, 1) -> conv(network.width, 1) }\n"
              "network N(width=4) { input x: [4, 8, 8]\n output o = x -> b }")
    assert [g.nodes[n]["attrs"]["out"] for n in ("b.conv", "b.conv_1")] == [8, 4]
    err = error_of("block b() { conv(width, 1) }\nnetwork N(width=4) { input x: [4, 8, 8]\n output o = x -> b }")
    assert "'width' is not defined" in err.message
    assert "a block reads the network's parameter explicitly: network.width" in err.notes
    err = error_of("block b() { conv(network.widht, 1) }\nnetwork N(width=4) { input x: [4, 8, 8]\n output o = x -> b }")
    assert "network 'N' has no parameter 'widht'" in err.message and at(err) == (1, 18)
    assert "did you mean 'width'?" in err.notes and "its parameters: width" in err.notes


def test_file_constants_are_the_files_own():
    g = build("let c = 8\nlet d = c * 2\nnetwork N { input x: [4, 8, 8]\n let c2 = d + 1\n output o = x -> conv(c2, 1) }")
    assert g.nodes["conv"]["attrs"]["out"] == 17
    # a parameter or a let inside shadows a file constant
    g = build("let c = 8\nblock b(c) { conv(c, 1) }\nnetwork N { input x: [4, 8, 8]\n output o = x -> b(3) }")
    assert g.nodes["b.conv"]["attrs"]["out"] == 3
    err = error_of("let c = d\nlet d = 1\nnetwork N { input x: [4, 8, 8]\n output o = x -> relu }")
    assert "'d' is not defined" in err.message and at(err) == (1, 9)
    err = error_of("let c = 1\nlet c = 2\nnetwork N { input x: [4, 8, 8]\n output o = x -> relu }")
    assert "'c' is already defined in this file" in err.message and at(err) == (2, 1)
    err = error_of("let c = conv(8, 1)\nnetwork N { input x: [4, 8, 8]\n output o = x -> relu }")
    assert "'conv' takes 1 input but has no inputs here" in err.message


def test_imported_blocks_see_their_own_files_constants(tmp_path):
    (tmp_path / "lib.net").write_text("let widths = [4, 6]\nblock wide(i) { conv(widths[i], 1) }\n")
    (tmp_path / "m.net").write_text('from "lib.net" import wide\nnetwork N { input x: [4, 8, 8]\n'
                                    "output o = x -> wide(1) }\n")
    assert load_network(str(tmp_path / "m.net")).nodes["wide.conv"]["attrs"]["out"] == 6
    (tmp_path / "m2.net").write_text('from "lib.net" import wide\nnetwork N { input x: [4, 8, 8]\n'
                                     "output o = x -> conv(widths[0], 1) }\n")
    with pytest.raises(NetError, match="'widths' is not defined"):
        load_network(str(tmp_path / "m2.net"))


def test_indexing():
    g = build("let t = [[1, 2], [3, 4]]\nnetwork N { input x: [4, 8, 8]\n"
              "output o = x -> conv(t[1][0] + t[-1][-1] + [5, 6][1.0], 1) }")
    assert g.nodes["conv"]["attrs"]["out"] == 3 + 4 + 6
    for expr, message, column in [("t[2]", "index 2 is out of range for a list of 2 items", 3),
                                  ("t[0.5]", "a list index must be an integer, got the float 0.5", 3),
                                  ("t[0][0][0]", "only a list can be indexed; this is the int 1", 1),
                                  ("x[0]", "only a list can be indexed; this is the tensor 'x'", 1)]:
        err = error_of(f"let t = [[1, 2], [3, 4]]\nnetwork N {{ input x: [4, 8, 8]\nlet v = {expr}\n"
                       "output o = x -> relu }")
        assert message in err.message, expr
        assert err.span.line == 3 and err.span.column == 8 + column, (expr, err.render())


def test_log_and_pow():
    g = build("network N { input x: [4, 8, 8]\n let a = log(8, 2)\n let b = pow(2, 5)\n let c = pow(4, 0.5)\n"
              " let d = log(1)\n output o = x -> conv(int(a + b + c + d), 1) }")
    assert g.nodes["conv"]["attrs"]["out"] == 3 + 32 + 2 + 0
    # RegNet's quantised widths: w0 * wm ** round(log(w / w0) / log(wm))
    g = build("network N { input x: [4, 8, 8]\n output o = x -> conv(int(24 * pow(2.5, round(log(60 / 24) / "
              "log(2.5)))), 1) }")
    assert g.nodes["conv"]["attrs"]["out"] == int(24 * 2.5 ** round(math.log(60 / 24) / math.log(2.5)))
    for expr, message in [("log(0)", "log(): takes a positive number"), ("log(8, 1)", "positive base other than 1"),
                          ("pow(-8, 0.5)", "not a real number"), ("pow(10, 100)", "too large"),
                          ("pow(0, -1)", "undefined")]:
        err = error_of(f"network N {{ input x: [4, 8, 8]\n let a = {expr}\n output o = x -> relu }}")
        assert message in err.message, expr
        assert at(err) == (2, 10)


def test_even_kernels_pad_same_at_stride_one_as_pytorch():
    g = build('network N { input x: [4, 7, 9]\n output o = x -> conv(8, k=2, padding="same") '
              '-> dwconv(4, padding="same") -> conv(8, k=2, dilation=3, padding="same") }')
    assert [g.nodes[n]["shape"] for n in ("conv", "dwconv", "conv_1")] == [(8, 7, 9)] * 3
    err = error_of('network N { input x: [4, 8, 8]\n output o = x -> conv(8, k=2, stride=2, padding="same") }')
    assert 'padding="same" needs stride=1' in err.message
