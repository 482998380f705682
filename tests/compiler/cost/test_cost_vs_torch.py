"""Cross-check: our MACs, params and buffers equal PyTorch's own counts of the lowered module (on the meta device).

torch.utils.flop_counter counts conv and matmul FLOPs as 2 x MACs, without bias adds; nn.Module.parameters()
and .buffers() hold exactly what our params and buffers count (num_batches_tracked is one buffer element).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.cost import compile_costs, network_cost
from compiler.rewrite.coupling import apply_widths
from netdsl.loader import load_network

torch = pytest.importorskip("torch")
lower = pytest.importorskip("compiler.backend.lower")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
NETS = sorted(p.stem for p in EXAMPLES.glob("*.net"))


def torch_counts(g) -> tuple[int, int, int]:
    """(MACs, params, buffer elements) as PyTorch counts them, without allocating anything."""
    module = lower.lower_to_torch(g, device="meta").eval()
    inputs = [torch.empty(1, *g.nodes[i]["shape"], device="meta") for i in g.graph["inputs"]]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return (counter.get_total_flops() // 2, sum(p.numel() for p in module.parameters()),
            sum(b.numel() for b in module.buffers()))


@pytest.mark.parametrize("name", NETS)
def test_examples_match_pytorch(name):
    g = load_network(str(EXAMPLES / f"{name}.net"))
    report = network_cost(g)
    assert (report.macs, report.params, report.buffers) == torch_counts(g)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "shufflenet_v2_x1_0", "unet_small"])
def test_rewritten_widths_match_pytorch(name):
    if not (EXAMPLES / f"{name}.net").exists():
        pytest.skip(f"examples/{name}.net not written yet")
    g = load_network(str(EXAMPLES / f"{name}.net"))
    program = compile_costs(g)
    rng = np.random.default_rng(7)
    mult = program.multiple_of
    row = rng.integers(1, 2 * program.prototype_widths // mult + 1) * mult
    wide = apply_widths(g, dict(zip(program.width_groups, row.tolist())), program.plan)
    report = network_cost(wide)
    assert (report.macs, report.params, report.buffers) == torch_counts(wide)


def test_non_square_windows_match_pytorch():
    """A kernel's area is kh x kw: factorized 1x7 / 7x1 convs, a tall depthwise conv, non-square pooling."""
    from netdsl.loader import load_network_text

    g = load_network_text("""network Inception {
        input x: [16, 17, 23]
        x -> conv(24, k=[1, 7], padding=[0, 3], bias=false) -> conv(32, k=[7, 1], stride=[2, 1], padding=[3, 0])
            -> dwconv([5, 3], dilation=[1, 2], padding="same", multiplier=2)
            -> maxpool([3, 1], stride=[2, 1]) -> avgpool([1, 3], padding=[0, 1])
        output y = gap -> linear(5)
    }""")
    report = network_cost(g)
    assert (report.macs, report.params, report.buffers) == torch_counts(g)
    assert report.node("conv")["macs"] == 24 * 17 * 23 * 16 * 7
