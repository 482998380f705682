"""Importing PyTorch models written the way users write them: same outputs, state dicts load by name, blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from compiler.backend.lower import lower_to_torch
from compiler.lint import lint
from netdsl.importers.from_torch import import_torch
from netdsl.importers.importer import ImportRequest, import_model
from netdsl.importers.netfile import write_checked
from netdsl.loader import load_network, load_network_text

HERE = Path(__file__).resolve().parent
MODELS = HERE / "user_models.py"
ROOT = HERE.parents[2]

# (class or factory, constructor arguments, input) for every user-style model
CASES = {
    "resnet18": ("resnet18", ["num_classes=10", "width=16"], (3, 32, 32)),
    "MobileNetV2": ("MobileNetV2", ["num_classes=10", "width_mult=0.25"], (3, 32, 32)),
    "ShuffleNetV2": ("ShuffleNetV2", [], (3, 32, 32)),
    "UNet": ("UNet", [], (1, 16, 16)),
    "FunctionalNet": ("FunctionalNet", [], (1, 28, 28)),
    "Misc": ("Misc", [], (3, 16, 16)),
    "InceptionNet": ("InceptionNet", [], (3, 20, 12)),
}


def import_case(name: str, tmp_path: Path, **kw):
    cls, args, shape = CASES[name]
    request = ImportRequest(f"{MODELS}:{cls}", tmp_path / "model.net", input_shapes=(shape,), args=tuple(args), **kw)
    return import_model(request)


def original(name: str) -> nn.Module:
    import tests.netdsl.importers.user_models as models

    cls, args, _ = CASES[name]
    kwargs = {k: eval(v) for k, v in (a.split("=") for a in args)}  # noqa: S307 (literals written above)
    return getattr(models, cls)(**kwargs).eval()


@pytest.mark.parametrize("name", list(CASES))
def test_user_models_import_with_the_same_outputs_and_state_dict_keys(name, tmp_path):
    torch.manual_seed(0)
    model = original(name)
    with torch.no_grad():  # trained-looking batch-norm statistics, saved as a user's checkpoint
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    torch.save(model.state_dict(), tmp_path / "trained.pt")
    report = import_case(name, tmp_path, state_dict=tmp_path / "trained.pt")
    assert not report.flat
    assert report.max_abs_diff <= 1e-5 * report.output_scale
    g = lint(load_network(tmp_path / "model.net"))
    lowered = lower_to_torch(g).eval()
    lowered.load_state_dict(model.state_dict(), strict=True)  # the user's checkpoint loads by name
    x = torch.randn(3, *CASES[name][2])
    with torch.no_grad():
        torch.testing.assert_close(lowered(x), model(x), rtol=1e-5, atol=1e-5)


def test_resnet_basic_block_is_one_block_used_for_every_block_without_downsample(tmp_path):
    report = import_case("resnet18", tmp_path)
    text = (tmp_path / "model.net").read_text()
    assert report.blocks == {"BasicBlock": 5, "BasicBlock_downsample": 3}
    assert "repeat(2) BasicBlock(16) as layer1" in text
    assert "add(in)" in text  # out += identity
    assert len(text.splitlines()) <= 2 * len((ROOT / "examples" / "resnet18.net").read_text().splitlines())


def test_mobilenet_v2_blocks_and_length(tmp_path):
    report = import_case("MobileNetV2", tmp_path)
    text = (tmp_path / "model.net").read_text()
    assert report.blocks["InvertedResidual"] == 10 and report.blocks["ConvBNReLU"] >= 2
    assert "padding=(k - 1) // 2" in text  # ConvBNReLU's padding follows its kernel
    assert "out * 6" in text  # the expansion is 6 times the block's width
    assert len(text.splitlines()) <= 2 * len((ROOT / "examples" / "mobilenet_v2.net").read_text().splitlines())


def test_shuffle_chunk_and_cat_become_language_ops(tmp_path):
    import_case("ShuffleNetV2", tmp_path)
    g = load_network(tmp_path / "model.net")
    ops = {d["op"] for _, d in g.nodes(data=True)}
    assert {"channel_shuffle", "split", "concat", "gap"} <= ops


def test_unet_up_block_has_two_inputs(tmp_path):
    import_case("UNet", tmp_path)
    text = (tmp_path / "model.net").read_text()
    assert "block Up(x, skip; out)" in text
    assert 'upsample(2, mode="bilinear")' in text


def test_inception_factorized_convs_import_as_non_square_kernels(tmp_path):
    report = import_case("InceptionNet", tmp_path)
    text = (tmp_path / "model.net").read_text()
    assert report.blocks["InceptionC"] == 2 and report.blocks["BasicConv2d"] >= 8
    assert "k=[1, 7]" in text and "padding=[0, 3]" in text and "maxpool([3, 1], stride=[2, 1], padding=[1, 0])" in text


def test_non_square_onnx_imports(tmp_path):
    """The same network through PyTorch's ONNX exporter (batch norm folded into the convolutions)."""
    pytest.importorskip("onnxruntime")
    import warnings

    model = original("InceptionNet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 20, 12),), str(tmp_path / "inception.onnx"), dynamo=False,
                          input_names=["image"], output_names=["logits"])
    report = import_model(ImportRequest(str(tmp_path / "inception.onnx"), tmp_path / "inception.net"))
    assert not report.flat and report.max_abs_diff <= 1e-5 * report.output_scale
    assert "k=[7, 1]" in (tmp_path / "inception.net").read_text()


