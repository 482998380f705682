"""Bad input: every problem is a located NetError (file:line:col, the source line, a caret) that says what
is wrong in words; nothing else ever escapes, whatever the text (hypothesis fuzzing)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.diagnostics import NetError
from netdsl.loader import load_network, load_network_text

ROOT = Path(__file__).resolve().parents[2]


def error_of(text: str, file: str = "bad.net", **kw) -> NetError:
    with pytest.raises(NetError) as info:
        load_network_text(text, file, **kw)
    return info.value


def net(body: str, head: str = "") -> str:
    """A network with one input x: [4, 8, 8]; the body starts on line 3 (plus the lines of head)."""
    return head + "network N {\n    input x: [4, 8, 8]\n" + body + "\n}\n"


def check(err: NetError, message: str, line: int | None = None, column: int | None = None) -> str:
    """The error matches `message`; it points at line:column; its rendering quotes the line with a caret."""
    assert re.search(message, err.message), err.render()
    text = err.render()
    if line is not None:
        assert err.span is not None and (err.span.line, err.span.column) == (line, column), text
        first, source, caret = text.splitlines()[:3]
        assert first.startswith(f"{err.span.file}:{line}:{column}: error: ")
        assert caret.strip() and set(caret.strip()) == {"^"}
        assert caret.index("^") == column + 1  # under the offending text: both lines are indented by two
    return text


# ---- the rendered format -------------------------------------------------------------------------

def test_render_format_file_line_column_source_and_caret():
    err = error_of(net("    output y = x -> cnov(4, k=3)"), "model.net")
    assert err.render() == (
        "model.net:3:21: error: unknown op or block 'cnov'\n"
        "      output y = x -> cnov(4, k=3)\n"
        "                      ^^^^\n"
        "  note: did you mean 'conv' or 'dwconv'?"
    )
    assert str(err) == err.render()


# ---- syntax errors -------------------------------------------------------------------------------

SYNTAX = [
    (net("    output y = x -> conv(4, k=3"), r"unexpected '\}'; expected '\)' or ','", 4, 1),
    (net("    output y = x -> conv(4 k=3)"), r"unexpected 'k'; expected '\)' or ','", 3, 28),
    (net("    output y = x -> relu $"), r"unexpected character '\$'; expected '\}'", 3, 26),
    ("network N {\n    input x: [4, 8, 8]\n    output y = x -> relu\n", r"unexpected end of file; expected '\}'", 3, 25),
    (net("    output = x -> relu"), r"unexpected '='; expected a name", 3, 12),
    (net("    output y = x -> relu -> "), r"unexpected '\}'; expected '\(', a name, a number", 4, 1),
    (net("    output y = x -> conv(4, k=)"), r"unexpected '\)'", 3, 31),
    ("network N { input x [4, 8, 8] }", r"unexpected '\['; expected ':'", 1, 21),
    ("netwrk N { }", r"unexpected 'netwrk'; expected 'block', 'from', 'import', 'let' or 'network'", 1, 1),
    (net("    let in = 3"), r"unexpected keyword 'in'; expected a name", 3, 9),
    (net("    output y = x -> relu\n}"), r"unexpected '\}'; expected 'block', 'from', 'import', 'let' or 'network'", 5, 1),
]


@pytest.mark.parametrize("text, message, line, column", SYNTAX)
def test_syntax_errors_are_located_and_in_words(text, message, line, column):
    err = error_of(text)
    rendered = check(err, message, line, column)
    expected = err.message.split("expected", 1)[1]
    assert not re.search(r"[A-Z]|__ANON|\$END", expected), rendered  # no lark token names


def test_deep_nesting_is_an_error_not_a_crash():
    err = error_of(net("    let a = " + "(" * 3000 + "1" + ")" * 3000 + "\n    output y = x -> relu"))
    assert "nested too deeply" in err.message
    err = error_of(net("    let a = " + "-" * 1200 + "1\n    output y = x -> relu"))
    assert "too deeply" in err.message


# ---- names, ops and arguments --------------------------------------------------------------------

SEMANTIC = [
    # unknown op / block, with suggestions
    (net("    output y = x -> cnov(4, k=3)"), r"unknown op or block 'cnov'", 3, 21),
    (net("    output y = x -> rleu"), r"unknown op or block 'rleu'", 3, 21),
    # wrong or missing arguments
    (net("    output y = x -> conv(4, 3, strid=2)"), r"'conv' has no parameter 'strid'", 3, 32),
    (net("    output y = x -> conv(4)"), r"'conv' needs its parameter 'k'", 3, 21),
    (net("    output y = x -> conv(4, 3, 1)"), r"'conv' takes at most 2 positional parameters", 3, 32),
    (net('    output y = x -> conv(4, k="a")'), r"'conv' parameter 'k' must be a positive integer or a list \[h, w\] of two, got the str 'a'", 3, 29),
    (net("    output y = x -> conv(4, k=3, k=3)"), r"argument 'k' is given twice", 3, 34),
    (net("    output y = x -> conv(4, 3, k=3)"), r"'k' is given both by position and by name", 3, 32),
    (net("    output y = x -> conv(k=3, 4)"), r"positional arguments come before keyword arguments", 3, 31),
    (net("    output y = x -> relu(x)"), r"'relu' takes 1 input; the tensor 'x' is one too many", 3, 26),
    (net('    output y = x -> relu("a")'), r"'relu' takes no parameters", 3, 26),
    (net("    output y = x -> bn(0.1)"), r"'bn' takes no parameters by position", 3, 24),
    (net("    output y = x -> maxpool(2, stride=true)"), r"'maxpool' parameter 'stride' must be a positive integer, a list \[h, w\] of two, or none", 3, 32),
    (net('    output y = x -> upsample(2, mode="cubic")'), r'must be "nearest" or "bilinear"', 3, 33),
    (net("    output y = x -> relu -> concat(dim=0)"), r"'concat' takes two or more inputs but has 1 input here", 3, 29),
    (net("    output y = f(1)", "block f(a, b; c) { concat(a, b) }\n"), r"'f' takes 2 inputs but has 1 input here", 4, 16),
    (net("    output y = x -> b", "block b(c) { conv(c, 1) }\n"), r"block 'b' needs its parameter 'c'", 4, 21),
    # undefined names
    (net("    output y = z -> relu"), r"'z' is not defined", 3, 16),
    (net("    output y = xx -> relu"), r"'xx' is not defined", 3, 16),
    (net("    output y = @nope -> relu"), r"no node named 'nope'", 3, 16),
    (net("    output y = in -> relu"), r"'in' \(a block's input\) is only defined inside a block", 3, 16),
    (net("    let a = relu\n    output y = x -> relu"), r"'relu' is a layer; apply it with", 3, 13),
    # recursion
    (net("    output y = x -> a(4)", "block a(c) { b(c) }\nblock b(c) { a(c) }\n"), r"block 'a' calls itself \(a -> b -> a\)", 2, 14),
    (net("    output y = x -> a(4)", "block a(c) { conv(c, 1) -> a(c) }\n"), r"block 'a' calls itself \(a -> a\)", 1, 28),
    # misplaced statements and values
    (net("    output y = x -> b", "block b() { input z: [1, 2, 2] }\n"), r"inputs are declared in a network, not in a block", 1, 13),
    (net("    output y = x -> b", "block b() { output z = relu }\n"), r"outputs are declared in a network", 1, 13),
    (net("    let a = x * 2\n    output y = x -> relu"), r"arithmetic on tensors is written add\(a, b\) or mul\(a, b\)", 3, 13),
    (net("    let a = 1 / 0\n    output y = x -> relu"), r"division by zero", 3, 13),
    (net('    let a = 2 * "s"\n    output y = x -> relu'), r"'\*' needs numbers", 3, 13),
    (net("    output y = fixed x"), r"'fixed', 'repeat' and 'as' apply to a layer or block call", 3, 16),
    (net("    output y = x -> 3"), r"only a layer or block can follow '->'; this is the int 3", 3, 21),
    (net("    output y = x -> maxpool(2 -> relu)"), r"only a tensor can flow into 'relu'", 3, 34),
    (net("    output y = x -> repeat(-1) relu"), r"repeat count must be a non-negative integer, got the int -1", 3, 28),
    (net("    output y = x -> repeat(1.5) relu"), r"repeat count must be a non-negative integer, got the float 1.5", 3, 28),
    (net("    output y = x -> repeat(10000000) relu"), r"repeat count 10000000 is too large", 3, 21),
    (net("    let c = 1\n    let c = 2\n    output y = x -> relu"), r"'c' is already defined here", 4, 5),
    (net("    output y = x -> relu\n    output y = x -> sigmoid"), r"output 'y' is declared twice", 4, 5),
    (net("    output y = x -> relu as a -> relu as a"), r"the name 'a' is already used", 3, 34),
    (net("    output y = x -> conv(choice(), k=1)"), r"choice takes its options", 3, 26),
    (net("    output y = x -> conv(choice(4, [8]), k=1)"), r"choice options must be numbers, strings or booleans", 3, 26),
    (net("    let a = ceil(x)\n    output y = x -> relu"), r"ceil\(\) takes numbers, got the tensor 'x'", 3, 13),
    (net("    let a = min()\n    output y = x -> relu"), r"min\(\): ", 3, 13),
    (net("    input x: [4, 8, 8]\n    output y = x -> relu"), r"'x' is already defined here", 3, 5),
    (net("    input z: 3\n    output y = x -> relu"), r"input 'z' needs a shape like \[3, 224, 224\]", 3, 5),
]


@pytest.mark.parametrize("text, message, line, column", SEMANTIC)
def test_semantic_errors(text, message, line, column):
    check(error_of(text), message, line, column)


def test_suggestions():
    assert "did you mean 'conv' or 'dwconv'?" in error_of(net("    output y = x -> cnov(4, k=3)")).notes
    assert "did you mean 'relu' or 'relu6'?" in error_of(net("    output y = x -> rleu")).notes
    assert "did you mean 'stride'?" in error_of(net("    output y = x -> conv(4, 3, strid=2)")).notes
    assert "did you mean 'x'?" in error_of(net("    output y = xx -> relu")).notes
    assert "did you mean 'basic'?" in error_of(net("    output y = x -> basik(4)", "from std import basic\n")).notes


# ---- shapes --------------------------------------------------------------------------------------

SHAPES = [
    (net("    a = x -> conv(4, k=1)\n    b = x -> conv(8, k=1)\n    output y = add(a, b)"),
     r"add 'add': operand shapes do not match: 'conv' \[4, 8, 8\], 'conv_1' \[8, 8, 8\]", 5, 16),
    (net("    a = x -> conv(4, k=1)\n    b = x -> conv(8, k=1, stride=2)\n    output y = concat(a, b)"),
     r"concat 'concat': operands must agree on every dim but 0: 'conv' \[4, 8, 8\], 'conv_1' \[8, 4, 4\]", 5, 16),
    (net("    output y = x -> mul(x -> maxpool(2))"), r"mul 'mul': operand shapes do not match: 'x' \[4, 8, 8\], 'maxpool' \[4, 4, 4\]", 3, 21),
    (net("    output y = x -> conv(4, k=9)"), r"kernel 9 \(dilation 1, padding 0\) is larger than its input \[4, 8, 8\]", 3, 21),
    (net("    output y = x -> linear(4)"), r"linear 'linear': expects a flat input \[features\], got \[4, 8, 8\]", 3, 21),
    (net("    output y = x -> gap -> conv(4, 1)"), r"conv 'conv': expects an image input \[C, H, W\], got \[4\]", 3, 28),
    (net("    output y = x -> conv(6, 1, groups=4)"), r"groups=4 must divide input channels \(4\) and output channels \(6\)", 3, 21),
    (net('    output y = x -> conv(4, 3, stride=2, padding="same")'), r'padding="same" needs stride=1', 3, 21),
    (net("    a, b, c = x -> split(3)\n    output y = concat(a, b, c)"), r"split: 4 channels do not split into 3 equal parts", 3, 20),
    (net("    output y = x -> split([1, 2], part=0)"), r"sizes \[1, 2\] add up to 3, not the 4 input channels", 3, 21),
    (net("    output y = x -> channel_shuffle(3)"), r"4 channels do not divide into 3 groups", 3, 21),
    (net("    output y = x -> maxpool(2, padding=2)"), r"padding 2 must be at most half the kernel size 2", 3, 21),
    (net("    output y = x -> upsample(2, size=4)"), r"give exactly one of scale or size", 3, 21),
    (net("    output y = x -> softmax(3)"), r"dim 3 is out of range", 3, 21),
    (net("    output y = x -> conv_transpose(4, 2, output_padding=2)"), r"output_padding must be smaller than stride or dilation", 3, 21),
]


@pytest.mark.parametrize("text, message, line, column", SHAPES)
def test_shape_errors_name_the_layer_and_its_operands(text, message, line, column):
    check(error_of(text), message, line, column)


# ---- non-positive channel counts -----------------------------------------------------------------

@pytest.mark.parametrize("call, got", [
    ("conv(0, k=1)", "the int 0"),
    ("conv(c - 8, k=1)", "the int -4"),
    ("conv(c / 8, k=1)", "the float 0.5"),
    ("linear(-1)", "the int -1"),
    ("conv_transpose(0, 2)", "the int 0"),
    ("dwconv(3, multiplier=0)", "the int 0"),
])
def test_non_positive_channel_counts(call, got):
    text = "network N(c=4) {\n    input x: [4, 8, 8]\n    output y = x -> " + ("gap -> " if "linear" in call else "") + call + "\n}\n"
    err = error_of(text)
    assert re.search(r"parameter '(out|multiplier)' must be a positive integer, got " + re.escape(got), err.message)
    assert err.span.line == 3


def test_non_positive_input_shape():
    err = error_of(net("    input z: [0, 8, 8]\n    output y = add(x, z)"))
    check(err, r"input 'z' needs a shape like \[3, 224, 224\], got the list \[0, 8, 8\]", 3, 5)


# ---- the graph as a whole ------------------------------------------------------------------------

def test_an_output_that_depends_on_nothing():
    check(error_of(net("    output y = x")), r"output 'y' is the input itself; it depends on no layer", 3, 16)


def test_an_unused_input():
    check(error_of(net("    input z: [1, 8, 8]\n    output y = x -> relu")), r"input 'z' is not used by any output", 3, 5)


def test_a_dangling_value():
    check(error_of(net("    a = x -> conv(3, k=1)\n    output y = x -> relu")), r"conv 'conv' is computed but no output uses it", 3, 14)


def test_no_output():
    check(error_of("network N {\n    input x: [4, 8, 8]\n    x -> relu\n}\n"), r"network 'N' has no output", 1, 1)


def test_no_network():
    err = error_of("block b() { relu }\n")
    assert "defines no network" in err.message and err.render().startswith("bad.net:1:1: error: ")


def test_unknown_network_parameter():
    err = error_of(net("    output y = x -> relu"), params={"width": 2})
    assert "network 'N' has no parameter 'width'" in err.message


# ---- imports -------------------------------------------------------------------------------------

def test_import_errors(tmp_path):
    check(error_of(net("    output y = x -> relu", 'from "nope.net" import a\n')), r"cannot import 'nope.net': no such file", 1, 1)
    err = error_of(net("    output y = x -> relu", "from std import basik\n"))
    check(err, r"'std' has no block 'basik'", 1, 1)
    assert "did you mean 'basic'?" in err.notes
    err = error_of(net("    output y = x -> relu", "from stdd import basic\n"))
    check(err, r"no library module 'stdd'", 1, 1)
    assert "known modules: std" in err.notes
    check(error_of(net("    output y = x -> relu", "from std import basic\nblock basic(c) { relu }\n")),
          r"block 'basic' is both defined here and imported", 1, 1)
    # a cycle of file imports
    (tmp_path / "a.net").write_text('import "b.net"\nblock a() { relu }\n')
    (tmp_path / "b.net").write_text('import "a.net"\nblock b() { relu }\n')
    main = tmp_path / "main.net"
    main.write_text('import "a.net"\n' + net("    output y = x -> a"))
    with pytest.raises(NetError, match="import cycle") as info:
        load_network(str(main))
    assert info.value.span is not None and info.value.span.file.endswith("b.net")
    # an error inside an imported file is located in that file
    (tmp_path / "broken.net").write_text("block a() {\n    conv(4, k=)\n}\n")
    main.write_text('import "broken.net"\n' + net("    output y = x -> a"))
    with pytest.raises(NetError) as info:
        load_network(str(main))
    assert info.value.span.file.endswith("broken.net") and info.value.span.line == 2
    with pytest.raises(NetError, match="cannot read"):
        load_network(str(tmp_path / "missing.net"))


# ---- fuzzing: nothing but NetError escapes -------------------------------------------------------

EXAMPLE_TEXTS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").glob("*.net"))]
PIECES = ["a", "x", "0", "1", "2", " ", "\n", "(", ")", "[", "]", "{", "}", ",", ".", "=", "-", "*", "//", "%", "@",
          '"', "->", "#", " in ", " as z ", " as z.0 ", " fixed ", " repeat(2) ", " repeat(0) ", " let q = 1 ",
          " output o = ", " input i: [2, 4, 4] ", "choice(1, 2)", 'choice("a")', "split(2)", "add(in)",
          "concat(in, in)", "mul(in, 2)", "@image", "@conv", " none ", " true ", " 1.5 ", " -1 ", "gap", "linear(3)",
          "flatten", "upsample(2)", "conv_transpose(3, 2, stride=2)", "[1, 2]", "divisible(3)", "int(", "max(1, ",
          " block b() { relu } ", ' from std import fire ', ' import "x.net" ', "1e999", "99999999999999999999"]


def load_or_net_error(text: str) -> None:
    try:
        load_network_text(text, str(ROOT / "examples" / "fuzz.net"))
    except NetError as err:
        rendered = err.render()
        assert rendered and "Traceback" not in rendered
        if err.span is not None:
            assert rendered.startswith(f"{err.span.file}:{err.span.line}:{err.span.column}: error: ")
        if "; expected " in err.message:
            assert not re.search(r"[A-Z]|__ANON", err.message.split("; expected ", 1)[1]), rendered


mutation = st.tuples(st.sampled_from(["delete", "insert", "swap", "duplicate"]),
                     st.floats(0, 1), st.floats(0, 1), st.sampled_from(PIECES), st.integers(1, 6))


def mutate(text: str, mutations) -> str:
    for kind, where, other, piece, size in mutations:
        i = int(where * len(text))
        j = int(other * len(text))
        if kind == "delete":
            text = text[:i] + text[i + size:]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "swap" and text:
            i, j = min(i, len(text) - 1), min(j, len(text) - 1)
            chars = list(text)
            chars[i], chars[j] = chars[j], chars[i]
            text = "".join(chars)
        else:
            lines = text.split("\n")
            k = min(int(where * len(lines)), len(lines) - 1)
            lines.insert(k, lines[k])
            text = "\n".join(lines)
    return text


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(EXAMPLE_TEXTS))), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_examples_raise_only_net_errors(index, mutations):
    load_or_net_error(mutate(EXAMPLE_TEXTS[index], mutations))


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(PIECES + ["network N {", "input x: [1, 4, 4]", "output y = x", "}", "relu", "conv(4, 3)"]),
             max_size=30).map("".join),
))
def test_random_text_raises_only_net_errors(text):
    load_or_net_error(text)


# ---- where an error comes from: block calls, keywords, open brackets -----------------------------

def test_an_error_inside_a_library_block_shows_the_calls_that_led_there():
    text = ("from std import basic\n"
            "block stage(c) {\n"
            "    basic(c)\n"
            "}\n"
            "network N {\n"
            "    input x: [4, 8, 8]\n"
            "    output y = x -> stage(4) as s1 -> stage(8)\n"
            "}\n")
    err = error_of(text)
    assert err.span.file == "<std>" and "operand shapes do not match" in err.message
    assert err.notes == ["in block 'basic', called at bad.net:3:5: basic(c)",
                         "in block 'stage', called at bad.net:7:39: stage(8)"]
    rendered = err.render().splitlines()
    assert rendered[0].startswith("<std>:") and rendered[-1] == "  note: in block 'stage', called at bad.net:7:39: stage(8)"
    # an error in a parameter default is inside the block too
    err = error_of(net("    output y = x -> b", "block b(c=1 / 0) { conv(c, 1) }\n"))
    assert "division by zero" in err.message and err.notes == ["in block 'b', called at bad.net:4:21: b"]
    # an error at the call itself needs no note
    err = error_of(net("    output y = x -> b", "block b(c) { conv(c, 1) }\n"))
    assert err.notes == []


@pytest.mark.parametrize("body, column", [
    ("    block = x -> relu\n    output y = block", 5),
    ("    let network = 3\n    output y = x -> relu", 9),
    ("    output y = x -> conv(4, 1, in=3)", 34),
])
def test_a_keyword_used_as_a_name_says_it_is_a_keyword(body, column):
    err = error_of(net(body))
    assert err.message.startswith("unexpected ") and (err.span.line, err.span.column) == (3, column)
    assert any("is a keyword: it cannot name a variable, parameter, block or network" in n for n in err.notes)


def test_a_keyword_may_name_a_layer_after_as():
    """torchvision names modules `block.0` (MobileNetV3); `as` and `@` take any word."""
    g = load_network_text(net("    y = x -> conv(4, 1) as block.0 -> relu as in\n    output z = @block.0 -> add(y)"))
    assert {"block.0", "in"} <= set(g)


def test_a_missing_bracket_notes_where_it_was_opened():
    err = error_of(net("    y = x -> conv(4, k=3\n    output z = y -> relu"))
    assert (err.span.line, err.span.column) == (4, 5)  # where the parser noticed
    assert "the '(' opened at bad.net:3:18 is not closed" in err.notes
    err = error_of(net("    let s = [1, 2\n    output z = x -> relu"))
    assert "the '[' opened at bad.net:3:13 is not closed" in err.notes
    err = error_of("network N {\n    input x: [4, 8, 8]\n    output y = x -> relu\n")
    assert "the '{' opened at bad.net:1:11 is not closed" in err.notes
    # brackets inside comments and strings do not count; a bracket closed on its own line gets no note
    err = error_of(net('    # (\n    y = x -> upsample(2, mode="(")\n    output z = y -> relu -> )'))
    assert not any("opened" in n for n in err.notes)


def test_an_error_found_after_building_still_shows_the_calls():
    """Validation and the names check run on the finished graph; an error about a layer inside blocks gets the same
    traceback of block calls."""
    text = ("from std import fire\n"
            "block wrap(c) { fire(c, c, c) as fire1 -> relu }\n"
            "network N {\n"
            "    input x: [4, 8, 8]\n"
            "    y = x -> wrap(4) as w\n"
            "    output o = x -> relu\n"
            "}\n")
    err = error_of(text)
    assert "is computed but no output uses it" in err.message and err.span.file == "<std>"
    assert err.notes == ["in block 'fire', called at bad.net:2:17: fire(c, c, c)",
                         "in block 'wrap', called at bad.net:5:14: wrap(4)"]


def test_the_word_before_an_offset():
    from netdsl.parser import word_before

    assert word_before("let in = 3", 7) == "in" and word_before("a -> b_2\n  ", 11) == "b_2"
    assert word_before("f(", 2) == "" and word_before("", 0) == ""
