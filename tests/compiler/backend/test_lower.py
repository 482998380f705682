"""The PyTorch lowering: parity with the IR (parameters, shapes, MACs) and with an independent interpreter."""

from __future__ import annotations

import copy
import inspect

import networkx as nx
import pytest
import torch
from torch import nn

from compiler.backend.codegen import forward_source
from compiler.backend.lower import lower_to_torch, parameter_count
from compiler.backend.names import LOWERED_ATTRIBUTES, MODULE_ATTRIBUTES
from compiler.cost import network_cost
from compiler.diagnostics import NetError
from compiler.ir import copy_graph
from netdsl.loader import load_network, load_network_text
from tests.compiler.backend.lowering_nets import (
    EVERY_OP,
    EXAMPLES,
    random_inputs,
    randomise_state,
    reference_forward,
    resized,
)

TINY = """
block res(c) {
    conv(c, k=3, padding=1, bias=false) as conv1 -> bn as bn1 -> relu
    add(in) -> relu
}
network tiny {
    input x: [3, 8, 8]
    x -> conv(4, k=3, padding=1) as stem -> bn as stem_bn -> relu
    repeat(2) res(4) as layer
    a, b = split(2)
    output logits = concat(b, a) -> channel_shuffle(2) -> gap -> dropout(0.2) -> linear(3) as fc
}
"""
RUN_SIDE = 32  # larger examples train at this input size where their shapes allow (their IR re-inferred)


def per_sample_shapes(values: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(v.shape[1:]) for name, v in values.items()}


def outputs_of(result, module) -> list[torch.Tensor]:
    return [result] if isinstance(result, torch.Tensor) else [result[o] for o in module.output_names]


@pytest.fixture(scope="module")
def every_op():
    return load_network_text(EVERY_OP)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_parameters_and_shapes_match_the_ir(path):
    g = load_network(path)
    module = lower_to_torch(g, device="meta")
    assert parameter_count(module) == network_cost(g).params
    values = module.intermediates(*random_inputs(module, 2, device="meta"))
    assert per_sample_shapes(values) == {n: tuple(d["shape"]) for n, d in g.nodes(data=True)} == module.shapes


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_trains_and_evaluates(path):
    g = load_network(path)
    batch, side = 2, g.nodes[g.graph["inputs"][0]]["shape"][-1]
    if side > RUN_SIDE:
        try:
            g = resized(g, RUN_SIDE)
        except NetError:
            batch = 1  # a fixed-size layer (mobilenet_v1's avgpool(7)) needs the declared size: keep it cheap
    torch.manual_seed(0)
    module = lower_to_torch(g).train()
    inputs = random_inputs(module, batch)
    loss = sum(out.square().mean() for out in outputs_of(module(*inputs), module))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    module.eval()
    with torch.no_grad():
        plain = module.intermediates(*inputs)
        fast = outputs_of(module(*inputs), module)  # in-place activations, values released early
    assert per_sample_shapes(plain) == module.shapes
    for out, name in zip(fast, module.output_names):
        assert torch.equal(out, plain[g.graph["outputs"][name]])


def test_every_op_agrees_with_an_independent_interpreter(every_op):
    torch.manual_seed(1)
    module = lower_to_torch(every_op).eval()
    randomise_state(module)
    inputs = random_inputs(module, 3)
    with torch.no_grad():
        expected = reference_forward(every_op, module, inputs)
        values = module.intermediates(*inputs)
        result = module(*inputs)
    assert per_sample_shapes(values) == module.shapes
    for name in values:
        torch.testing.assert_close(values[name], expected[name], msg=name)
    assert set(result) == {"probs", "features"}
    torch.testing.assert_close(result["probs"], expected["softmax"])
    assert parameter_count(module) == network_cost(every_op).params


def test_broadcasting_right_aligns_per_sample_shapes_as_the_ir_does(every_op):
    module = lower_to_torch(every_op).eval()
    image, gains = random_inputs(module, 2)
    with torch.no_grad():
        values = module.intermediates(image, gains)
    # gains [12] against [8, 12, 12]: right-aligned, so it scales the last (width) dim, per sample
    torch.testing.assert_close(values["scaled"], values["hsw"] * gains[:, None, None, :])
    assert every_op.nodes["scaled"]["shape"] == (8, 12, 12)


def test_module_layout_names_and_initialisation():
    g = load_network_text(TINY)
    module = lower_to_torch(g)
    assert [k for k in module.state_dict() if k.startswith("layer.")][:2] == ["layer.0.conv1.weight", "layer.0.bn1.weight"]
    assert isinstance(module.get_submodule("layer.1.conv1"), nn.Conv2d)
    assert isinstance(module.get_submodule("stem_bn"), nn.BatchNorm2d)
    assert torch.all(module.stem.bias == 0) and torch.all(module.fc.bias == 0)
    assert torch.all(module.stem_bn.weight == 1)
    assert 0.005 < module.fc.weight.std() < 0.02
    fan_out_std = (2 / (4 * 9)) ** 0.5
    assert 0.5 * fan_out_std < module.stem.weight.std() < 1.5 * fan_out_std
    assert module.code == forward_source(g) and "for " not in module.code
    assert inspect.getsource(type(module).forward) == module.code
    assert module.input_names == ["x"] and module.output_names == ["logits"]


