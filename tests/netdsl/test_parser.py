"""The parser: every example and the standard library parse; the syntax tree says what the text says."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from compiler.diagnostics import NetError
from netdsl import syntax as ast
from netdsl.parser import parse_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.net"))
STD = resources.files("netdsl.stdlib").joinpath("std.net").read_text(encoding="utf-8")


def only_network(text: str) -> ast.NetworkDef:
    module = parse_text(text, "t.net")
    assert len(module.networks) == 1
    return next(iter(module.networks.values()))


def test_examples_exist():
    names = {p.stem for p in EXAMPLES}
    assert {"lenet5", "vgg16", "resnet18", "resnet50", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
            "squeezenet1_1", "shufflenet_v2_x1_0", "fashion_cnn", "unet_small", "detector_small"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_parses(path):
    module = parse_text(path.read_text(encoding="utf-8"), str(path))
    assert len(module.networks) == 1


def test_standard_library_parses_to_blocks_only():
    module = parse_text(STD, "<std>")
    assert not module.networks and not module.imports
    assert {"basic", "basic_down", "bottleneck", "bottleneck_down", "dwsep", "inverted", "inverted_residual",
            "inverted_noexpand", "se_block", "bneck", "bneck_res", "bneck_hs_se", "bneck_hs_se_res", "fire",
            "shuffle_unit", "shuffle_down", "conv_bn_relu"} == set(module.blocks)


def test_items_imports_blocks_networks():
    module = parse_text(
        'from std import basic, fire\nimport "other.net"\nimport std\n'
        "block b(c, k=3) { conv(c, k=k) }\nblock fuse(low, high; out) { concat(low, high) }\n"
        "network A { input x: [1, 2, 2] output y = x -> relu }\nnetwork B(w=2) { input x: [1, 2, 2] output y = x -> relu }",
        "t.net",
    )
    assert [(i.module, i.is_file, i.names) for i in module.imports] == [
        ("std", False, ("basic", "fire")), ("other.net", True, None), ("std", False, None)]
    assert module.blocks["b"].inputs == () and [p.name for p in module.blocks["b"].params] == ["c", "k"]
    assert module.blocks["b"].params[0].default is None
    assert module.blocks["b"].params[1].default.value == 3
    assert module.blocks["fuse"].inputs == ("low", "high")
    assert [p.name for p in module.blocks["fuse"].params] == ["out"]
    assert list(module.networks) == ["A", "B"]
    assert module.networks["B"].params[0].name == "w"


def test_statements():
    net = only_network(
        "network N {\n"
        "  input x: [1, 8, 8]\n"
        "  let c = 4\n"
        "  a, b = x -> split(2)\n"
        "  y = a -> conv(c, k=3)\n"
        "  relu\n"
        "  output out = y\n"
        "}\n"
    )
    kinds = [type(s).__name__ for s in net.body]
    assert kinds == ["InputStmt", "LetStmt", "AssignStmt", "AssignStmt", "ChainStmt", "OutputStmt"]
    assert net.body[2].targets == ("a", "b")
    assert net.body[3].targets == ("y",)
    assert net.body[5].name == "out"


def test_steps_fixed_repeat_as():
    net = only_network("network N { input x: [1, 8, 8] output y = x -> fixed repeat(3) conv(4, k=1) as stage.a -> relu }")
    chain = net.body[1].value
    assert len(chain.steps) == 3
    step = chain.steps[1]
    assert step.fixed and step.repeat.value == 3 and step.name == ("stage", "a")
    assert isinstance(step.expr, ast.Call) and step.expr.name == "conv"
    assert [a.name for a in step.expr.args] == [None, "k"]
    assert not chain.steps[2].fixed and chain.steps[2].repeat is None and chain.steps[2].name is None
    # `as` paths may continue with integers: torchvision's module names (downsample.0)
    net = only_network("network N { input x: [1, 8, 8] output y = x -> relu as downsample.0 }")
    assert net.body[1].value.steps[1].name == ("downsample", "0")


def test_arithmetic_precedence_and_associativity():
    net = only_network("network N { let a = 1 + 2 * 3 - -4 // 2 % 3 }")
    e = net.body[0].value
    # ((1 + (2 * 3)) - ((-4 // 2) % 3))
    assert e.op == "-" and e.left.op == "+" and e.left.right.op == "*"
    assert e.right.op == "%" and e.right.left.op == "//" and isinstance(e.right.left.left, ast.Neg)
    net = only_network("network N { let a = 8 - 2 - 1 }")
    e = net.body[0].value
    assert e.op == "-" and e.left.op == "-" and e.right.value == 1


def test_literals():
    net = only_network('network N { let a = [1, 2.5, 1e-3, "s", true, false, none, [],] }')
    items = net.body[0].value.items
    assert [getattr(i, "value", None) for i in items[:7]] == [1, 2.5, 1e-3, "s", True, False, None]
    assert isinstance(items[0].value, int) and isinstance(items[1].value, float)
    assert isinstance(items[7], ast.ListExpr) and items[7].items == ()


def test_references():
    module = parse_text("block b() { y = in -> relu\n z = @conv\n w = layer1.0.conv1 }", "t.net")
    body = module.blocks["b"].body
    assert isinstance(body[0].value.steps[0].expr, ast.BlockInput)
    assert isinstance(body[1].value.steps[0].expr, ast.NodeRef) and body[1].value.steps[0].expr.path == ("conv",)
    assert body[2].value.steps[0].expr.path == ("layer1", "0", "conv1")


def test_comments_and_free_layout():
    text = "# heading\nnetwork N { # trailing\n input x: [1, 4, 4] output y = x\n -> relu # more\n -> relu }\n"
    net = only_network(text)
    assert len(net.body[1].value.steps) == 3


def test_spans_are_one_based_and_point_at_the_text():
    text = "network N {\n    input x: [1, 4, 4]\n    output y = x -> conv(4, k=3)\n}\n"
    net = only_network(text)
    call = net.body[1].value.steps[1].expr
    assert (call.span.line, call.span.column) == (3, 21)
    assert (call.name_span.line, call.name_span.column, call.name_span.end_column) == (3, 21, 25)
    assert call.span.file == "t.net"


def test_keywords_are_not_names():
    for word in ["fixed", "as", "in", "input", "output", "let", "block", "network", "import", "from", "repeat"]:
        with pytest.raises(NetError):
            parse_text(f"network N {{ let {word} = 1 }}", "t.net")
    # ...but names may start with a keyword
    net = only_network("network N { let inputs = 1 let fixed_w = 2 let asx = 3 }")
    assert [s.name for s in net.body] == ["inputs", "fixed_w", "asx"]


def test_parse_errors_are_net_errors_with_location():
    with pytest.raises(NetError) as info:
        parse_text("network N {\n  input x: [1, 4, 4]\n  output y = x -> \n}\n", "bad.net")
    err = info.value
    assert err.span is not None and (err.span.file, err.span.line, err.span.column) == ("bad.net", 4, 1)


def test_block_input_cannot_have_a_default():
    with pytest.raises(NetError, match="block input 'a' cannot have a default"):
        parse_text("block f(a=1; c) { relu }", "t.net")


def test_duplicate_definitions():
    with pytest.raises(NetError, match="block 'b' is defined twice"):
        parse_text("block b() { relu }\nblock b() { relu }", "t.net")
    with pytest.raises(NetError, match="network 'N' is defined twice"):
        parse_text("network N { }\nnetwork N { }", "t.net")
