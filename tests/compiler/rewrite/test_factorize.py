"""Factorized convs: depthwise k x k + 1 x 1 in place of k x k, the same shapes everywhere else, k²-fold fewer
MACs, and inherited weights that reproduce the original conv whenever its kernel is separable."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.backend.lower import lower_to_torch
from compiler.cost import network_cost
from compiler.ir import architecture_hash
from compiler.lint import lint
from compiler.printer import print_network
from compiler.rewrite.coupling import apply_widths, channel_plan
from compiler.rewrite.factorize import factorizable_convs, factorize_convs, factorized_pairs, separable_factors
from compiler.rewrite.transfer import transfer_weights
from netdsl.loader import load_network, load_network_text

MIXED = """
network Mixed {
    input x: [3, 10, 10]
    a = x -> conv(8, k=3, padding=1) as c3 -> bn as c3_bn -> relu as c3_relu
    b = a -> conv(8, k=1) as c1 -> relu as c1_relu
    c = b -> conv(8, k=3, padding=1, groups=2) as grouped -> relu as g_relu
    d = c -> fixed conv(8, k=3, padding=1) as frozen -> relu as f_relu
    output y = d -> conv(6, k=5, stride=2, padding=2) as strided -> gap as pool -> linear(2) as fc
}
"""


def test_which_convs_are_factorizable():
    g = load_network_text(MIXED, "mixed.net")
    assert factorizable_convs(g) == ["c3", "strided"]  # not 1x1, grouped or fixed
    fashion = load_network("examples/fashion_cnn.net")
    assert factorizable_convs(fashion) == ["conv_1", "conv_2", "conv_3", "conv_4"]  # the stem reads one channel


def test_factorizing_keeps_every_shape_and_cuts_macs():
    g = load_network_text(MIXED, "mixed.net")
    f = lint(factorize_convs(g, ["c3", "strided"]))
    for name in g:
        assert f.nodes[name]["shape"] == g.nodes[name]["shape"], name
    dw = f.nodes["strided_dw"]
    assert dw["op"] == "dwconv" and dw["inputs"] == ["f_relu"] and dw["attrs"]["stride"] == 2
    assert dw["attrs"]["k"] == 5 and f.nodes["strided"]["attrs"]["k"] == 1 and f.nodes["strided"]["inputs"] == ["strided_dw"]
    assert list(f.predecessors("strided")) == ["strided_dw"]
    assert network_cost(f).macs < network_cost(g).macs
    assert g.nodes["c3"]["attrs"]["k"] == 3  # the original is untouched
    assert factorized_pairs(g, f) == {"c3": "c3_dw", "strided": "strided_dw"}
    assert factorized_pairs(g, g) == {}


def test_a_factorized_network_prints_and_parses_back_to_itself():
    f = lint(factorize_convs(load_network("examples/fashion_cnn.net"), ["conv_1", "conv_3"]))
    again = load_network_text(print_network(f), "again.net")
    assert architecture_hash(again) == architecture_hash(f)


def test_the_depthwise_half_follows_its_input_channel_group():
    f = lint(factorize_convs(load_network("examples/fashion_cnn.net"), ["conv_1", "conv_2"]))
    plan = channel_plan(f)
    group_of = {m: grp.id for grp in plan.groups for m in grp.members}
    assert group_of["conv_1_dw"] == group_of["relu"]  # stage 1's channels
    assert group_of["conv_2_dw"] == group_of["maxpool"]


@settings(max_examples=30, deadline=None)
@given(out=st.integers(1, 6), inp=st.integers(1, 5), k=st.sampled_from([1, 3, 5]), seed=st.integers(0, 2**16))
def test_separable_factors_are_the_best_rank_one_fit_per_input_channel(out, inp, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(out, inp, k, k)).astype(np.float32)
    dw, pw = separable_factors(w)
    assert dw.shape == (inp, 1, k, k) and pw.shape == (out, inp, 1, 1) and dw.dtype == np.float32
    rebuilt = np.einsum("oi,ihw->oihw", pw[:, :, 0, 0], dw[:, 0])
    for i in range(inp):  # Eckart-Young: the residual is the singular values after the first
        s = np.linalg.svd(w[:, i].reshape(out, k * k), compute_uv=False)
        assert abs(np.linalg.norm(w[:, i] - rebuilt[:, i]) - np.sqrt((s[1:] ** 2).sum())) < 1e-4
    exact = np.einsum("oi,ihw->oihw", rng.normal(size=(out, inp)), rng.normal(size=(inp, k, k))).astype(np.float32)
    dw, pw = separable_factors(exact)
    assert np.allclose(np.einsum("oi,ihw->oihw", pw[:, :, 0, 0], dw[:, 0]), exact, atol=1e-4)


@cache
def resnet18():
    g = load_network("examples/resnet18.net")
    return g, factorizable_convs(g)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_set_of_factorized_convs_keeps_every_shape_and_never_adds_macs(data):
    g, candidates = resnet18()
    names = data.draw(st.lists(st.sampled_from(candidates), unique=True, max_size=len(candidates)))
    f = lint(factorize_convs(g, names))
    assert all(f.nodes[n]["shape"] == g.nodes[n]["shape"] for n in g)
    assert set(f) - set(g) == {f"{n}_dw" for n in names}
    assert factorized_pairs(g, f) == {n: f"{n}_dw" for n in names}
    assert network_cost(f).macs <= network_cost(g).macs
    assert architecture_hash(load_network_text(print_network(f), "again.net")) == architecture_hash(f)


def test_inherited_weights_reproduce_a_separable_parent_exactly():
    g = load_network("examples/fashion_cnn.net")
    torch.manual_seed(0)
    parent = lower_to_torch(g).eval()
    state = parent.state_dict()
    for name in factorizable_convs(g):  # make the parent's kernels separable, so the factorization is exact
        w = state[f"{name}.weight"]
        state[f"{name}.weight"] = torch.einsum("oi,ihw->oihw", torch.randn(w.shape[:2]), torch.randn(w.shape[1], 3, 3))
    parent.load_state_dict(state)
    child_g = lint(factorize_convs(g, factorizable_convs(g)))
    plan = channel_plan(child_g)
    stage3 = next(grp.id for grp in plan.groups if "conv_4" in grp.members)
    child_g = lint(apply_widths(child_g, {stage3: 64}, plan))  # and narrow stage 3 while at it
    kept = {"conv_4": list(range(0, 128, 2))}
    child = lower_to_torch(child_g).eval()
    child.load_state_dict(transfer_weights(g, state, child_g, kept))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        feats = {}
        parent.get_submodule("conv_3").register_forward_hook(lambda m, i, o: feats.setdefault("parent", o))
        child.get_submodule("conv_3").register_forward_hook(lambda m, i, o: feats.setdefault("child", o))
        parent(x)
        child(x)
    assert (feats["parent"] - feats["child"]).abs().max() <= 1e-5 * feats["parent"].abs().max()


def test_non_square_convs_factorize_into_non_square_depthwise():
    from compiler.rewrite.factorize import factorizable_convs, factorize_convs
    from netdsl.loader import load_network_text

    g = load_network_text("""network N {
        input x: [4, 9, 9]
        x -> conv(8, k=[1, 7], padding=[0, 3]) as wide -> conv(8, k=[3, 1], stride=[2, 1]) as tall
        output y = gap -> linear(2)
    }""")
    assert set(factorizable_convs(g)) == {"wide", "tall"}
    f = factorize_convs(g, ["wide", "tall"])
    assert f.nodes["wide_dw"]["attrs"]["k"] == [1, 7] and f.nodes["tall_dw"]["attrs"]["stride"] == [2, 1]
    assert f.nodes["tall"]["shape"] == g.nodes["tall"]["shape"] == (8, 4, 9)
