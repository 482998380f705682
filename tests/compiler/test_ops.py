"""The op specs: every op declares every trait from the named values, and every pass has a rule for every value.

This is the test that makes "adding an op" one spec entry: a new op whose traits reuse existing values passes
as is; a new trait value fails here until each pass that reads that trait has its rule.
"""

from __future__ import annotations

from dataclasses import fields

import pytest

from compiler.backend.codegen import EXPRESSIONS, INPLACE, LAYERS
from compiler.cost.program import COST_CODES
from compiler.ops import CATEGORY_TRAITS, KIND_CHECKS, OPS, TRAIT_NAMES, TRAITS, VARIADIC, OpSpec, ops_in
from compiler.rewrite import coupling, transfer
from compiler.shapes import SHAPE_RULES

# trait -> the rule tables keyed by its values, one per pass that reads it (booleans are read as flags)
RULES = {
    "shape": [SHAPE_RULES],
    "cost": [COST_CODES],
    "channels": [coupling.CHANNEL_RULES, transfer.CHANNEL_RULES],
    "layer": [LAYERS, transfer.WEIGHT_RULES],
    "codegen": [EXPRESSIONS],
    "inplace": [INPLACE],
}


def test_every_op_declares_every_trait_with_a_named_value():
    call = {"name", "arity", "params", "positional", "doc"}
    assert set(TRAIT_NAMES) == set(TRAITS) == {f.name for f in fields(OpSpec)} - call - {"torch"}
    for name, spec in OPS.items():
        assert spec.name == name and isinstance(spec.torch, str)  # the lowering tests run every op's torch call
        for trait in TRAIT_NAMES:
            assert getattr(spec, trait) in TRAITS[trait], f"{name}.{trait} = {getattr(spec, trait)!r}"
        assert spec.arity == VARIADIC or spec.arity >= 0
        assert all(p.kind in KIND_CHECKS for p in spec.params), name
        assert set(spec.positional) <= {p.name for p in spec.params}, name


@pytest.mark.parametrize("trait", sorted(RULES))
def test_each_pass_has_a_rule_for_every_value_and_no_dead_rule(trait):
    used = {getattr(spec, trait) for spec in OPS.values()} - {None}
    named = set(TRAITS[trait]) - {None}
    assert used == named, f"{trait}: named but unused {named - used}, used but unnamed {used - named}"
    for table in RULES[trait]:
        assert set(table) == named, f"{trait}: rules {sorted(table, key=str)} vs values {sorted(named, key=str)}"


def test_categories_are_named_once_and_group_every_op():
    assert set(CATEGORY_TRAITS) == set(TRAITS["category"])
    assert sorted(op for category in TRAITS["category"] for op in ops_in(category)) == sorted(OPS)
    assert ops_in("layer") == ("conv", "dwconv", "conv_transpose", "linear", "bn")


def test_traits_agree_with_each_other():
    for name, spec in OPS.items():
        assert (spec.codegen == "module") == (spec.layer is not None) == (spec.category == "layer"), name
        assert not (spec.view and spec.fresh), name  # a view aliases its input: it cannot be fresh
        assert spec.inplace is None or spec.arity != 0, name
        assert not spec.factorizable or spec.stridable, name  # both rewrite a conv's window


def test_the_lowering_and_export_tests_run_every_op():
    from netdsl.loader import load_network_text
    from tests.compiler.backend.lowering_nets import EVERY_OP

    g = load_network_text(EVERY_OP, "every_op.net")
    assert {d["op"] for _, d in g.nodes(data=True)} == set(OPS)