def test_resnet50_sized_model_imports(tmp_path):
    """A Bottleneck's `out` is its output width; its inner convs are written as fractions of it."""
    import tests.netdsl.importers.user_models as models

    imported = import_torch(models.resnet50(num_classes=10, width=8).eval(), [(3, 32, 32)], "resnet50")
    text, recovered = write_checked(imported, "resnet50.net")
    assert recovered and "conv(out // 4, k=1, bias=false) as conv1" in text


# ---- property: random conv chains built in PyTorch import with the same outputs -----------------------------------
PAIR = st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2)))
LAYER = st.fixed_dictionaries({
    "out": st.integers(1, 6), "k": st.one_of(st.sampled_from([1, 3, 5]), st.tuples(st.integers(1, 5), st.integers(1, 5))),
    "stride": PAIR, "padding": st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    "dilation": PAIR, "grouped": st.booleans(), "bias": st.booleans(),
    "bn": st.booleans(), "act": st.sampled_from(["relu", "relu6", "silu", "hardswish", "leaky", None]),
    "pool": st.sampled_from([None, "max", "avg"]), "skip": st.booleans(),
})


class Chain(nn.Module):
    """Convs (any groups, dilation, padding, square or not), batch norm, activations, pooling and `+` shortcuts."""

    def __init__(self, layers: list[dict], channels: int, side: int):
        super().__init__()
        side = [side, side]
        self.blocks = nn.ModuleList()
        self.skips = []  # whether each block adds its input (a conv alone that keeps the shape)
        for spec in layers:
            groups = channels if spec["grouped"] else 1
            out = spec["out"] * groups
            k, stride, padding, dilation = (v if isinstance(v, tuple) else (v, v) for v in
                                            (spec["k"], spec["stride"], spec["padding"], spec["dilation"]))
            span = [d * (n - 1) + 1 for d, n in zip(dilation, k)]
            sizes = [(s + 2 * p - n) // st_ + 1 for s, p, n, st_ in zip(side, padding, span, stride)]
            if min(sizes) < 1:
                continue
            parts = [nn.Conv2d(channels, out, k, stride, padding, dilation, groups, spec["bias"])]
            before, side = side, sizes
            if spec["bn"]:
                parts.append(nn.BatchNorm2d(out))
            act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "silu": nn.SiLU(), "hardswish": nn.Hardswish(),
                   "leaky": nn.LeakyReLU(0.1)}.get(spec["act"] or "")
            if act is not None:
                parts.append(act)
            if spec["pool"] and min(side) >= 2:
                parts.append(nn.MaxPool2d(2) if spec["pool"] == "max" else nn.AvgPool2d(2, ceil_mode=True))
                side = [s // 2 if spec["pool"] == "max" else -(-s // 2) for s in side]
            self.blocks.append(nn.Sequential(*parts))
            self.skips.append(spec["skip"] and len(parts) == 1 and out == channels and side == before)
            channels = out
        self.fc = nn.Linear(channels, 3)

    def forward(self, x):
        for block, skip in zip(self.blocks, self.skips):
            x = x + block(x) if skip else block(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=st.lists(LAYER, min_size=1, max_size=4), channels=st.integers(1, 4), side=st.integers(6, 12))
def test_random_conv_chains_import_with_the_same_outputs(layers, channels, side):
    torch.manual_seed(0)
    model = Chain(layers, channels, side).eval()
    imported = import_torch(model, [(channels, side, side)], "chain.py:Chain")
    lint(imported.graph)
    text, recovered = write_checked(imported, "chain.net")
    assert recovered
    g = load_network_text(text, "chain.net")
    lowered = lower_to_torch(g).eval()
    lowered.load_state_dict(model.state_dict())
    x = torch.randn(2, channels, side, side)
    with torch.no_grad():
        torch.testing.assert_close(lowered(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_package_module_spec_with_safetensors_weights_exports_the_same_model(tmp_path, monkeypatch):
    """package.module:Name with a .safetensors state dict; the written weights load into export."""
    import safetensors.torch

    from netdsl.cli.main import main

    monkeypatch.setenv("COLUMNS", "200")
    model = original("FunctionalNet")
    safetensors.torch.save_file(model.state_dict(), str(tmp_path / "trained.safetensors"))
    assert main(["import", "tests.netdsl.importers.user_models:FunctionalNet", "--input", "1x28x28", "--state-dict",
                 str(tmp_path / "trained.safetensors"), "--name", "Digits", "-o", str(tmp_path / "digits.net")]) == 0
    weights = str(tmp_path / "digits.safetensors")
    assert load_network(tmp_path / "digits.net").graph["name"] == "Digits"
    assert main(["export", str(tmp_path / "digits.net"), "--to", "torchscript", "-o", str(tmp_path / "d.pt"),
                 "--weights", weights]) == 0
    scripted = torch.jit.load(str(tmp_path / "d.pt"))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)
