"""The IR's one source of truth for inputs (edges derived from the ordered lists) and lint, which checks it."""

from __future__ import annotations

import pytest

from compiler.diagnostics import NetError
from compiler.ir import add_node, copy_graph, from_dict, remove_nodes, replace_uses, set_inputs, to_dict
from compiler.lint import LintError, lint
from netdsl.loader import load_network, load_network_text

SMALL = """
network Small {
    input x: [3, 8, 8]
    a = x -> conv(4, k=3, padding=1) as conv -> relu as act
    output y = add(a, a) as twice -> gap as pool -> linear(2) as fc
}
"""


def small():
    return load_network_text(SMALL, "small.net")


def test_edges_follow_the_ordered_inputs_with_repeats():
    g = small()
    assert g.nodes["twice"]["inputs"] == ["act", "act"] and list(g.predecessors("twice")) == ["act"]
    set_inputs(g, "twice", ["act", "conv"])
    assert sorted(g.predecessors("twice")) == ["act", "conv"]
    replace_uses(g, "act", "conv")
    assert g.nodes["twice"]["inputs"] == ["conv", "conv"] and list(g.predecessors("twice")) == ["conv"]
    assert list(g.successors("act")) == []
    remove_nodes(g, ["act"])
    assert "act" not in g
    lint(g)


def test_replace_uses_moves_outputs_and_remove_nodes_refuses_what_is_still_read():
    g = small()
    with pytest.raises(NetError, match="'twice' reads it"):
        remove_nodes(g, ["act"])
    with pytest.raises(NetError, match="an output reads it"):
        remove_nodes(g, ["fc"])
    with pytest.raises(NetError, match="not defined"):
        set_inputs(g, "pool", ["nowhere"])
    replace_uses(g, "fc", "pool")
    assert g.graph["outputs"] == {"y": "pool"}
    remove_nodes(g, ["fc"])
    lint(g)


def test_every_example_and_its_json_round_trip_lint_clean():
    for name in ("resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "unet_small"):
        g = load_network(f"examples/{name}.net")
        assert lint(g) is g
        lint(from_dict(to_dict(g)))


def broken(mutate) -> list[str]:
    g = copy_graph(small())
    mutate(g)
    with pytest.raises(LintError) as err:
        lint(g)
    return err.value.problems


@pytest.mark.parametrize("mutate, message", [
    (lambda g: g.nodes["twice"].update(inputs=["act", "conv"]), "reads 'conv' but has no edge from it"),
    (lambda g: g.add_edge("x", "pool"), "edge x -> pool is not in pool's inputs"),
    (lambda g: g.nodes["pool"].update(inputs=["act", "conv"]), "gap takes 1 inputs, has 2"),
    (lambda g: g.nodes["act"].update(op="frobnicate"), "unknown op 'frobnicate'"),
    (lambda g: g.nodes["conv"]["attrs"].pop("k"), "are not conv's parameters"),
    (lambda g: g.nodes["conv"]["attrs"].update(k=0), "k=0 is not a positive integer"),
    (lambda g: g.nodes["conv"].update(shape=(5, 8, 8)), "has shape [5, 8, 8], its inputs give [4, 8, 8]"),
    (lambda g: g.nodes["pool"].update(shape=[4]), "is not a tuple of positive integers"),
    (lambda g: g.graph["outputs"].update(z="gone"), "output 'z' names 'gone'"),
    (lambda g: g.graph["inputs"].append("x"), "are not the input nodes"),
    (lambda g: g.nodes["conv"]["choices"].update(k="nope"), "names decision 'nope'"),
    (lambda g: g.graph.pop("scopes"), "graph attribute 'scopes'"),
    (lambda g: g.nodes["act"].pop("span"), "lacks span"),
])
def test_lint_names_each_broken_invariant(mutate, message):
    problems = broken(mutate)
    assert any(message in p for p in problems), problems


def test_lint_finds_cycles_and_unshaped_inputs():
    def cycle(g):
        set_inputs(g, "conv", ["act"])
    assert any(p.startswith("cycle: ") for p in broken(cycle))

    def unshaped(g):
        add_node(g, "late", "relu", {}, ["x"])
        set_inputs(g, "pool", ["late"])
        remove_nodes(g, ["twice"])
        remove_nodes(g, ["act"])
        remove_nodes(g, ["conv"])
    assert any("its input 'late' has none" in p for p in broken(unshaped))
