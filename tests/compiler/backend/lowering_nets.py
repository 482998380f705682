"""Networks and an independent reference interpreter shared by the lowering and export tests."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from compiler.ir import copy_graph, topo_order
from compiler.shapes import infer_shapes, same_padding, split_sizes

EXAMPLES = sorted(Path(__file__).resolve().parents[3].joinpath("examples").glob("*.net"))

# Every op of the language at least once, with non-default parameters (non-square kernels, strides and padding
# among them), two inputs and two outputs.
EVERY_OP = """
network every_op {
    input image: [3, 12, 12]
    input gains: [12]
    a = image -> conv(8, k=3, padding="same", dilation=2) as c_same -> bn(eps=0.001, momentum=0.2) as bn2d
        -> leaky_relu(0.2) as leaky
    b = a -> dwconv(3, stride=2, padding=1, multiplier=2) as dw -> silu as silu
    c = b -> conv_transpose(8, k=3, stride=2, padding=1, output_padding=1, groups=2) as up_t
        -> gelu(approximate="tanh") as gelu_t -> gelu as gelu_n
    d = add(a, c) as sum -> hardswish as hsw
    e = mul(d, gains) as scaled
    f = e -> maxpool(3, stride=2, padding=1) as mp
    f2 = e -> avgpool(2) as ap
    f3 = e -> maxpool(2, dilation=2) as mp_dil -> avgpool(2, padding=1, ceil_mode=true, count_include_pad=false)
        as ap_ceil -> upsample(size=6) as resize3
    g = concat(f, f2, dim=-1) as cat_w -> upsample(size=6) as resize
    gate = f -> adaptive_avgpool(1) as squeeze -> conv(8, k=1) as excite -> hardsigmoid as hsig
    h = mul(g, gate) as gated -> sigmoid as sig
    n = a -> conv(8, k=[1, 3], stride=2, padding=[0, 1]) as c_wide -> maxpool([3, 1], stride=1, padding=[1, 0])
        as mp_tall -> avgpool([1, 3], stride=[1, 1], padding=[0, 1]) as ap_wide -> dwconv([3, 1], padding="same") as dw_tall
    h2 = add(h, f3, n) as sum2 -> channel_shuffle(2) as shuffle
    p0, p1 = h2 -> split([3, 5]) as part
    q = p1 -> conv(3, k=1, bias=false) as proj -> conv(3, k=2, padding="same") as c_even -> relu as relu
    r = concat(p0, q) as cat_c -> upsample(scale=2, mode="bilinear", align_corners=false) as up_bl
        -> upsample(scale=1.5) as up_nn -> upsample(scale=0.5, mode="bilinear", align_corners=true) as down_bl
        -> identity as same -> relu6 as relu6
    v = r -> adaptive_avgpool(3) as pool3 -> flatten as flat -> bn as bn1d -> dropout(0.3) as drop
    output probs = v -> linear(10) as fc -> softmax(0) as softmax
    output features = r -> gap as gap -> linear(4, bias=false) as head -> softmax(-1) as softmax_last
}
"""


def resized(g: nx.DiGraph, side: int) -> nx.DiGraph:
    """The network with its image inputs resized to side x side and every shape re-inferred."""
    new = copy_graph(g)
    for name in new.graph["inputs"]:
        shape = new.nodes[name]["attrs"]["shape"]
        if len(shape) == 3:
            new.nodes[name]["attrs"]["shape"] = [shape[0], side, side]
    return infer_shapes(new)


def _aligned(t: torch.Tensor, shape: tuple, rank: int) -> torch.Tensor:
    """A batched operand with its per-sample shape right-aligned to `rank` dims (the IR's broadcast rule)."""
    return t.reshape(t.shape[0], *((1,) * (rank - len(shape)) + tuple(shape)))


def _batched(dim: int) -> int:
    return dim + 1 if dim >= 0 else dim


def reference_forward(g: nx.DiGraph, module: nn.Module, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every node's value by an op-by-op interpreter written apart from the code generator (module's tensors)."""
    values = dict(zip(g.graph["inputs"], inputs))
    for name in topo_order(g):
        d = g.nodes[name]
        op, a = d["op"], d["attrs"]
        xs = [values[i] for i in d["inputs"]]
        x = xs[0] if xs else None
        layer = module.get_submodule(name) if op in ("conv", "dwconv", "conv_transpose", "linear", "bn") else None
        if op == "input":
            continue
        if op in ("conv", "dwconv"):
            groups = x.shape[1] if op == "dwconv" else a["groups"]
            if a["padding"] == "same":  # PyTorch's rule, written out: the odd pixel of padding goes after
                (top, bottom), (left, right) = same_padding(a)
                x = F.pad(x, (left, right, top, bottom))
            padding = 0 if a["padding"] == "same" else a["padding"]
            y = F.conv2d(x, layer.weight, layer.bias, a["stride"], padding, a["dilation"], groups)
        elif op == "conv_transpose":
            y = F.conv_transpose2d(x, layer.weight, layer.bias, a["stride"], a["padding"], a["output_padding"],
                                   a["groups"], a["dilation"])
        elif op == "linear":
            y = F.linear(x, layer.weight, layer.bias)
        elif op == "bn":
            y = F.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0, a["eps"])
        elif op in ("add", "mul"):
            rank = len(d["shape"])
            ys = [_aligned(t, g.nodes[i]["shape"], rank) for t, i in zip(xs, d["inputs"])]
            y = ys[0]
            for t in ys[1:]:
                y = torch.add(y, t) if op == "add" else torch.mul(y, t)
        elif op == "concat":
            y = torch.cat(xs, _batched(a["dim"]))
        elif op == "split":
            y = torch.split(x, split_sizes(a["sections"], x.shape[1]), 1)[a["part"]]
        elif op == "channel_shuffle":
            y = nn.ChannelShuffle(a["groups"])(x)
        elif op == "maxpool":
            y = nn.MaxPool2d(a["k"], a["stride"], a["padding"], a["dilation"], ceil_mode=a["ceil_mode"])(x)
        elif op == "avgpool":
            y = nn.AvgPool2d(a["k"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"])(x)
        elif op == "gap":
            y = nn.AdaptiveAvgPool2d(1)(x).flatten(1)
        elif op == "adaptive_avgpool":
            y = nn.AdaptiveAvgPool2d(a["size"])(x)
        elif op == "flatten":
            y = nn.Flatten()(x)
        elif op == "upsample":
            size = None if a["size"] is None else (a["size"], a["size"])
            y = nn.Upsample(size, a["scale"], a["mode"], a["align_corners"])(x)
        elif op == "softmax":
            y = nn.Softmax(_batched(a["dim"]))(x)
        elif op == "dropout":
            y = x  # evaluated in eval mode only
        else:
            y = {
                "relu": nn.ReLU(), "relu6": nn.ReLU6(), "sigmoid": nn.Sigmoid(), "hardswish": nn.Hardswish(),
                "hardsigmoid": nn.Hardsigmoid(), "silu": nn.SiLU(), "identity": nn.Identity(),
                "leaky_relu": nn.LeakyReLU(a.get("slope", 0.01)), "gelu": nn.GELU(a.get("approximate", "none")),
            }[op](x)
        values[name] = y
    return values


def random_inputs(module: nn.Module, batch: int, **kw) -> list[torch.Tensor]:
    """Random inputs of the module's IR shapes."""
    return [torch.randn(batch, *module.shapes[i], **kw) for i in module.input_names]


def randomise_state(module: nn.Module) -> None:
    """Random BN statistics and affine parameters, so eval-mode BN is not the identity."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
