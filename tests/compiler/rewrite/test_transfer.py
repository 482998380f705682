"""Weight transfer: a narrowed child computes exactly what its parent computes with the removed channels zeroed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.backend.lower import lower_to_torch
from compiler.diagnostics import NetError
from compiler.ir import copy_graph, remove_nodes, replace_uses
from compiler.lint import lint
from compiler.rewrite.coupling import apply_widths, channel_plan
from compiler.rewrite.transfer import channel_index_sets, transfer_weights
from compiler.shapes import infer_shapes
from compiler.validate import validate
from netdsl.loader import load_network_text

BRANCHY = """
network branchy(w_stem=16, w_b1=16, w_pw=8, w_g=16, w_mix=12) {
    input x: [3, 8, 8]
    s = x -> conv(w_stem, k=3, padding=1, bias=false) as stem -> bn as stem_bn -> relu as stem_relu
    b = s -> conv(w_b1, k=3, padding=1, bias=false) as b1 -> bn as b1_bn -> relu as b1_relu
          -> conv(w_stem, k=3, padding=1) as b2 -> bn as b2_bn
    r = add(b, s) as res -> relu as res_relu
    d = r -> dwconv(3, padding=1) as dw -> bn as dw_bn -> relu as dw_relu
    e = r -> conv(w_pw, k=1) as pw -> bn as pw_bn -> relu as pw_relu
    q = r -> conv(w_g, k=3, padding=1, groups=4) as gconv -> bn as g_bn -> relu as g_relu
    output logits = concat(d, e, q) as cat -> conv(w_mix, k=1) as mix -> bn as mix_bn -> relu as mix_relu
        -> maxpool(2) as pool -> flatten as flat -> linear(10) as fc
}
"""

SHUFFLED = """
network shuffled(w=8) {
    input x: [4, 6, 6]
    t = x -> conv(w * 2, k=1) as c0 -> bn as c0_bn -> relu as c0_relu
    a, b = t -> split(2) as halves
    b2 = b -> conv(w, k=1) as c1 -> bn as c1_bn -> relu as c1_relu
    output y = concat(a, b2) as cat -> channel_shuffle(2) as shuffle -> conv(6, k=1) as head -> gap as pool
        -> linear(3) as fc
}
"""

RESIDUAL = """
block res(c) {
    conv(c, k=3, padding=1, bias=false) as conv1 -> bn as bn1 -> relu as relu1
        -> conv(c, k=3, padding=1, bias=false) as conv2 -> bn as bn2
    add(in) as add -> relu as relu2
}
network deep(blocks=2, w=8) {
    input x: [3, 8, 8]
    x -> conv(w, k=3, padding=1, bias=false) as stem -> bn as stem_bn -> relu as stem_relu
    repeat(blocks) res(w) as layer
    output logits = gap as pool -> linear(5) as fc
}
"""


def randomised(graph) -> torch.nn.Module:
    """A lowered float64 network in eval mode with every parameter and BN statistic random."""
    torch.manual_seed(0)
    module = lower_to_torch(graph, dtype=torch.float64).eval()
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif t.is_floating_point():
                t.normal_()
    return module


def silence(module: torch.nn.Module, bn: str, keep: list[int]) -> None:
    """Make every channel of a BN layer outside `keep` exactly zero (scale and shift 0)."""
    layer = module.get_submodule(bn)
    drop = [c for c in range(layer.num_features) if c not in keep]
    with torch.no_grad():
        layer.weight[drop] = 0
        layer.bias[drop] = 0


def check_child_matches(parent_text, child_params, kept, silenced, x_shape, parent_params=None):
    parent_g = load_network_text(parent_text, params=parent_params)
    child_g = load_network_text(parent_text, params=child_params)
    parent = randomised(parent_g)
    for bn, keep in silenced.items():
        silence(parent, bn, keep)
    child_state = transfer_weights(parent_g, parent.state_dict(), child_g, kept)
    child = lower_to_torch(child_g, dtype=torch.float64).eval()
    child.load_state_dict(child_state, strict=True)
    x = torch.randn(4, *x_shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(child(x), parent(x), rtol=1e-10, atol=1e-10)


def test_narrowed_child_with_residual_depthwise_grouped_concat_and_flatten_linear():
    residual = [c for c in range(16) if c not in (1, 6, 11, 12)]  # one per group of the groups=4 conv
    b1 = [0, 2, 3, 5, 7, 8, 9, 10, 13, 15]
    pw = [0, 1, 4, 6, 7]
    grouped = [c for c in range(16) if c not in (0, 5, 10, 15)]
    mix = [0, 1, 2, 4, 5, 7, 9, 10, 11]
    kept = {"stem": residual, "b2": residual, "b1": b1, "pw": pw, "gconv": grouped, "mix": mix}
    silenced = {"stem_bn": residual, "b2_bn": residual, "dw_bn": residual, "b1_bn": b1, "pw_bn": pw, "g_bn": grouped,
                "mix_bn": mix}
    check_child_matches(BRANCHY, {"w_stem": 12, "w_b1": 10, "w_pw": 5, "w_g": 12, "w_mix": 9}, kept, silenced,
                        (3, 8, 8))


def test_narrowed_child_through_split_and_channel_shuffle():
    c0 = [0, 1, 3, 4, 6, 7, 8, 9, 10, 12, 14, 15]  # 6 of each half
    c1 = [1, 2, 3, 5, 6, 7]
    check_child_matches(SHUFFLED, {"w": 6}, {"c0": c0, "c1": c1}, {"c0_bn": c0, "c1_bn": c1}, (4, 6, 6))


def derive(g, widths: dict[str, int], removed_prefix: str):
    """A child as synthesis makes one: some layers narrowed, one block removed and its reader rewired."""
    child = copy_graph(g)
    block = [n for n in child if n.startswith(removed_prefix)]
    add = next(n for n in block if child.nodes[n]["op"] == "add")
    shortcut = next(i for i in child.nodes[add]["inputs"] if not i.startswith(removed_prefix))
    last = next(n for n in block if not any(c.startswith(removed_prefix) for c in child.successors(n)))
    replace_uses(child, last, shortcut)
    remove_nodes(child, block)
    for name, out in widths.items():
        child.nodes[name]["attrs"]["out"] = out
    return lint(validate(infer_shapes(child)))


def test_removed_block_with_rewired_reader_and_narrowed_channels():
    parent_g = load_network_text(RESIDUAL, params={"blocks": 3})
    keep, inner = [0, 2, 3, 4, 6, 7], [1, 2, 5, 6]
    widths = {"stem": 6, "layer.0.conv2": 6, "layer.2.conv2": 6, "layer.0.conv1": 4, "layer.2.conv1": 4}
    child_g = derive(parent_g, widths, "layer.1.")
    assert child_g.nodes["layer.2.conv1"]["inputs"] == ["layer.0.relu2"]
    parent = randomised(parent_g)
    for bn, channels in {"stem_bn": keep, "layer.0.bn2": keep, "layer.2.bn2": keep, "layer.0.bn1": inner,
                         "layer.2.bn1": inner, "layer.1.bn2": []}.items():
        silence(parent, bn, channels)
    kept = {"stem": keep, "layer.0.conv2": keep, "layer.2.conv2": keep, "layer.0.conv1": inner,
            "layer.2.conv1": inner}
    child = lower_to_torch(child_g, dtype=torch.float64).eval()
    child.load_state_dict(transfer_weights(parent_g, parent.state_dict(), child_g, kept), strict=True)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(child(x), parent(x), rtol=1e-10, atol=1e-10)


def test_depthwise_follows_its_input_and_numpy_arrays_slice_too():
    parent_g = load_network_text(BRANCHY)
    child_g = load_network_text(BRANCHY, params={"w_stem": 12, "w_g": 12})
    residual = [c for c in range(16) if c not in (1, 6, 11, 12)]
    kept = {"stem": residual, "b2": residual, "gconv": [c for c in range(16) if c not in (0, 5, 10, 15)]}
    sets = channel_index_sets(parent_g, child_g, kept)
    assert sets["dw"] == residual and sets["dw_bn"] == residual
    assert sets["cat"] == residual + list(range(16, 24)) + [24 + c for c in kept["gconv"]]
    assert sets["flat"][:16] == list(range(16))  # channel 0's 4x4 features
    state = {k: v.numpy() for k, v in lower_to_torch(parent_g).state_dict().items()}
    child = transfer_weights(parent_g, state, child_g, kept)
    assert isinstance(child["dw.weight"], np.ndarray) and child["dw.weight"].shape == (12, 1, 3, 3)
    assert child["gconv.weight"].shape == (12, 3, 3, 3)


@pytest.mark.parametrize("kept, message", [
    ({"stem": list(range(12)), "b2": list(range(1, 13))}, "keep different channels"),
    ({"stem": list(range(12)), "b2": list(range(12)), "gconv": list(range(12))}, "not in the parent's group"),
    ({"stem": list(range(11)) + [11, 11]}, "has 12 channels but keeps 13"),
    ({"nowhere": [0]}, "which the child does not have"),
    ({"stem": list(range(12)), "b2": list(range(12)), "dw": list(range(12))}, None),
])
def test_inconsistent_kept_channels_are_named(kept, message):
    parent_g = load_network_text(BRANCHY)
    child_g = load_network_text(BRANCHY, params={"w_stem": 12, "w_g": 12})
    kept.setdefault("gconv", [c for c in range(16) if c not in (0, 5, 10, 15)])
    if message is None:
        channel_index_sets(parent_g, child_g, kept)  # a kept set equal to the derived one is accepted
        return
    with pytest.raises(NetError, match=message):
        channel_index_sets(parent_g, child_g, kept)
        transfer_weights(parent_g, lower_to_torch(parent_g).state_dict(), child_g, kept)


def test_missing_parent_tensor_is_named():
    g = load_network_text(RESIDUAL, params={"blocks": 2})
    state = lower_to_torch(g).state_dict()
    del state["layer.1.bn1.running_var"]
    with pytest.raises(NetError, match="layer.1.bn1.running_var"):
        transfer_weights(g, state, g, {})


def test_a_conv_with_groups_equal_to_its_channels_follows_its_input_like_a_dwconv():
    text = """
    network dwlike(w=8) {
        input x: [3, 6, 6]
        x -> conv(w, k=1) as pw -> bn as pw_bn -> relu as pw_relu -> conv(w, k=3, padding=1, groups=w) as dw
            -> bn as dw_bn -> gap as pool -> linear(2) as fc
        output y = fc
    }
    """
    keep = [0, 1, 3, 4, 6, 7]
    check_child_matches(text, {"w": 6}, {"pw": keep}, {"pw_bn": keep, "dw_bn": keep}, (3, 6, 6))


def test_a_kernel_size_choice_inherits_centred_weights():
    from gensynth.space import apply_decisions

    text = """
