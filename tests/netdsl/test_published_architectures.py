"""Issue 23's claim, checked: seven published architectures written compactly in .net with per-stage tables
(file-level `let`, indexing, log/pow, `network.NAME`, `repeat(0)` for stages of one block) count exactly the
parameters torchvision's models have, and the multiply-accumulates torchvision publishes (GFLOPS in its model
documentation, which counts one multiply-add as one operation, to three decimals)."""

from __future__ import annotations

import pytest

from compiler.cost import network_cost
from compiler.ir import structure
from compiler.printer import print_network
from netdsl.loader import load_network_text

RESNET34 = """
from std import basic, basic_down

let widths = [64, 128, 256, 512]
let depths = [3, 4, 6, 3]

# a stage: the first block projects the shortcut and strides, the rest keep it
block stage(i) {
    basic_down(widths[i]) as first -> repeat(depths[i] - 1) basic(widths[i]) as rest
}

network ResNet34(classes=1000) {
    input image: [3, 224, 224]
    image -> conv(64, k=7, stride=2, padding=3, bias=false) as conv1 -> bn as bn1 -> relu
        -> maxpool(3, stride=2, padding=1)
    repeat(depths[0]) basic(64) as layer1
    stage(1) as layer2
    stage(2) as layer3
    stage(3) as layer4
    output logits = gap -> linear(classes) as fc
}
"""

DENSENET121 = """
let blocks = [6, 12, 24, 16]
let growth = 32
# channels entering each dense block: the stem's 64, then half of what the block before ended with
let c1 = (64 + blocks[0] * growth) // 2
let c2 = (c1 + blocks[1] * growth) // 2
let c3 = (c2 + blocks[2] * growth) // 2

# a dense layer appends `growth` new channels to everything before it
block dense_layer(growth, bn_size=4) {
    concat(in, in -> bn as norm1 -> relu -> conv(bn_size * growth, k=1, bias=false) as conv1
        -> bn as norm2 -> relu -> conv(growth, k=3, padding=1, bias=false) as conv2)
}

block transition(out) {
    bn as norm -> relu -> conv(out, k=1, bias=false) as conv -> avgpool(2) as pool
}

network DenseNet121(classes=1000) {
    input image: [3, 224, 224]
    image -> conv(64, k=7, stride=2, padding=3, bias=false) as conv0 -> bn as norm0 -> relu
        -> maxpool(3, stride=2, padding=1) as pool0
    repeat(blocks[0]) dense_layer(growth) as denseblock1 -> transition(c1) as transition1
    repeat(blocks[1]) dense_layer(growth) as denseblock2 -> transition(c2) as transition2
    repeat(blocks[2]) dense_layer(growth) as denseblock3 -> transition(c3) as transition3
    repeat(blocks[3]) dense_layer(growth) as denseblock4 -> bn as norm5 -> relu
    output logits = gap -> linear(classes) as classifier
}
"""

GOOGLENET = """
block conv_block(out, k=1, stride=1, padding=0) {
    conv(out, k=k, stride=stride, padding=padding, bias=false) as conv -> bn(eps=0.001) as bn -> relu
}

# torchvision's Inception: its "5x5" branch is a 3x3 conv (kept for its weights)
let table = [[64, 96, 128, 16, 32, 32], [128, 128, 192, 32, 96, 64],
             [192, 96, 208, 16, 48, 64], [160, 112, 224, 24, 64, 64], [128, 128, 256, 24, 64, 64],
             [112, 144, 288, 32, 64, 64], [256, 160, 320, 32, 128, 128],
             [256, 160, 320, 32, 128, 128], [384, 192, 384, 48, 128, 128]]

block inception(i) {
    let t = table[i]
    concat(in -> conv_block(t[0]) as branch1,
           in -> conv_block(t[1]) as branch2.0 -> conv_block(t[2], k=3, padding=1) as branch2.1,
           in -> conv_block(t[3]) as branch3.0 -> conv_block(t[4], k=3, padding=1) as branch3.1,
           in -> maxpool(3, stride=1, padding=1, ceil_mode=true) -> conv_block(t[5]) as branch4.1)
}

network GoogLeNet(classes=1000) {
    input image: [3, 224, 224]
    image -> conv_block(64, k=7, stride=2, padding=3) as conv1 -> maxpool(3, stride=2, ceil_mode=true)
        -> conv_block(64) as conv2 -> conv_block(192, k=3, padding=1) as conv3 -> maxpool(3, stride=2, ceil_mode=true)
    inception(0) as inception3a -> inception(1) as inception3b -> maxpool(3, stride=2, ceil_mode=true)
    inception(2) as inception4a -> inception(3) as inception4b -> inception(4) as inception4c
        -> inception(5) as inception4d -> inception(6) as inception4e -> maxpool(2, stride=2, ceil_mode=true)
    inception(7) as inception5a -> inception(8) as inception5b
    output logits = gap -> dropout(0.2) -> linear(classes) as fc
}
"""

