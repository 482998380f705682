"""Widening: free groups grow past the prototype's widths, and the prototype's weights inside compute what it did."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.backend.lower import lower_to_torch
from compiler.rewrite.coupling import channel_plan
from compiler.rewrite.transfer import transfer_weights
from compiler.rewrite.widening import block_positions, embed_weights, widen, widenable_groups
from netdsl.loader import load_network, load_network_text
from tests.compiler.rewrite.test_transfer import BRANCHY, RESIDUAL, SHUFFLED, randomised

CHOSEN = """
network Chosen {
    input x: [1, 8, 8]
    a = x -> conv(choice(8, 4), k=3, padding=1) as picked -> relu as r1
    b = a -> conv(6, k=3, padding=1) as free -> relu as r2
    output y = b -> fixed conv(5, k=1) as head -> gap as pool
}
"""


def embedded(g, factor: float, seed: int = 1):
    """(widened, the prototype's random float64 module, the widened module holding its weights)."""
    proto = randomised(g)
    w = widen(g, factor)
    torch.manual_seed(seed)
    init = lower_to_torch(w.graph, dtype=torch.float64).state_dict()
    state = embed_weights(g, proto.state_dict(), w, init)
    wide = lower_to_torch(w.graph, dtype=torch.float64).eval()
    wide.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return w, proto, wide


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape: tuple) -> None:
    x = torch.randn(3, *shape, dtype=torch.float64)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    for u, v in zip(ya if isinstance(ya, tuple) else (ya,), yb if isinstance(yb, tuple) else (yb,)):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9)


def test_fashion_cnn_at_twice_its_widths_computes_the_prototype():
    g = load_network("examples/fashion_cnn.net")
    w, proto, wide = embedded(g, 2.0)
    assert sorted(w.widths.values()) == [64, 128, 256]  # three stages; the classifier's 10 outputs are fixed
    assert w.graph.nodes["conv"]["shape"] == (64, 28, 28) and w.graph.nodes["linear"]["shape"] == (10,)
    same_outputs(proto, wide, (1, 28, 28))
    # a new channel of the stem has its own filter; the next conv's old filters ignore it
    sd = wide.state_dict()
    assert sd["conv.weight"][32:].abs().sum() > 0
    assert sd["conv_2.weight"][:64, 32:].abs().sum() == 0 and sd["conv_2.weight"][64:, 32:].abs().sum() > 0


@pytest.mark.parametrize("text", [BRANCHY, SHUFFLED, RESIDUAL], ids=["branchy", "shuffled", "residual"])
def test_concat_split_shuffle_grouped_and_residual_networks_keep_their_function(text):
    g = load_network_text(text, "net.net")
    w, proto, wide = embedded(g, 1.5)
    assert w.widths
    same_outputs(proto, wide, tuple(g.nodes[g.graph["inputs"][0]]["shape"]))


def test_narrowing_the_widened_network_back_gives_the_prototype_and_its_weights():
    g = load_network_text(BRANCHY, "branchy.net")
    w, proto, wide = embedded(g, 2.0)
    back = transfer_weights(w.graph, wide.state_dict(), g, w.kept)
    for key, value in proto.state_dict().items():
        torch.testing.assert_close(back[key], value, rtol=0, atol=0)


def test_declared_choices_and_fixed_groups_are_not_widened():
    g = load_network_text(CHOSEN, "chosen.net")
    assert [grp.writers for grp in widenable_groups(g)] == [("free",)]
    w = widen(g, 2.0)
    assert w.graph.nodes["free"]["shape"][0] == 12
    assert w.graph.nodes["picked"]["shape"][0] == 8 and w.graph.nodes["head"]["shape"][0] == 5
    assert widen(g, 1.0).graph is g and widen(g, 1.0).kept == {}
    with pytest.raises(ValueError):
        widen(g, 0.5)


def test_block_positions_keep_each_old_channel_in_its_block():
    assert block_positions(4, 8, 1) == [0, 1, 2, 3]
    assert block_positions(8, 12, 4) == [0, 1, 3, 4, 6, 7, 9, 10]


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 6), min_size=1, max_size=4), factor=st.floats(1.0, 3.0),
       residual=st.booleans(), seed=st.integers(0, 2**16))
def test_any_chain_widened_by_any_factor_computes_the_prototype(widths, factor, residual, seed):
    lines, prev = [], "x"
    for i, c in enumerate(widths):
        lines.append(f"    h{i} = {prev} -> conv({c}, k=3, padding=1, bias={'true' if i % 2 else 'false'}) as c{i} "
                     f"-> bn as b{i} -> relu as r{i}")
        prev = f"h{i}"
    if residual:
        lines.append(f"    res = add({prev}, {prev} -> conv({widths[-1]}, k=1) as rc -> bn as rb) as join")
        prev = "res"
    text = "network Chain {\n    input x: [2, 6, 6]\n" + "\n".join(lines) + \
        f"\n    output y = {prev} -> maxpool(2) as pool -> flatten as flat -> linear(3) as fc\n}}\n"
    g = load_network_text(text, "chain.net")
    w, proto, wide = embedded(g, factor, seed)
    plan = channel_plan(g)
    for gid, width in w.widths.items():  # every widened group grew to at least factor x, and nothing else changed
        assert width >= factor * plan.groups[gid].channels - 1e-6 and width > plan.groups[gid].channels
    assert w.graph.nodes["fc"]["shape"] == g.nodes["fc"]["shape"]
    same_outputs(proto, wide, (2, 6, 6))
    state = wide.state_dict()
    for name, positions in w.kept.items():  # new filters keep their initialisation
        new = [c for c in range(w.graph.nodes[name]["shape"][0]) if c not in positions]
        if new and f"{name}.weight" in state:
            assert np.abs(state[f"{name}.weight"][new].numpy()).sum() > 0
