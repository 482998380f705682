"""The builder: blocks, repeat, naming, fixed, choices, references, imports, parameters, and the examples'
exact architectures (parameter counts equal torchvision's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler.diagnostics import NetError
from netdsl.loader import load_network, load_network_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def build(text: str, **kw):
    return load_network_text(text, "t.net", **kw)


def ops(g) -> dict[str, str]:
    return {n: d["op"] for n, d in g.nodes(data=True)}


def inputs(g, name: str) -> list[str]:
    return g.nodes[name]["inputs"]


def shape(g, name: str):
    return g.nodes[name]["shape"]


def out_shape(g, output: str):
    return shape(g, g.graph["outputs"][output])


def param_count(g) -> int:
    """Weights, biases and batch-norm affine parameters, as torch's sum(p.numel()) counts them."""
    total = 0
    for _, d in g.nodes(data=True):
        a, op = d["attrs"], d["op"]
        if op not in ("conv", "dwconv", "conv_transpose", "linear", "bn"):
            continue
        cin = g.nodes[d["inputs"][0]]["shape"][0]
        if op == "conv":
            total += a["out"] * (cin // a["groups"]) * a["k"] ** 2 + (a["out"] if a["bias"] else 0)
        elif op == "dwconv":
            out = cin * a["multiplier"]
            total += out * a["k"] ** 2 + (out if a["bias"] else 0)
        elif op == "conv_transpose":
            total += cin * (a["out"] // a["groups"]) * a["k"] ** 2 + (a["out"] if a["bias"] else 0)
        elif op == "linear":
            total += cin * a["out"] + (a["out"] if a["bias"] else 0)
        elif a["affine"]:
            total += 2 * cin
    return total


def macs(g) -> int:
    """Multiply-accumulates of the convolutions and linear layers."""
    total = 0
    for _, d in g.nodes(data=True):
        a, op, s = d["attrs"], d["op"], d["shape"]
        cin = g.nodes[d["inputs"][0]]["shape"][0] if d["inputs"] else 0
        if op == "conv":
            total += s[0] * s[1] * s[2] * (cin // a["groups"]) * a["k"] ** 2
        elif op == "dwconv":
            total += s[0] * s[1] * s[2] * a["k"] ** 2
        elif op == "linear":
            total += cin * a["out"]
    return total


# ---- the examples --------------------------------------------------------------------------------

TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "squeezenet1_1": 1_235_496,
    "shufflenet_v2_x1_0": 2_278_604,
    "lenet5": 61_706,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_example_parameter_counts_match_the_reference(name):
    g = load_network(str(EXAMPLES / f"{name}.net"))
    assert param_count(g) == TORCHVISION_PARAMS[name]
    if name != "lenet5":
        assert shape(g, g.graph["inputs"][0]) == (3, 224, 224)
        assert out_shape(g, "logits") == (1000,)


def test_mobilenet_v1_multiply_adds_match_the_paper():
    g = load_network(str(EXAMPLES / "mobilenet_v1.net"))
    assert round(macs(g) / 1e6) == 569


def test_resnet18_layout_follows_torchvision_names():
    g = load_network(str(EXAMPLES / "resnet18.net"))
    names = set(g.nodes)
    assert {"conv1", "bn1", "maxpool", "layer1.0.conv1", "layer1.1.bn2", "layer2.0.downsample.0",
            "layer2.0.downsample.1", "layer4.1.conv2", "fc"} <= names
    assert "layer1.0.downsample.0" not in names  # identity shortcut in the first stage
    assert shape(g, "maxpool") == (64, 56, 56)
    assert shape(g, "layer2.0.add") == (128, 28, 28)
    assert shape(g, "layer4.1.relu_1") == (512, 7, 7)
    # the shortcut adds the block's input
    assert inputs(g, "layer1.1.add") == ["layer1.1.bn2", "layer1.0.relu_1"]
    assert g.nodes["layer2.0.downsample.0"]["attrs"]["stride"] == 2


def test_mobilenet_v3_squeeze_excite():
    g = load_network(str(EXAMPLES / "mobilenet_v3_small.net"))
    fc1 = [n for n in g.nodes if n.endswith(".fc1")]
    # squeeze channels = divisible(expanded // 4, 8) for expanded 16, 96, 240, 240, 120, 144, 288, 576, 576
    assert [g.nodes[n]["attrs"]["out"] for n in fc1] == [8, 24, 64, 64, 32, 40, 72, 144, 144]
    assert all(g.nodes[n]["attrs"]["bias"] for n in fc1)
    gates = [n for n, op in ops(g).items() if op == "hardsigmoid"]
    assert len(gates) == 9
    bns = [d["attrs"] for _, d in g.nodes(data=True) if d["op"] == "bn"]
    assert all(a["eps"] == 0.001 and a["momentum"] == 0.01 for a in bns)


def test_squeezenet_and_shufflenet_shapes():
    g = load_network(str(EXAMPLES / "squeezenet1_1.net"))
    assert shape(g, "maxpool") == (64, 55, 55)  # ceil_mode
    assert shape(g, "features.12.concat") == (512, 13, 13)
    g = load_network(str(EXAMPLES / "shufflenet_v2_x1_0.net"))
    assert shape(g, "stage2.0.channel_shuffle") == (116, 28, 28)
    assert shape(g, "stage3.7.channel_shuffle") == (232, 14, 14)
    assert sum(op == "channel_shuffle" for op in ops(g).values()) == 16


def test_mobilenet_v2_width_multiplier():
    g = load_network(str(EXAMPLES / "mobilenet_v2.net"), params={"width": 0.5})
    assert g.nodes["features.0.0"]["attrs"]["out"] == 16  # divisible(32 * 0.5)
    assert g.nodes["features.18.0"]["attrs"]["out"] == 1280  # the last conv never shrinks
    assert out_shape(g, "logits") == (1000,)


def test_task_networks():
    g = load_network(str(EXAMPLES / "fashion_cnn.net"))
    assert shape(g, g.graph["inputs"][0]) == (1, 28, 28) and out_shape(g, "logits") == (10,)
    assert 100_000 < param_count(g) < 400_000 and 10e6 < macs(g) < 30e6
    assert not any(d["fixed"] for _, d in g.nodes(data=True))
    assert sum(op == "add" for op in ops(g).values()) == 2
    half = load_network(str(EXAMPLES / "fashion_cnn.net"), params={"width": 0.5})
    assert param_count(half) < param_count(g) / 3

    g = load_network(str(EXAMPLES / "unet_small.net"))
    assert shape(g, "image") == (1, 64, 64) and out_shape(g, "logits") == (11, 64, 64)
    assert sum(op == "concat" for op in ops(g).values()) == 2
    assert g.nodes["head"]["fixed"]

    g = load_network(str(EXAMPLES / "detector_small.net"))
    assert shape(g, "image") == (1, 64, 64)
    assert out_shape(g, "heatmap") == (10, 16, 16) and out_shape(g, "boxes") == (4, 16, 16)
    assert g.graph["decisions"] == {"head_k": [3, 5]}
    assert g.nodes["heatmap_head.conv"]["choices"] == {"k": "head_k"}


# ---- blocks, naming, repeat ----------------------------------------------------------------------

BLOCKS = """
block b(c) { conv(c, 1) -> relu }
block fuse(low, high; out) {
    concat(low, high) -> conv(out, 1)
    relu(add(@conv, low))
}
"""


def test_block_instances_are_scopes_with_deduplicated_names():
    g = build(BLOCKS + "network N { input x: [4, 8, 8] output o = x -> b(4) -> b(4) -> conv(4, 1) -> conv(4, 1) }")
    assert list(g.nodes) == ["x", "b.conv", "b.relu", "b_1.conv", "b_1.relu", "conv", "conv_1"]
    assert inputs(g, "b_1.conv") == ["b.relu"]
    assert g.graph["scopes"] == {"b": "b", "b_1": "b"}


def test_repeat_with_and_without_names():
    g = build(BLOCKS + "network N { input x: [4, 8, 8] output o = x -> repeat(2) b(4) as r -> repeat(3) relu }")
    assert ["r.0.conv", "r.1.conv"] == [n for n in g.nodes if n.endswith("conv")]
    assert [n for n in g.nodes if n.startswith("relu")] == ["relu", "relu_1", "relu_2"]
    assert inputs(g, "r.1.conv") == ["r.0.relu"] and inputs(g, "relu") == ["r.1.relu"]
    g = build("network N(n=2) { input x: [4, 8, 8] output o = x -> repeat(n * 2) conv(4, 1) as c }")
    assert [n for n in g.nodes if n != "x"] == ["c.0", "c.1", "c.2", "c.3"]
    # a repeated step is numbered whatever its count, so names do not depend on a depth parameter
    g = build("network N(n=1) { input x: [4, 8, 8] output o = x -> repeat(n) conv(4, 1) as c }")
    assert [n for n in g.nodes if n != "x"] == ["c.0"]


def test_explicit_names_and_duplicates():
    g = build("network N { input x: [4, 8, 8] output o = x -> conv(4, 1) as stem.conv -> relu as act }")
    assert {"stem.conv", "act"} <= set(g.nodes)
    with pytest.raises(NetError, match="the name 'a' is already used"):
        build("network N { input x: [4, 8, 8] output o = x -> relu as a -> relu as a }")


def test_multi_input_block_and_scope_relative_node_refs():
    g = build(BLOCKS + "network N { input x: [4, 8, 8] input z: [4, 8, 8] output o = fuse(x, z, 4) as f }")
    assert inputs(g, "f.concat") == ["x", "z"]
    assert inputs(g, "f.add") == ["f.conv", "x"]  # @conv inside the block is f.conv
    assert out_shape(g, "o") == (4, 8, 8)
    # in a chain, the flowing tensor is the first input
    g = build(BLOCKS + "network N { input x: [4, 8, 8] input z: [4, 8, 8] output o = x -> relu -> fuse(z, 4) }")
    assert inputs(g, "fuse.concat") == ["relu", "z"]


def test_fixed_applies_to_a_layer_or_everything_in_a_block():
    g = build(BLOCKS + "network N { input x: [4, 8, 8] output o = x -> fixed conv(4, 1) -> fixed b(4) -> relu }")
    fixed = {n for n, d in g.nodes(data=True) if d["fixed"]}
    assert fixed == {"conv", "b.conv", "b.relu"}


def test_block_value_is_its_last_statement_and_chains_continue():
    g = build("""
block twice(c) {
    a = conv(c, 1)           # continues from `in`
    relu                      # continues from a
    let unused = 3            # a let does not change the current value
}
block noop() { }
network N { input x: [2, 4, 4] output o = x -> twice(3) -> noop -> relu }
""")
    assert inputs(g, "twice.conv") == ["x"] and inputs(g, "twice.relu") == ["twice.conv"]
    assert inputs(g, "relu") == ["twice.relu"]  # noop returns its input


def test_network_chain_statements_continue_from_the_previous_value():
    g = build("network N { input x: [2, 4, 4]\n conv(3, 1)\n relu\n y = conv(4, 1)\n output o = add(y, y) }")
    assert inputs(g, "conv") == ["x"] and inputs(g, "relu") == ["conv"] and inputs(g, "conv_1") == ["relu"]
    assert inputs(g, "add") == ["conv_1", "conv_1"]


def test_multi_input_ops_take_the_current_value_when_given_one_tensor():
    g = build("network N { input x: [2, 4, 4]\n y = x -> relu\n z = conv(2, 1)\n output o = add(y) }")
    assert inputs(g, "add") == ["conv", "relu"]
    g = build("network N { input x: [2, 4, 4]\n output o = x -> relu -> concat(x, dim=0) }")
    assert inputs(g, "concat") == ["relu", "x"] and out_shape(g, "o") == (4, 4, 4)


def test_split_unpacks_and_parts():
    g = build("network N { input x: [6, 4, 4]\n a, b, c = x -> split(3) as s\n output o = concat(c, a, b) }")
    assert [g.nodes[f"s.{i}"]["attrs"] for i in range(3)] == [{"sections": 3, "part": i} for i in range(3)]
    assert inputs(g, "concat") == ["s.2", "s.0", "s.1"]
    g = build("network N { input x: [6, 4, 4]\n output o = x -> split([2, 4], part=1) }")
    assert out_shape(g, "o") == (4, 4, 4)
    with pytest.raises(NetError, match="needs its parameter .part."):
        build("network N { input x: [6, 4, 4]\n output o = x -> split(2) }")
    with pytest.raises(NetError, match="this split gives 2 parts but 3 names receive them"):
        build("network N { input x: [6, 4, 4]\n a, b, c = x -> split(2)\n output o = concat(a, b, c) }")


def test_tensor_variables_can_be_rebound_constants_cannot():
    g = build("network N { input x: [2, 4, 4]\n y = x -> relu\n y = y -> relu\n output o = y }")
    assert inputs(g, "relu_1") == ["relu"]
    with pytest.raises(NetError, match="'c' is already defined"):
        build("network N { input x: [2, 4, 4]\n let c = 1\n let c = 2\n output o = x -> relu }")


def test_node_references_by_full_name_and_dotted_paths():
    g = build(BLOCKS + "network N { input x: [4, 8, 8]\n x -> b(4) -> b(4)\n output o = add(@b.relu, b_1.relu) }")
    assert inputs(g, "add") == ["b.relu", "b_1.relu"]


# ---- expressions, parameters, choices ------------------------------------------------------------

def test_expressions_and_functions():
    g = build("""
network N(w=0.75) {
    input x: [3, 8, 8]
    let a = int(64 * w) + 10 // 3 - 7 % 4      # 48 + 3 - 3
    let b = divisible(24 * w)                   # 16 would be below 90% of 18: 24
    let c = max(ceil(2.2), floor(2.8), round(1.6), min(9, 4)) * 2
    let d = divisible(3, 8)                     # never below the divisor
    output o = x -> conv(a, 1) -> conv(b, 1) -> conv(c, 1) -> conv(d, 1) -> conv(int(float(2)), 1)
}
""")
    outs = [g.nodes[n]["attrs"]["out"] for n in ("conv", "conv_1", "conv_2", "conv_3", "conv_4")]
    assert outs == [48, 24, 8, 8, 2]


def test_integral_floats_are_accepted_where_integers_are_wanted():
    g = build("network N { input x: [3, 8, 8]\n output o = x -> conv(64 / 2, k=3.0) }")
    a = g.nodes["conv"]["attrs"]
    assert a["out"] == 32 and isinstance(a["out"], int) and a["k"] == 3 and isinstance(a["k"], int)


def test_defaults_are_pytorchs():
    g = build("network N { input x: [3, 8, 8]\n output o = x -> conv(4, 3) -> bn -> maxpool(2) -> dropout -> upsample(2) }")
    assert g.nodes["conv"]["attrs"] == {"out": 4, "k": 3, "stride": 1, "padding": 0, "dilation": 1, "groups": 1,
                                       "bias": True}
    assert g.nodes["bn"]["attrs"] == {"eps": 1e-5, "momentum": 0.1, "affine": True}
    assert g.nodes["maxpool"]["attrs"]["stride"] is None and shape(g, "maxpool") == (4, 3, 3)
    assert g.nodes["dropout"]["attrs"] == {"p": 0.5}
    assert g.nodes["upsample"]["attrs"] == {"scale": 2, "size": None, "mode": "nearest", "align_corners": None}


def test_network_parameters_and_overrides():
    text = "network N(c=4, k=3) { input x: [3, 8, 8]\n output o = x -> conv(c, k=k) }"
    assert build(text).nodes["conv"]["attrs"]["out"] == 4
    g = build(text, params={"c": 7})
    assert g.nodes["conv"]["attrs"]["out"] == 7 and shape(g, "conv") == (7, 6, 6)
    with pytest.raises(NetError, match="has no parameter 'cc'") as info:
        build(text, params={"cc": 7})
    assert "did you mean 'c'?" in info.value.render()
    with pytest.raises(NetError, match="network parameter 'c' has no default"):
        build("network N(c) { input x: [3, 8, 8]\n output o = x -> conv(c, 1) }")


def test_block_defaults_may_use_earlier_parameters():
    g = build("block b(c, s=c // 2) { conv(s, 1) }\nnetwork N { input x: [3, 8, 8]\n output o = x -> b(8) -> b(8, s=3) }")
    assert g.nodes["b.conv"]["attrs"]["out"] == 4 and g.nodes["b_1.conv"]["attrs"]["out"] == 3


def test_choices_record_decisions_with_the_first_option_as_the_prototype():
    g = build("""
block b(c) { conv(c, k=choice(3, 5), padding="same") }
network N {
    input x: [3, 8, 8]
    let w = choice(16, 8, 32, id="width")
    output o = x -> conv(w, 1) -> b(4) -> b(4) -> conv(w, 1)
}
""")
    assert g.graph["decisions"] == {"width": [16, 8, 32], "b.conv.k": [3, 5], "b_1.conv.k": [3, 5]}
    assert g.nodes["conv"]["attrs"]["out"] == 16 and g.nodes["conv"]["choices"] == {"out": "width"}
    assert g.nodes["conv_1"]["choices"] == {"out": "width"}  # one decision, two layers
    assert g.nodes["b.conv"]["attrs"]["k"] == 3 and g.nodes["b.conv"]["choices"] == {"k": "b.conv.k"}
    with pytest.raises(NetError, match="is used with different options"):
        build("network N { input x: [3, 8, 8]\n output o = x -> conv(choice(4, 8, id=\"w\"), 1)"
              " -> conv(choice(4, 16, id=\"w\"), 1) }")
    with pytest.raises(NetError, match="'conv' parameter 'k' must be a positive integer"):
        build("network N { input x: [3, 8, 8]\n output o = x -> conv(4, k=choice(3, 0)) }")


# ---- imports -------------------------------------------------------------------------------------

def test_imports_from_files_and_the_standard_library(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.net").write_text(
        'from std import conv_bn_relu\nimport "more.net"\n'
        "block stem(c) { conv_bn_relu(c, stride=2) -> helper }\n"
        "network Ignored { input x: [1, 2, 2] output o = x -> relu }\n")
    (tmp_path / "lib" / "more.net").write_text("block helper() { relu }\n")
    main = tmp_path / "main.net"
    main.write_text('from "lib/blocks.net" import stem\nfrom std import basic\n'
                    "network N { input x: [3, 32, 32]\n output o = x -> stem(16) -> basic(16) }\n")
    g = load_network(str(main))
    assert g.graph["name"] == "N"
    assert {"stem.conv_bn_relu.conv", "stem.helper.relu", "basic.conv1"} <= set(g.nodes)
    assert out_shape(g, "o") == (16, 16, 16)
    # blocks imported by an imported file are not visible to the importer
    main.write_text('from "lib/blocks.net" import stem\nnetwork N { input x: [3, 8, 8]\n output o = x -> helper }\n')
    with pytest.raises(NetError, match="unknown op or block 'helper'"):
        load_network(str(main))


def test_import_all_and_named_module():
    g = build("import std\nnetwork N { input x: [3, 32, 32]\n output o = x -> dwsep(8) -> fire(2, 4, 4) }")
    assert out_shape(g, "o") == (8, 32, 32)


def test_choose_a_network_in_a_file():
    text = ("network A { input x: [1, 4, 4]\n output o = x -> relu }\n"
            "network B { input x: [1, 4, 4]\n output o = x -> sigmoid }\n")
    assert build(text).graph["name"] == "B"
    assert build(text, network="A").graph["name"] == "A"
    with pytest.raises(NetError, match="has no network 'C'"):
        build(text, network="C")