MOBILENET_V3_LARGE = """
from std import se_block, bneck, bneck_res, bneck_hs_se, bneck_hs_se_res

# the first row expands 16 to 16 channels, so it has no expansion conv; with the skip
block bneck_dw_res(out) {
    add(in, in -> dwconv(3, padding=1, bias=false) -> bn(eps=0.001, momentum=0.01) -> relu
        -> conv(out, k=1, bias=false) -> bn(eps=0.001, momentum=0.01))
}

# ReLU with squeeze-excite, and hardswish without it: the rows the library has no block for
block bneck_se(out, expand, k=3, stride=1) {
    conv(expand, k=1, bias=false) -> bn(eps=0.001, momentum=0.01) -> relu
        -> dwconv(k, stride=stride, padding=(k - 1) // 2, bias=false) -> bn(eps=0.001, momentum=0.01) -> relu
        -> se_block(expand) as se -> conv(out, k=1, bias=false) -> bn(eps=0.001, momentum=0.01)
}
block bneck_se_res(out, expand, k=3) { add(in, in -> bneck_se(out, expand, k=k) as body) }

block bneck_hs(out, expand, k=3, stride=1) {
    conv(expand, k=1, bias=false) -> bn(eps=0.001, momentum=0.01) -> hardswish
        -> dwconv(k, stride=stride, padding=(k - 1) // 2, bias=false) -> bn(eps=0.001, momentum=0.01) -> hardswish
        -> conv(out, k=1, bias=false) -> bn(eps=0.001, momentum=0.01)
}
block bneck_hs_res(out, expand, k=3) { add(in, in -> bneck_hs(out, expand, k=k) as body) }

network MobileNetV3Large(classes=1000) {
    input image: [3, 224, 224]
    image -> conv(16, k=3, stride=2, padding=1, bias=false) -> bn(eps=0.001, momentum=0.01) -> hardswish
    bneck_dw_res(16)
    bneck(24, 64, stride=2) -> bneck_res(24, 72)
    bneck_se(40, 72, k=5, stride=2) -> repeat(2) bneck_se_res(40, 120, k=5)
    bneck_hs(80, 240, stride=2) -> bneck_hs_res(80, 200) -> repeat(2) bneck_hs_res(80, 184)
    bneck_hs_se(112, 480) -> bneck_hs_se_res(112, 672)
    bneck_hs_se(160, 672, k=5, stride=2) -> repeat(2) bneck_hs_se_res(160, 960, k=5)
    conv(960, k=1, bias=false) -> bn(eps=0.001, momentum=0.01) -> hardswish
    output logits = gap -> linear(1280) -> hardswish -> dropout(0.2) -> linear(classes)
}
"""

