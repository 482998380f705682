"""Channel groups (the rewrite units of width search), apply_widths, and the batched cost kernel that uses them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.cost import batched_costs, compile_costs, cost_of
from compiler.diagnostics import NetError
from compiler.ir import structure
from compiler.lint import lint
from compiler.rewrite.coupling import apply_widths, channel_groups, channel_plan
from netdsl.loader import load_network, load_network_text

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def net(body: str, shape: str = "[8, 16, 16]"):
    return load_network_text(f"network t {{\n input x: {shape}\n {body}\n}}")


def group_of(g, node: str):
    """The group whose members include node."""
    (grp,) = [grp for grp in channel_groups(g) if node in grp.members]
    return grp


RESIDUAL = """
h = conv(16, 3, padding=1) as stem -> bn -> relu
conv(h, 8, 3, padding=1) as a -> bn -> relu
b = conv(16, 3, padding=1) as b -> bn
add(b, h) as s -> relu
output y = gap -> linear(10)
"""


def test_residual_add_joins_its_operands():
    g = net(RESIDUAL)
    stem = group_of(g, "stem")
    assert set(stem.members) == {"stem", "bn", "relu", "b", "bn_2", "s", "relu_2", "gap"}
    assert set(stem.writers) == {"stem", "b"} and not stem.fixed
    inner = group_of(g, "a")
    assert inner.id != stem.id and inner.writers == ("a",) and not inner.fixed
    assert group_of(g, "x").fixed and "input" in group_of(g, "x").reason
    assert group_of(g, "linear").fixed and "feeds output 'y'" in group_of(g, "linear").reason


def test_depthwise_conv_follows_its_input():
    g = net("conv(16, 1) as a -> bn\n conv(16, 3, padding=1, groups=16) as d -> bn -> dwconv(3, padding=1)\n"
            " output y = conv(4, 1)")
    grp = group_of(g, "a")
    assert {"d", "bn_1", "dwconv"} <= set(grp.members) and set(grp.writers) == {"a", "d"}
    wide = lint(apply_widths(g, {grp.id: 24}))
    assert wide.nodes["d"]["attrs"]["groups"] == 24 and wide.nodes["dwconv"]["shape"] == (24, 16, 16)


def test_concat_is_derived_not_a_variable():
    g = net("p = conv(4, 1) as a\n q = conv(x, 6, 1) as b\n concat(p, q) as c\n output y = conv(3, 1)")
    plan = channel_plan(g)
    ga, gb = group_of(g, "a"), group_of(g, "b")
    assert plan.exprs["c"] == ("sum", (("var", ga.id), ("var", gb.id)))
    assert not any("c" in grp.members for grp in plan.groups)
    assert lint(apply_widths(g, {ga.id: 5, gb.id: 7})).nodes["c"]["shape"] == (12, 16, 16)


def test_equal_split_makes_its_input_a_multiple():
    g = net("h = conv(12, 1) as h\n p, q, r = split(h, 3)\n output y = concat(r, p, q) -> conv(5, 1)")
    grp = group_of(g, "h")
    assert grp.multiple_of == 3 and not grp.fixed
    assert channel_plan(g).exprs["split"] == ("part", ("var", grp.id), 3)


def test_split_into_listed_sizes_fixes_its_input():
    g = net("h = conv(12, 1) as h\n p, q = split(h, [4, 8])\n output y = concat(q, p) -> conv(5, 1)")
    grp = group_of(g, "h")
    assert grp.fixed and "listed sizes" in grp.reason


def test_grouped_conv_and_channel_shuffle_need_multiples():
    g = net("h = conv(16, 1) as h\n conv(h, 24, 3, groups=4) as k\n output y = channel_shuffle(3) -> conv(5, 1)")
    assert group_of(g, "h").multiple_of == 4
    assert group_of(g, "k").multiple_of == 12  # lcm of groups=4 and shuffle groups=3
    with pytest.raises(NetError, match="multiple of 12"):
        apply_widths(g, {group_of(g, "k").id: 18})


def test_fixed_nodes_and_broadcast_operands_are_fixed():
    g = net("h = fixed conv(16, 1) as h\n m = conv(h, 1, 1) as m\n output y = mul(h, m) -> conv(5, 1)")
    assert group_of(g, "h").fixed and "marked fixed" in group_of(g, "h").reason
    assert group_of(g, "m").fixed and "broadcast operand" in group_of(g, "m").reason


def test_add_of_a_concat_freezes_every_operand():
    g = net("p = conv(4, 1) as a\n q = conv(x, 4, 1) as b\n r = conv(x, 8, 1) as c\n"
            " s = add(concat(p, q), r)\n output y = conv(s, 3, 1)")
    assert all(group_of(g, n).fixed for n in ("a", "b", "c"))


def test_apply_widths_checks_its_arguments():
    g = net(RESIDUAL)
    with pytest.raises(NetError, match="is fixed"):
        apply_widths(g, {group_of(g, "linear").id: 5})
    with pytest.raises(NetError, match="no channel group 99"):
        apply_widths(g, {99: 5})
    with pytest.raises(NetError, match="positive integer"):
        apply_widths(g, {group_of(g, "a").id: 0})
    assert structure(lint(apply_widths(g, {}))) == structure(g)


# ---- the batched kernel equals costing the rewritten network ------------------------------------------------

PROPERTY_NETS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0", "squeezenet1_1",
                 "unet_small", "detector_small", "lenet5"]


@cache
def example(name: str):
    g = load_network(str(EXAMPLES / f"{name}.net"))
    return g, compile_costs(g)


@pytest.mark.parametrize("name", PROPERTY_NETS)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_batched_costs_equal_costing_the_rewritten_network(name, data):
    if not (EXAMPLES / f"{name}.net").exists():
        pytest.skip(f"examples/{name}.net not written yet")
    g, program = example(name)
    rows = []
    for _ in range(3):
        row = [m * data.draw(st.integers(1, max(1, -(-2 * p // m))))
               for p, m in zip(program.prototype_widths.tolist(), program.multiple_of.tolist())]
        rows.append(row)
    macs, params = batched_costs(program, np.array(rows, dtype=np.int64))
    for row, m, p in zip(rows, macs.tolist(), params.tolist()):
        rewritten = lint(apply_widths(g, dict(zip(program.width_groups, row)), program.plan))
        report = cost_of(compile_costs(rewritten))
        assert (m, p) == (report.macs, report.params)


def test_batched_at_prototype_widths_equals_cost_of():
    g, program = example("resnet18") if (EXAMPLES / "resnet18.net").exists() else (None, compile_costs(net(RESIDUAL)))
    macs, params = batched_costs(program, program.prototype_widths)
    report = cost_of(program)
    assert (int(macs[0]), int(params[0])) == (report.macs, report.params)


@pytest.mark.parametrize("name", ["shufflenet_v2_x1_0", "unet_small", "squeezenet1_1"])
def test_fast_slot_kernel_equals_the_checked_kernel(name):
    from compiler.cost import kernel as ck
    from compiler.cost.batch import slot_costs
    from compiler.cost.network import _slot_program

    if not (EXAMPLES / f"{name}.net").exists():
        pytest.skip(f"examples/{name}.net not written yet")
    _, program = example(name)
    rng = np.random.default_rng(1)
    mult = program.multiple_of
    widths = (rng.integers(1, 2 * program.prototype_widths // mult + 1, size=(64, len(mult))) * mult).astype(np.int64)
    fast = slot_costs(_slot_program(program), widths)
    macs, params, overflow = ck.batched_kernel(program.table, program.in_idx, program.active, program.costly, widths)
    assert not overflow.any()
    assert fast[0].tolist() == macs.tolist() and fast[1].tolist() == params.tolist()
