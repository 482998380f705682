"""network_diff: layers matched by name, changed/removed/added, totals equal the cost model's, blocks sum to them."""

from __future__ import annotations

from compiler.cost import network_cost
from compiler.cost.diff import network_diff
from compiler.rewrite.factorize import factorize_convs
from compiler.shapes import infer_shapes
from netdsl.loader import load_network, load_network_text
from tests.compiler.backend.lowering_nets import EXAMPLES

FASHION = next(p for p in EXAMPLES if p.stem == "fashion_cnn")
SMALLER = """
network FashionCNN(classes=10) {
    input image: [1, 28, 28]
    x = image -> conv(16, k=3, padding=1, bias=false) -> bn -> relu
    maxpool(2)
    x = conv(64, k=3, stride=2, padding=1, bias=false) -> bn -> relu
    conv(128, k=1, bias=false) -> bn -> relu
    output logits = gap -> dropout(0.3) -> linear(classes)
}
"""


def check_totals(a, b, d) -> None:
    ca, cb = network_cost(a), network_cost(b)
    assert d.macs == (ca.macs, cb.macs) and d.params == (ca.params, cb.params)
    assert sum(blk.macs[0] for blk in d.blocks) == ca.macs and sum(blk.macs[1] for blk in d.blocks) == cb.macs
    assert sum(blk.params[0] for blk in d.blocks) == ca.params and sum(blk.params[1] for blk in d.blocks) == cb.params


def test_changed_and_removed_layers_of_a_flat_network_by_stage():
    a, b = load_network(FASHION), load_network_text(SMALLER, "small.net")
    d = network_diff(a, b)
    by = {x.name: x for x in d.layers}
    assert by["conv"].status == "changed" and (by["conv"].a.channels, by["conv"].b.channels) == (32, 16)
    assert (by["conv_1"].a.stride, by["conv_1"].b.stride) == (1, 2)
    assert (by["conv_2"].a.kernel, by["conv_2"].b.kernel) == (3, 1)
    assert by["conv_3"].status == by["conv_4"].status == "removed"
    assert by["linear"].status == "same"
    assert [blk.name for blk in d.blocks] == ["28x28", "14x14", "7x7", "head"]
    assert next(blk for blk in d.blocks if blk.name == "7x7").removed
    assert by["conv_1"].cells()[4] == "1→2" and by["conv_3"].cells()[-1] == "removed"
    check_totals(a, b, d)
    assert network_diff(a, a).changed() == []


def test_a_factorized_conv_shows_its_new_depthwise_layer_before_it_in_the_same_block():
    a = load_network(next(p for p in EXAMPLES if p.stem == "resnet18"))
    b = infer_shapes(factorize_convs(a, ["layer2.1.conv1"]))
    d = network_diff(a, b)
    names = [x.name for x in d.layers]
    i = names.index("layer2.1.conv1")
    assert names[i - 1] == "layer2.1.conv1_dw" and d.layers[i - 1].status == "added"
    assert d.layers[i - 1].block == "layer2" and (d.layers[i].a.kernel, d.layers[i].b.kernel) == (3, 1)
    assert [x.name for x in d.changed()] == ["layer2.1.conv1_dw", "layer2.1.conv1"]
    check_totals(a, b, d)
