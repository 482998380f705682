"""Shape inference: each op's rule, checked against PyTorch itself for random configurations, and its errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.diagnostics import NetError
from compiler.ir import add_node, new_graph
from compiler.shapes import conv_padding, fmt, infer_shapes, same_padding, split_sizes, symmetric_padding
from netdsl.loader import load_network_text


def graph(in_shape, *layers):
    """input -> layer -> layer ...; each layer is (op, attrs) with every attribute given."""
    g = new_graph("t")
    add_node(g, "x", "input", {"shape": list(in_shape)}, [])
    prev = "x"
    for i, (op, attrs) in enumerate(layers):
        add_node(g, f"n{i}", op, attrs, [prev])
        prev = f"n{i}"
    return infer_shapes(g)


def shape_of(in_shape, call: str):
    """The inferred output shape of `x -> call` for an input of in_shape, via the language."""
    text = f"network N {{\n    input x: {list(in_shape)}\n    output y = x -> {call}\n}}\n"
    g = load_network_text(text, "shapes.net")
    return g.nodes[g.graph["outputs"]["y"]]["shape"]


def torch_shape(module, in_shape):
    with torch.no_grad():
        return tuple(module(torch.zeros(1, *in_shape)).shape[1:])


# ---- against PyTorch -----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 4), h=st.integers(1, 12), w=st.integers(1, 12), out=st.integers(1, 4),
       k=st.integers(1, 5), stride=st.integers(1, 3), pad=st.integers(0, 2), dilation=st.integers(1, 2))
def test_conv_matches_torch(c, h, w, out, k, stride, pad, dilation):
    module = torch.nn.Conv2d(c, out, k, stride=stride, padding=pad, dilation=dilation)
    call = f"conv({out}, k={k}, stride={stride}, padding={pad}, dilation={dilation})"
    try:
        expected = torch_shape(module, (c, h, w))
    except RuntimeError:
        with pytest.raises(NetError, match="larger than its input"):
            shape_of((c, h, w), call)
        return
    assert shape_of((c, h, w), call) == expected


@settings(max_examples=40, deadline=None)
@given(c=st.integers(1, 4), h=st.integers(1, 10), w=st.integers(1, 10), k=st.sampled_from([1, 2, 3, 4, 5]),
       dilation=st.integers(1, 3), m=st.integers(1, 2))
def test_same_padding_and_depthwise_match_torch(c, h, w, k, dilation, m):
    module = torch.nn.Conv2d(c, c * m, k, padding="same", dilation=dilation, groups=c)
    assert shape_of((c, h, w), f'dwconv({k}, padding="same", dilation={dilation}, multiplier={m})') == \
        torch_shape(module, (c, h, w))


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), out=st.integers(1, 3), k=st.integers(1, 4),
       stride=st.integers(1, 3), pad=st.integers(0, 2), opad=st.integers(0, 2), dilation=st.integers(1, 2))
def test_conv_transpose_matches_torch(c, h, w, out, k, stride, pad, opad, dilation):
    call = f"conv_transpose({out}, {k}, stride={stride}, padding={pad}, output_padding={opad}, dilation={dilation})"
    try:
        module = torch.nn.ConvTranspose2d(c, out, k, stride=stride, padding=pad, output_padding=opad, dilation=dilation)
        expected = torch_shape(module, (c, h, w))
    except (RuntimeError, ValueError):
        expected = (0,)
    if min(expected) < 1:  # torch refuses, or gives an empty tensor: the IR refuses
        with pytest.raises(NetError):
            shape_of((c, h, w), call)
        return
    assert shape_of((c, h, w), call) == expected


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), k=st.integers(1, 4), stride=st.integers(1, 3),
       pad=st.integers(0, 2), ceil_mode=st.booleans(), dilation=st.integers(1, 2), op=st.sampled_from(["max", "avg"]))
def test_pools_match_torch(h, w, k, stride, pad, ceil_mode, dilation, op):
    mode = str(ceil_mode).lower()
    if op == "max":
        call = f"maxpool({k}, stride={stride}, padding={pad}, dilation={dilation}, ceil_mode={mode})"
        make = lambda: torch.nn.MaxPool2d(k, stride, pad, dilation, ceil_mode=ceil_mode)  # noqa: E731
    else:
        call = f"avgpool({k}, stride={stride}, padding={pad}, ceil_mode={mode})"
        make = lambda: torch.nn.AvgPool2d(k, stride, pad, ceil_mode=ceil_mode)  # noqa: E731
    try:
        expected = torch_shape(make(), (2, h, w))
    except RuntimeError:
        with pytest.raises(NetError):
            shape_of((2, h, w), call)
        return
    if min(expected) < 1:  # torch can return an empty tensor; the IR refuses it
        with pytest.raises(NetError):
            shape_of((2, h, w), call)
        return
    assert shape_of((2, h, w), call) == expected


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), scale=st.sampled_from([1, 2, 3, 0.5, 1.5, 2.5]),
       bilinear=st.booleans())
def test_upsample_by_scale_matches_torch(h, w, scale, bilinear):
    mode = "bilinear" if bilinear else "nearest"
    module = torch.nn.Upsample(scale_factor=scale, mode=mode, align_corners=False if bilinear else None)
    try:
        expected = torch_shape(module, (2, h, w))
    except RuntimeError:  # torch refuses an empty output
        expected = (0,)
    if min(expected) < 1:
        with pytest.raises(NetError):
            shape_of((2, h, w), f'upsample({scale}, mode="{mode}")')
        return
    assert shape_of((2, h, w), f'upsample({scale}, mode="{mode}")') == expected


def test_ceil_mode_drops_a_window_that_starts_in_the_right_padding():
    # PyTorch: 5 wide, k=2, stride=2, padding=1, ceil_mode -> 3 (not 4: the 4th window would start in padding)
    assert shape_of((1, 5, 5), "maxpool(2, stride=2, padding=1, ceil_mode=true)") == (1, 3, 3)
    assert torch_shape(torch.nn.MaxPool2d(2, 2, 1, ceil_mode=True), (1, 5, 5)) == (1, 3, 3)
    assert shape_of((64, 111, 111), "maxpool(3, stride=2, ceil_mode=true)") == (64, 55, 55)  # SqueezeNet
    assert shape_of((64, 112, 112), "maxpool(3, stride=2, ceil_mode=true)") == (64, 56, 56)


# ---- the other rules -----------------------------------------------------------------------------

@pytest.mark.parametrize("in_shape, call, out", [
    ((3, 8, 8), "relu -> bn -> sigmoid -> hardswish -> hardsigmoid -> silu -> gelu -> relu6 -> leaky_relu", (3, 8, 8)),
    ((3, 8, 8), "dropout(0.1) -> identity -> softmax(dim=0)", (3, 8, 8)),
    ((3, 8, 6), "gap", (3,)),
    ((3, 8, 6), "adaptive_avgpool(2)", (3, 2, 2)),
    ((3, 8, 6), "adaptive_avgpool(7)", (3, 7, 7)),
    ((3, 8, 6), "flatten", (144,)),
    ((3, 8, 6), "flatten -> linear(10) -> bn -> softmax", (10,)),
    ((3, 8, 6), "upsample(size=5)", (3, 5, 5)),
    ((6, 4, 4), "channel_shuffle(3)", (6, 4, 4)),
    ((6, 4, 4), "split(3, part=2)", (2, 4, 4)),
    ((6, 4, 4), "split([1, 5], part=1)", (5, 4, 4)),
    ((6, 4, 4), "concat(x)", (12, 4, 4)),
    ((6, 4, 4), "concat(x, x)", (18, 4, 4)),  # the flowing tensor comes first, then the arguments
    ((6, 4, 4), "concat(x, dim=1)", (6, 8, 4)),
    ((6, 4, 4), "concat(x, dim=-1)", (6, 4, 8)),
    ((6, 4, 4), "add(x -> adaptive_avgpool(1))", (6, 4, 4)),
    ((6, 4, 4), "mul(x -> adaptive_avgpool(1) -> conv(6, 1) -> sigmoid)", (6, 4, 4)),
    ((6, 4, 4), "add(x, x, x)", (6, 4, 4)),
    ((6, 4, 4), "conv(6, 3, groups=3, padding=1)", (6, 4, 4)),
    ((6, 4, 4), "conv(4, 1, stride=3)", (4, 2, 2)),
])
def test_shape_rules(in_shape, call, out):
    assert shape_of(in_shape, call) == out


def test_broadcasting_aligns_trailing_per_sample_dims():
    g = load_network_text("network N {\n input x: [4, 5, 6]\n output y = mul(x, x -> gap -> linear(6)) }", "b.net")
    assert g.nodes["mul"]["shape"] == (4, 5, 6)
    g = load_network_text("network N {\n input x: [4, 1, 6]\n input z: [1, 5, 1]\n output y = add(x, z) }", "b.net")
    assert g.nodes["add"]["shape"] == (4, 5, 6)


def test_infer_shapes_on_a_hand_built_graph():
    g = graph((3, 32, 32),
              ("conv", {"out": 8, "k": 3, "stride": 2, "padding": 1, "dilation": 1, "groups": 1, "bias": False}),
              ("maxpool", {"k": 2, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}),
              ("gap", {}),
              ("linear", {"out": 5, "bias": True}))
    assert [g.nodes[n]["shape"] for n in ("x", "n0", "n1", "n2", "n3")] == [(3, 32, 32), (8, 16, 16), (8, 8, 8), (8,), (5,)]


def test_helpers():
    assert fmt((3, 4)) == "[3, 4]"
    assert conv_padding({"padding": "same", "k": 5, "dilation": 2}) == 4
    assert conv_padding({"padding": 2, "k": 5, "dilation": 1}) == 2
    assert same_padding({"k": 4, "dilation": 1}) == ((1, 2), (1, 2))  # PyTorch: the odd pixel after
    assert same_padding({"k": [2, 3], "dilation": [3, 1]}) == ((1, 2), (1, 1))
    assert conv_padding({"padding": "same", "k": [1, 4], "dilation": 1}) == [0, 1]
    assert symmetric_padding({"padding": "same", "k": 3, "dilation": 1})
    assert not symmetric_padding({"padding": "same", "k": 2, "dilation": 1})
    assert split_sizes(3, 12) == [4, 4, 4]
    assert split_sizes([2, 10], 12) == [2, 10]
    with pytest.raises(ValueError, match="do not split into 5 equal parts"):
        split_sizes(5, 12)
    with pytest.raises(ValueError, match="add up to 11"):
        split_sizes([1, 10], 12)


@pytest.mark.parametrize("in_shape, call, message", [
    ((4, 8, 8), "add(x -> conv(3, 1))", r"add 'add': operand shapes do not match: 'x' \[4, 8, 8\], 'conv' \[3, 8, 8\]"),
    ((4, 8, 8), "concat(x -> gap)", r"concat 'concat': operands must agree on every dim but 0: 'x' \[4, 8, 8\], 'gap' \[4\]"),
    ((4, 8, 8), "concat(x, dim=3)", r"dim 3 is out of range for rank-3 inputs"),
    ((4, 8, 8), "linear(3)", r"linear 'linear': expects a flat input \[features\], got \[4, 8, 8\]; add flatten or gap"),
    ((4, 8, 8), "gap -> maxpool(2)", r"maxpool 'maxpool': expects an image input \[C, H, W\], got \[4\]"),
    ((4, 8, 8), "gap -> gap", r"gap 'gap_1': expects an image input"),
    ((4, 8, 8), "maxpool(9)", r"window 9 is larger than its input \[4, 8, 8\]"),
    ((4, 8, 8), "conv(2, 3, dilation=2, padding=\"same\", stride=2)", r'padding="same" needs stride=1'),
    ((4, 8, 8), "conv(6, 1, groups=3)", r"groups=3 must divide input channels \(4\) and output channels \(6\)"),
    ((4, 8, 8), "conv_transpose(6, 2, groups=4)", r"groups=4 must divide"),
    ((4, 8, 8), "conv_transpose(4, 3, padding=9)", r"output would be empty for input \[4, 8, 8\]"),
    ((4, 8, 8), "split(2, part=2)", r"part 2 does not exist; the split has 2 parts"),
    ((4, 8, 8), "channel_shuffle(3)", r"4 channels do not divide into 3 groups"),
    ((4, 8, 8), "upsample()", r"give exactly one of scale or size"),
    ((4, 8, 8), "upsample(2, align_corners=true)", r'align_corners only applies to mode="bilinear"'),
    ((4, 8, 8), "softmax(dim=-4)", r"dim -4 is out of range for \[4, 8, 8\]"),
    ((4, 8, 8), "upsample(0.1)", r"empty output shape \[4, 0, 0\]"),
])
def test_shape_errors(in_shape, call, message):
    with pytest.raises(NetError, match=message) as info:
        shape_of(in_shape, call)
    assert info.value.span is not None and info.value.span.line == 3