MNASNET = """
# torchvision's mnasnet1_0: stacks of inverted residuals with ReLU (alpha scales the widths)
let widths = [16, 24, 40, 80, 96, 192, 320]
let kernels = [3, 5, 5, 3, 5, 3]
let strides = [2, 2, 2, 1, 2, 1]
let ratios = [3, 3, 6, 6, 6, 6]
let repeats = [3, 3, 3, 2, 4, 1]

block mb(out, expand, k=3, stride=1) {
    conv(expand, k=1, bias=false) -> bn(momentum=0.0003) -> relu
        -> dwconv(k, stride=stride, padding=k // 2, bias=false) -> bn(momentum=0.0003) -> relu
        -> conv(out, k=1, bias=false) -> bn(momentum=0.0003)
}
block mb_res(out, expand, k=3) { add(in, in -> mb(out, expand, k=k) as layers) }

block stack(i) {
    let c_in = divisible(widths[i] * network.alpha)
    let c = divisible(widths[i + 1] * network.alpha)
    mb(c, c_in * ratios[i], k=kernels[i], stride=strides[i]) as first
        -> repeat(repeats[i] - 1) mb_res(c, c * ratios[i], k=kernels[i]) as rest
}

network MNASNet(alpha=1.0, classes=1000) {
    input image: [3, 224, 224]
    let c0 = divisible(32 * alpha)
    image -> conv(c0, k=3, stride=2, padding=1, bias=false) -> bn(momentum=0.0003) -> relu
        -> dwconv(3, padding=1, bias=false) -> bn(momentum=0.0003) -> relu
        -> conv(divisible(16 * alpha), k=1, bias=false) -> bn(momentum=0.0003)
    stack(0) -> stack(1) -> stack(2) -> stack(3) -> stack(4) -> stack(5)
    conv(1280, k=1, bias=false) -> bn(momentum=0.0003) -> relu
    output logits = gap -> dropout(0.2) -> linear(classes)
}
"""

EFFICIENTNET_B0 = """
# torchvision's efficientnet_b0: MBConv stages (expand ratio, kernel, stride, channels in, out, layers)
let ratios = [1, 6, 6, 6, 6, 6, 6]
let kernels = [3, 3, 5, 3, 5, 5, 3]
let strides = [1, 2, 2, 2, 1, 2, 1]
let channels = [32, 16, 24, 40, 80, 112, 192, 320]
let layers = [1, 2, 2, 3, 3, 4, 1]

block se(channels, squeeze) {
    scale = adaptive_avgpool(1) -> conv(squeeze, k=1) as fc1 -> silu -> conv(channels, k=1) as fc2 -> sigmoid
    mul(in, scale)
}

# the body after the expansion: depthwise, squeeze-excite on the expanded channels, linear projection
block mb_body(out, expand, squeeze, k, stride) {
    dwconv(k, stride=stride, padding=(k - 1) // 2, bias=false) -> bn -> silu
        -> se(expand, squeeze) as se -> conv(out, k=1, bias=false) -> bn
}
block mbconv(out, expand, squeeze, k, stride) {
    conv(expand, k=1, bias=false) -> bn -> silu -> mb_body(out, expand, squeeze, k, stride) as body
}
block mbconv_res(out, expand, squeeze, k) { add(in, in -> mbconv(out, expand, squeeze, k, 1) as body) }

block stage(i) {
    let c_in = divisible(channels[i] * network.width)
    let c = divisible(channels[i + 1] * network.width)
    mbconv(c, c_in * ratios[i], max(1, c_in // 4), kernels[i], strides[i]) as first
        -> repeat(ceil(layers[i] * network.depth) - 1) mbconv_res(c, c * ratios[i], max(1, c // 4), kernels[i]) as rest
}

network EfficientNetB0(width=1.0, depth=1.0, classes=1000) {
    input image: [3, 224, 224]
    let c0 = divisible(channels[0] * width)
    image -> conv(c0, k=3, stride=2, padding=1, bias=false) -> bn -> silu
    # stage 0 expands by 1: no expansion conv, and 32 -> 16 channels, no skip
    mb_body(divisible(channels[1] * width), c0, max(1, c0 // 4), kernels[0], strides[0]) as stage0
    stage(1) -> stage(2) -> stage(3) -> stage(4) -> stage(5) -> stage(6)
    conv(4 * divisible(channels[7] * width), k=1, bias=false) -> bn -> silu
    output logits = gap -> dropout(0.2) -> linear(classes)
}
"""

