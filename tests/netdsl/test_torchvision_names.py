"""The examples that reproduce torchvision models lower to torchvision's state-dict keys, in torchvision's order, so
a torchvision checkpoint loads by name (`load_state_dict(strict=True)`). The key lists are written out here from
torchvision's module trees (torchvision itself cannot be imported in these tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler.backend.lower import lower_to_torch
from netdsl.loader import load_network

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def conv(p: str, bias: bool = False) -> list[str]:
    return [f"{p}.weight"] + ([f"{p}.bias"] if bias else [])


def bn(p: str) -> list[str]:
    return [f"{p}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def linear(p: str) -> list[str]:
    return [f"{p}.weight", f"{p}.bias"]


def conv_bn(p: str) -> list[str]:
    """torchvision's Conv2dNormActivation: 0 conv, 1 bn (2 the activation)."""
    return conv(f"{p}.0") + bn(f"{p}.1")


def resnet(depths: list[int], bottleneck: bool) -> list[str]:
    keys = conv("conv1") + bn("bn1")
    for i, n in enumerate(depths):
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            for c in range(1, 4 if bottleneck else 3):
                keys += conv(f"{p}.conv{c}") + bn(f"{p}.bn{c}")
            if j == 0 and (i > 0 or bottleneck):
                keys += conv(f"{p}.downsample.0") + bn(f"{p}.downsample.1")
    return keys + linear("fc")


def vgg16() -> list[str]:
    keys = []
    for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28):
        keys += conv(f"features.{i}", bias=True)
    for i in (0, 3, 6):
        keys += linear(f"classifier.{i}")
    return keys


def squeezenet1_1() -> list[str]:
    keys = conv("features.0", bias=True)
    for i in (3, 4, 6, 7, 9, 10, 11, 12):
        for part in ("squeeze", "expand1x1", "expand3x3"):
            keys += conv(f"features.{i}.{part}", bias=True)
    return keys + conv("classifier.1", bias=True)


def mobilenet_v2() -> list[str]:
    keys = conv_bn("features.0")
    for i in range(1, 18):
        p = f"features.{i}.conv"
        if i == 1:  # expand ratio 1: depthwise ConvBNReLU, projection conv, bn
            keys += conv_bn(f"{p}.0") + conv(f"{p}.1") + bn(f"{p}.2")
        else:
            keys += conv_bn(f"{p}.0") + conv_bn(f"{p}.1") + conv(f"{p}.2") + bn(f"{p}.3")
    return keys + conv_bn("features.18") + linear("classifier.1")


def mobilenet_v3_small() -> list[str]:
    # (expansion conv, squeeze-excite) of features.1 ... features.11
    rows = [(False, True), (True, False), (True, False)] + [(True, True)] * 8
    keys = conv_bn("features.0")
    for i, (expand, se) in enumerate(rows, start=1):
        p, j = f"features.{i}.block", 0
        if expand:
            keys += conv_bn(f"{p}.{j}")
            j += 1
        keys += conv_bn(f"{p}.{j}")
        j += 1
        if se:
            keys += conv(f"{p}.{j}.fc1", bias=True) + conv(f"{p}.{j}.fc2", bias=True)
            j += 1
        keys += conv_bn(f"{p}.{j}")
    return keys + conv_bn("features.12") + linear("classifier.0") + linear("classifier.3")


def shufflenet_v2_x1_0() -> list[str]:
    keys = conv_bn("conv1")
    for stage, units in ((2, 4), (3, 8), (4, 4)):
        for u in range(units):
            p = f"stage{stage}.{u}"
            if u == 0:
                keys += conv(f"{p}.branch1.0") + bn(f"{p}.branch1.1") + conv(f"{p}.branch1.2") + bn(f"{p}.branch1.3")
            for i, kind in ((0, conv), (1, bn), (3, conv), (4, bn), (5, conv), (6, bn)):
                keys += kind(f"{p}.branch2.{i}")
    return keys + conv_bn("conv5") + linear("fc")


TORCHVISION = {
    "resnet18": resnet([2, 2, 2, 2], bottleneck=False),
    "resnet50": resnet([3, 4, 6, 3], bottleneck=True),
    "vgg16": vgg16(),
    "squeezenet1_1": squeezenet1_1(),
    "mobilenet_v2": mobilenet_v2(),
    "mobilenet_v3_small": mobilenet_v3_small(),
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0(),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_example_state_dict_keys_are_torchvisions(name):
    module = lower_to_torch(load_network(str(EXAMPLES / f"{name}.net")), device="meta")
    assert list(module.state_dict()) == TORCHVISION[name]


def test_a_torchvision_state_dict_loads_strictly_by_name():
    """What a deployer does with a torchvision checkpoint: load it by name into the lowered example."""
    import torch

    g = load_network(str(EXAMPLES / "squeezenet1_1.net"))
    source, target = lower_to_torch(g), lower_to_torch(g)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.state_dict().items()}
    renamed = dict(zip(TORCHVISION["squeezenet1_1"], state.values()))  # keys as torchvision writes them
    target.load_state_dict(renamed, strict=True)
    assert torch.equal(target.state_dict()["features.12.expand3x3.weight"], state["features.12.expand3x3.weight"])
