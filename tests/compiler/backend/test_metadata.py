"""Model metadata: the string map every format stores, weights files, the source hash, the normalising forward."""

from __future__ import annotations

import pytest
import torch

from compiler.backend.lower import lower_to_torch
from compiler.backend.metadata import PREFIX, ModelMetadata, source_hash
from compiler.backend.weights import read_metadata, save_weights
from compiler.diagnostics import NetError
from netdsl.loader import load_network, load_network_text
from tests.compiler.backend.lowering_nets import EXAMPLES

META = ModelMetadata(network="Net", input_shape=(3, 8, 8), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125),
                     task="classify", class_names=("cat", "dog"), data="npz:x.npz", source_hash="0123456789abcdef")
TWO_INPUTS = """
network Two {
    input a: [1, 8, 8]
    input b: [1, 8, 8]
    output y = add(a -> conv(2, k=1), b -> conv(2, k=1)) -> gap
}
"""


def test_the_string_map_round_trips_and_refuses_damage():
    strings = META.to_strings()
    assert all(k.startswith(PREFIX) and isinstance(v, str) for k, v in strings.items())
    assert ModelMetadata.from_strings(strings, "x") == META
    assert ModelMetadata.from_strings({"format": "pt"}, "x") is None
    with pytest.raises(NetError, match="x: its netdsl metadata is damaged"):
        ModelMetadata.from_strings({**strings, "netdsl.mean": "[0.1, oops"}, "x")
    with pytest.raises(NetError, match="damaged"):
        ModelMetadata.from_strings({**strings, "netdsl.std": "[0.5, 0, 1]"}, "x")
    assert "RGB" in META.input_text() and "mean [0.1, 0.2, 0.3]" in META.input_text()


def test_weights_files_carry_metadata_and_state_dicts_none(tmp_path):
    module = torch.nn.Linear(2, 2)
    save_weights(module, tmp_path / "w.safetensors", META)
    assert read_metadata(tmp_path / "w.safetensors") == META
    save_weights(module, tmp_path / "bare.safetensors")
    assert read_metadata(tmp_path / "bare.safetensors") is None
    torch.save(module.state_dict(), tmp_path / "w.pt")
    assert read_metadata(tmp_path / "w.pt") is None


def test_the_source_hash_ignores_the_name_and_sees_every_layer():
    g = load_network(next(p for p in EXAMPLES if p.stem == "fashion_cnn"))
    renamed = g.copy()
    renamed.graph["name"] = "Fermi1"
    assert source_hash(renamed) == source_hash(g)
    narrower = load_network(next(p for p in EXAMPLES if p.stem == "fashion_cnn"), params={"width": 0.5})
    assert source_hash(narrower) != source_hash(g)


def test_a_normalising_forward_keeps_the_state_dict_and_computes_x_minus_mean_over_std():
    g = load_network(next(p for p in EXAMPLES if p.stem == "fashion_cnn"))
    torch.manual_seed(0)
    inside = lower_to_torch(g, normalization=((0.3,), (0.4,))).eval()
    plain = lower_to_torch(g).eval()
    plain.load_state_dict(inside.state_dict(), strict=True)  # the buffers are not in the state dict
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(inside(x), plain((x - 0.3) / 0.4))
    with pytest.raises(NetError, match="has 2 inputs"):
        lower_to_torch(load_network_text(TWO_INPUTS, "two.net"), normalization=((0.0,), (1.0,)))