REGNET_X_400MF = """
# torchvision's regnet_x_400mf: 22 blocks whose widths follow w0 + wa * j, quantised on a log scale of base wm
# to multiples of 8, then to the group width 16; the stages are the runs of equal width.
let w0 = 24
let wa = 24.48
let wm = 2.54
let starts = [0, 1, 3, 10]          # each stage's first block j
let depths = [1, 2, 7, 12]

block xblock(out, groups, stride=1) {
    y = conv(out, k=1, bias=false) -> bn -> relu
        -> conv(out, k=3, stride=stride, padding=1, groups=groups, bias=false) -> bn -> relu
        -> conv(out, k=1, bias=false) -> bn
    p = in -> conv(out, k=1, stride=stride, bias=false) as proj -> bn
    relu(add(p, y))
}
block xblock_res(out, groups) {
    conv(out, k=1, bias=false) -> bn -> relu
        -> conv(out, k=3, padding=1, groups=groups, bias=false) -> bn -> relu
        -> conv(out, k=1, bias=false) -> bn
    relu(add(in))
}

block stage(i) {
    let w = divisible(round(w0 * pow(wm, round(log((w0 + wa * starts[i]) / w0) / log(wm))) / 8) * 8, 16)
    xblock(w, w // 16, stride=2) as first -> repeat(depths[i] - 1) xblock_res(w, w // 16) as rest
}

network RegNetX400MF(classes=1000) {
    input image: [3, 224, 224]
    image -> conv(32, k=3, stride=2, padding=1, bias=false) -> bn -> relu
    stage(0) as s1 -> stage(1) as s2 -> stage(2) as s3 -> stage(3) as s4
    output logits = gap -> linear(classes) as fc
}
"""

# name, text, torchvision's parameter count, torchvision's published GFLOPS (multiply-adds, 3 decimals)
PUBLISHED = [
    ("resnet34", RESNET34, 21_797_672, 3.664),
    ("densenet121", DENSENET121, 7_978_856, 2.834),
    ("googlenet", GOOGLENET, 6_624_904, 1.498),
    ("mobilenet_v3_large", MOBILENET_V3_LARGE, 5_483_032, 0.217),
    ("mnasnet1_0", MNASNET, 4_383_312, 0.314),
    ("efficientnet_b0", EFFICIENTNET_B0, 5_288_548, 0.386),
    ("regnet_x_400mf", REGNET_X_400MF, 5_495_976, 0.414),
]


@pytest.mark.parametrize("name, text, params, gmacs", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_counts(name, text, params, gmacs):
    g = load_network_text(text, f"{name}.net")
    totals = network_cost(g).totals()
    assert totals["params"] == params
    assert round(totals["macs"] / 1e9, 3) == gmacs
    assert g.nodes[g.graph["outputs"]["logits"]]["shape"] == (1000,)
    again = load_network_text(print_network(g), "printed.net")  # and the canonical printer round-trips them
    assert structure(again) == structure(g)


def test_stage_tables_follow_the_networks_parameters():
    """The tables scale with the network's parameters: a narrower MNASNet and a deeper EfficientNet."""
    narrow = network_cost(load_network_text(MNASNET, "m.net", params={"alpha": 0.5})).totals()
    assert narrow["params"] == 2_218_512  # torchvision's mnasnet0_5
    deeper = load_network_text(EFFICIENTNET_B0, "e.net", params={"depth": 1.1})
    assert sum(1 for s, b in deeper.graph["scopes"].items() if b == "mbconv_res") == 16 - 7 + sum(
        -(-n * 11 // 10) - n for n in [2, 2, 3, 3, 4, 1])