def test_any_batch_size_train_and_eval_and_deepcopy():
    module = lower_to_torch(load_network_text(TINY))
    for batch in (1, 5):
        assert module.eval()(torch.randn(batch, 3, 8, 8)).shape == (batch, 3)
    x = torch.randn(4, 3, 8, 8)
    module.train()
    before = module.stem_bn.running_mean.clone()
    torch.manual_seed(0)
    a = module(x)
    assert not torch.equal(module.stem_bn.running_mean, before)  # BN statistics update in training
    twin = copy.deepcopy(module)
    torch.manual_seed(0)
    b = twin(x)
    torch.manual_seed(0)
    torch.testing.assert_close(b, module(x))  # same dropout mask, same BN batch statistics
    assert twin.code == module.code and not torch.equal(a, module.eval()(x))


def test_torch_compile_runs_the_generated_forward():
    torch.manual_seed(0)
    module = lower_to_torch(load_network_text(TINY)).eval()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(module)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda(every_op):
    module = lower_to_torch(every_op, device="cuda").eval()
    randomise_state(module)
    cpu = copy.deepcopy(module).cpu()
    inputs = random_inputs(module, 2)
    with torch.no_grad():
        got = module(*[x.cuda() for x in inputs])
        torch.testing.assert_close(got["probs"].cpu(), cpu(*inputs)["probs"], rtol=1e-3, atol=1e-4)


def test_an_op_without_lowering_is_named(every_op):
    g = copy_graph(every_op)
    g.nodes["same"]["op"] = "mystery"
    with pytest.raises(NetError, match="'same'.*'mystery' has no PyTorch lowering"):
        lower_to_torch(g)


def test_reserved_names_cover_every_attribute_of_the_installed_torch():
    """check refuses (compiler.backend.codegen, no torch) exactly what lowering could not place: every attribute of
    nn.Module, and the lowered module's own at the top level."""
    plain = set(dir(nn.Module()))
    lowered = set(dir(lower_to_torch(load_network_text("network N { input x: [1, 2, 2] output y = x -> relu }"))))
    dunder = {a for a in plain if a.startswith("__")}
    assert plain - dunder <= MODULE_ATTRIBUTES, plain - dunder - MODULE_ATTRIBUTES
    assert lowered - plain <= LOWERED_ATTRIBUTES


@pytest.mark.parametrize("name", ["training", "ir", "shapes", "code", "network", "input_names", "output_names",
                                  "forward", "state_dict", "__init__"])
def test_a_layer_named_like_a_module_attribute_is_refused_at_load_and_by_lowering(name):
    text = TINY.replace("as fc", f"as {name}")
    with pytest.raises(NetError, match=f"'{name}' cannot name a layer") as info:
        load_network_text(text, "tiny.net")
    assert info.value.span is not None and info.value.span.file == "tiny.net"
    g = load_network_text(TINY.replace("as fc", "as head"))
    g = nx.relabel_nodes(g, {"head": name})  # an IR that skipped the loader: lowering refuses it the same way
    g.graph["outputs"] = {k: name if v == "head" else v for k, v in g.graph["outputs"].items()}
    for node in g:
        g.nodes[node]["inputs"] = [name if i == "head" else i for i in g.nodes[node]["inputs"]]
    with pytest.raises(NetError, match=f"'{name}' cannot name a layer"):
        lower_to_torch(g)


def test_names_refused_only_where_pytorch_needs_them():
    """A block scope is a container only when it holds a layer; a parameter-free node is no submodule; deeper levels
    are plain nn.Modules, which have no `ir`."""
    ok = ["relu as ir", "conv(2, 1) as stem.ir"]
    for step in ok:
        g = load_network_text(f"network N {{ input x: [1, 4, 4] output y = x -> {step} }}")
        lower_to_torch(g)
    with pytest.raises(NetError, match="'training' cannot name a block"):
        load_network_text("block b() { conv(2, 1) }\nnetwork N { input x: [1, 4, 4] output y = x -> b as training }")
    with pytest.raises(NetError, match="layer 'a' is also the name of a block"):
        load_network_text("network N { input x: [1, 4, 4] output y = x -> conv(2, 1) as a -> conv(2, 1) as a.b }")


def test_fvcore_macs_equal_the_cost_model():
    analysis = pytest.importorskip("fvcore.nn").FlopCountAnalysis
    for stem in ("resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "unet_small"):
        g = load_network(next(p for p in EXAMPLES if p.stem == stem))
        module = lower_to_torch(g).eval()
        counts = analysis(module, tuple(random_inputs(module, 1)))
        counts.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = counts.by_operator()
        assert sum(by_op.get(op, 0) for op in ("conv", "linear", "addmm", "matmul")) == network_cost(g).macs, stem