network K {
    input x: [2, 9, 9]
    output y = x -> conv(4, k=choice(3, 5, id="k"), padding="same") -> relu -> conv(3, k=1)
}
"""
    parent = load_network_text(text, "k.net")
    child = lint(apply_decisions(parent, {"k": 1}))
    assert child.nodes[next(n for n in child if child.nodes[n]["op"] == "conv")]["attrs"]["k"] == 5
    torch.manual_seed(0)
    parent_model = lower_to_torch(parent).eval()
    state = transfer_weights(parent, parent_model.state_dict(), child, {})
    child_model = lower_to_torch(child).eval()
    child_model.load_state_dict(state)
    x = torch.randn(3, 2, 9, 9)
    with torch.no_grad():  # 3x3 inside 5x5 zeros, same padding: the very same function
        assert torch.allclose(child_model(x), parent_model(x), atol=1e-6)
    back = transfer_weights(child, child_model.state_dict(), parent, {})  # and 5x5 -> 3x3 crops the centre
    conv = next(k for k in back if k.endswith(".weight") and back[k].shape[-1] == 3)
    assert torch.equal(back[conv], parent_model.state_dict()[conv])


CHAIN = """
network chain {
    input x: [3, 6, 6]
    x -> conv(8, k=3, padding=1) as a -> bn as a_bn -> relu as a_relu -> dwconv(3, padding=1) as dw -> bn as dw_bn
      -> relu as dw_relu -> conv(6, k=1) as b -> bn as b_bn -> relu as b_relu -> maxpool(2) as pool
    output y = flatten as flat -> linear(3) as fc
}
"""


@settings(max_examples=12, deadline=None)
@given(keep_a=st.sets(st.integers(0, 7), min_size=1), keep_b=st.sets(st.integers(0, 5), min_size=1))
def test_any_kept_channels_of_a_narrowed_child_compute_what_the_parent_does_without_them(keep_a, keep_b):
    parent_g = load_network_text(CHAIN, "chain.net")
    keep_a, keep_b = sorted(keep_a), sorted(keep_b)
    plan = channel_plan(parent_g)
    group = {m: grp.id for grp in plan.groups for m in grp.members}
    child_g = lint(apply_widths(parent_g, {group["a"]: len(keep_a), group["b"]: len(keep_b)}, plan))
    parent = randomised(parent_g)
    for bn, keep in {"a_bn": keep_a, "dw_bn": keep_a, "b_bn": keep_b}.items():
        silence(parent, bn, keep)
    child = lower_to_torch(child_g, dtype=torch.float64).eval()
    child.load_state_dict(transfer_weights(parent_g, parent.state_dict(), child_g, {"a": keep_a, "b": keep_b}))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(child(x), parent(x), rtol=1e-10, atol=1e-10)


def test_kernels_fit_per_axis_for_non_square_sizes():
    """A 3x5 kernel fit to 5x3: rows padded with zeros around it, columns cropped to the centre."""
    import numpy as np

    from compiler.rewrite.transfer import _fit_kernel

    w = np.arange(15, dtype=np.float32).reshape(1, 1, 3, 5)
    fit = _fit_kernel(w, [5, 3])
    assert fit.shape == (1, 1, 5, 3)
    assert (fit[0, 0, 1:4] == w[0, 0, :, 1:4]).all() and not fit[0, 0, [0, 4]].any()
    assert _fit_kernel(w, [3, 5]) is w
