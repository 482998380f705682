"""The cost model: hand-computed figures per op, peak memory, errors, and the published torchvision figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.cost import batched_costs, compile_costs, cost_of, network_cost, with_input_shapes
from compiler.diagnostics import NetError
from compiler.ir import add_node, new_graph
from netdsl.loader import load_network, load_network_text

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def cost(body: str, shape: str = "[8, 16, 16]"):
    """Cost of a one-input network `x` whose body (statements) ends in `output y = ...`."""
    return network_cost(load_network_text(f"network t {{\n input x: {shape}\n {body}\n}}"))


def only(report, op: str) -> dict:
    (node,) = [n for n in report.nodes() if n["op"] == op]
    return node


# ---- one op at a time ---------------------------------------------------------------------------------------

def test_conv_with_groups_dilation_stride():
    r = cost("output y = conv(12, 3, stride=2, padding=2, dilation=2, groups=4)")
    # out 12 x 8 x 8 (16 + 4 - 4 - 1) // 2 + 1 = 8; each output: 8/4 inputs x 3x3 taps
    assert only(r, "conv") == {**only(r, "conv"), "macs": 12 * 64 * 2 * 9, "params": 12 * 2 * 9 + 12, "other_ops": 0}
    assert only(r, "conv")["activation_elements"] == 12 * 64


def test_conv_without_bias_and_depthwise_conv():
    r = cost("output y = conv(8, 3, padding=1, groups=8, bias=false)")
    assert (r.macs, r.params) == (8 * 256 * 9, 8 * 9)


def test_dwconv_multiplier():
    r = cost("output y = dwconv(3, padding=1, multiplier=2, bias=false)")
    assert (r.macs, r.params) == (16 * 256 * 9, 16 * 9)


def test_conv_transpose():
    r = cost("output y = conv_transpose(4, 3, stride=2, padding=1, output_padding=1, groups=2)", "[8, 5, 5]")
    # out [4, 10, 10]; every input pixel scatters into k*k*out/groups outputs
    assert only(r, "conv_transpose")["activation_elements"] == 400
    assert (r.macs, r.params) == (8 * 2 * 9 * 25, 8 * 2 * 9 + 4)


def test_linear_with_and_without_bias():
    assert (cost("output y = linear(7)", "[20]").macs, cost("output y = linear(7)", "[20]").params) == (140, 147)
    assert cost("output y = linear(7, bias=false)", "[20]").params == 140


def test_bn_params_buffers_and_other_ops():
    r = cost("output y = bn -> relu")
    bn = only(r, "bn")
    assert (bn["macs"], bn["params"], bn["buffers"], bn["other_ops"]) == (0, 16, 17, 2048)
    assert only(r, "relu")["other_ops"] == 2048
    assert cost("output y = bn(affine=false)").params == 0


def test_pools():
    r = cost("output y = maxpool(3, stride=2, padding=1)")
    assert (r.macs, r.other_ops, only(r, "maxpool")["activation_elements"]) == (0, 8 * 64 * 9, 8 * 64)
    assert cost("output y = avgpool(2)").other_ops == 8 * 64 * 4
    assert cost("output y = gap").other_ops == 8 * 256
    # adaptive windows of 7 -> 3: [0, 3), [2, 5), [4, 7): 9 per axis
    assert cost("output y = adaptive_avgpool(3)", "[8, 7, 7]").other_ops == 8 * 9 * 9


def test_upsample_nearest_and_bilinear():
    assert cost("output y = upsample(2)", "[8, 4, 4]").other_ops == 0
    r = cost('output y = upsample(2, mode="bilinear")', "[8, 4, 4]")
    assert (r.other_ops, only(r, "upsample")["activation_elements"]) == (4 * 512, 512)


def test_concat_add_mul_broadcast_softmax():
    r = cost("a = conv(4, 1, bias=false)\n b = conv(x, 6, 1, bias=false)\n output y = concat(a, b)")
    assert only(r, "concat")["activation_elements"] == 10 * 256 and only(r, "concat")["other_ops"] == 0
    assert r.macs == (4 + 6) * 256 * 8
    r = cost("output y = add(x, x, x)")
    assert only(r, "add")["other_ops"] == 2 * 8 * 256
    r = cost("s = conv(8, 16) -> sigmoid\n output y = mul(x, s)")  # [8, 1, 1] broadcast over [8, 16, 16]
    assert only(r, "mul")["other_ops"] == 8 * 256
    assert cost("output y = softmax", "[10]").other_ops == 30


def test_views_and_moves_cost_nothing():
    r = cost("a, b = split(2)\n output y = concat(b, a) -> channel_shuffle(2) -> identity -> dropout -> flatten")
    assert (r.macs, r.params, r.other_ops) == (0, 0, 0)


# ---- peak memory --------------------------------------------------------------------------------------------

def test_peak_memory_of_a_branching_graph():
    r = cost("a = conv(8, 1)\n b = conv(x, 4, 1)\n c = concat(a, b)\n output y = gap(c)", "[4, 8, 8]")
    # x 256 | +a 512 -> 768 | +b 256 -> 1024, x freed -> 768 | +c 768 -> 1536, a and b freed | +gap 12, c freed
    assert r.peak_activation_elements == 1536
    assert r.peak_activation_bytes == 1536 * 4
    assert r.totals()["activation_bytes"] == (256 + 512 + 256 + 768 + 12) * 4


def test_views_share_their_input_memory():
    r = cost("output y = relu -> flatten -> linear(10)", "[4, 8, 8]")
    # x 256 | +relu 256 -> 512, x freed | flatten is a view of relu | +linear 10, relu freed
    assert r.peak_activation_elements == 512


def test_outputs_stay_alive():
    r = cost("a = conv(8, 1)\n output p = gap(a)\n output q = conv(a, 2, 1)", "[4, 8, 8]")
    # x 256 | +a 512 = 768, x freed -> 512 | +p 8 -> 520 | +q 128 -> 648, a freed -> 136
    assert r.peak_activation_elements == 768


# ---- errors ---------------------------------------------------------------------------------------------------

def test_unknown_op_is_an_error_naming_the_node():
    g = new_graph("odd")
    add_node(g, "x", "input", {"shape": [3, 8, 8]}, [])
    add_node(g, "warp", "frobnicate", {}, ["x"])
    g.nodes["x"]["shape"] = g.nodes["warp"]["shape"] = (3, 8, 8)
    g.graph["outputs"] = {"y": "warp"}
    with pytest.raises(NetError, match="does not know op 'frobnicate' \\(node 'warp'\\)"):
        compile_costs(g)


def test_overflow_is_an_error():
    with pytest.raises(NetError, match="overflows 64-bit integers at linear 'linear'"):
        cost("output y = linear(100000000000)", "[100000000]")
    with pytest.raises(NetError, match=r"\[3, 2147483648, 2147483648\] would hold 1.3e\+19 elements per sample, "
                                       "more than netdsl handles"):
        cost("output y = relu", "[3, 2147483648, 2147483648]")
    program = compile_costs(load_network_text("network t {\n input x: [64]\n h = linear(64)\n output y = linear(h, 10)\n}"))
    with pytest.raises(NetError, match="overflows 64-bit integers at widths row 1"):
        batched_costs(program, [[64], [2**60]])


def test_batched_rejects_bad_widths():
    program = compile_costs(load_network_text("network t {\n input x: [64]\n h = linear(64)\n output y = linear(h, 10)\n}"))
    with pytest.raises(NetError, match="1 columns"):
        batched_costs(program, np.ones((2, 3)))
    with pytest.raises(NetError, match="positive multiple"):
        batched_costs(program, [[0]])


def test_other_input_shapes():
    g = load_network_text("network t {\n input x: [3, 32, 32]\n output y = conv(8, 3, padding=1) -> gap -> linear(10)\n}")
    small = network_cost(with_input_shapes(g, {"x": (3, 16, 16)}))
    assert small.macs == 8 * 256 * 27 + 80
    with pytest.raises(NetError, match="rank 3"):
        with_input_shapes(g, {"x": (3, 16)})
    with pytest.raises(NetError, match="positive"):
        with_input_shapes(g, {"x": (3, 0, 16)})
    with pytest.raises(NetError, match="no input 'z'"):
        with_input_shapes(g, {"z": (3, 16, 16)})


# ---- the published torchvision figures (1 x 3 x 224 x 224, 1000 classes) -------------------------------------

PUBLISHED = {  # params, GMACs as published (rounded to the digits given)
    "resnet18": (11_689_512, "1.814"),
    "resnet50": (25_557_032, "4.089"),
    "vgg16": (138_357_544, "15.470"),
    "mobilenet_v2": (3_504_872, "0.301"),
    "mobilenet_v3_small": (2_542_856, "0.057"),
    "squeezenet1_1": (1_235_496, "0.349"),
    "shufflenet_v2_x1_0": (2_278_604, "0.145"),
    "mobilenet_v1": (4_231_976, "0.569"),
}
EXACT_MACS = {"resnet18": 1_814_073_344, "mobilenet_v2": 300_774_272}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_figures(name):
    path = EXAMPLES / f"{name}.net"
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    params, gmacs = PUBLISHED[name]
    r = network_cost(load_network(str(path)))
    assert r.params == params
    published = float(gmacs) * 1e9
    # within 0.5%, or within the rounding of the published figure (0.057 G stands for [0.0565, 0.0575) G)
    half_unit = 0.5 * 10 ** -len(gmacs.split(".")[1]) * 1e9
    assert abs(r.macs - published) <= max(0.005 * published, half_unit), f"{r.macs:,} vs {gmacs} G"
    if name in EXACT_MACS:
        assert r.macs == EXACT_MACS[name]


def test_report_lookup_and_totals_agree():
    r = cost("output y = conv(4, 3) -> bn -> relu")
    assert sum(n["macs"] for n in r.nodes()) == r.macs == r.totals()["macs"] == r.node("conv")["macs"]
    assert cost_of(r.program).per_node.tolist() == r.per_node.tolist()


def test_importing_the_cost_model_or_costing_one_network_loads_no_numba():
    import subprocess
    import sys

    code = ("import sys, compiler.cost, compiler.cost.kernel as ck\n"
            "from netdsl.loader import load_network\n"
            "compiler.cost.network_cost(load_network('examples/resnet50.net'))\n"
            "print('numba' in sys.modules, ck.jitted())\n"
            "ck.jit()\n"
            "print(sum(len(getattr(ck, f).signatures) for f in ('node_cost', 'cost_kernel', 'batched_kernel', "
            "'slot_kernel')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3]).stdout
    assert out.split() == ["False", "False", "0"]  # and jit() compiles nothing until a kernel is called


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_small", "unet_small", "detector_small"])
def test_the_python_and_numba_kernels_agree(name):
    import compiler.cost.kernel as ck

    program = compile_costs(load_network(f"examples/{name}.net"))
    python = ck._KERNELS["cost_kernel"](program.table, program.in_idx, program.free_idx)
    ck.jit()
    compiled = ck.cost_kernel(program.table, program.in_idx, program.free_idx)
    assert python[0].tolist() == compiled[0].tolist() and python[1:] == compiled[1:]


def test_memory_need_and_the_check_before_allocating():
    from compiler.cost import check_memory, memory_need

    g = load_network_text("network t {\n input x: [3, 32, 32]\n h = x -> conv(64, k=3, padding=1)\n"
                          " output y = h -> gap -> linear(10)\n}")
    need = memory_need(g)
    assert need.weight_bytes == (3 * 64 * 9 + 64 + 640 + 10) * 4
    assert need.activation_bytes >= 64 * 32 * 32 * 4 and need.heaviest == "conv" and need.widest == "conv"
    trained = memory_need(g, batch=8, training=True, optimizer_states=2)
    assert trained.weight_bytes == 4 * need.weight_bytes and trained.activation_bytes > 8 * need.activation_bytes
    check_memory(g, "training", available=10**9)
    with pytest.raises(NetError, match=r"training t needs at least .* more than the 1 kB of memory available") as info:
        check_memory(g, "training", available=1000)
    assert info.value.span.line == 3 and "conv 'conv' alone has" in info.value.notes[0]
