"""Export: ONNX (checked, run by onnxruntime), TorchScript, standalone PyTorch source; weights; CLI errors."""

from __future__ import annotations

import ast
import importlib.util
import pickle

import pytest
import safetensors.torch
import torch

from compiler.backend.codegen import module_source
from compiler.backend.export import export_network, export_onnx
from compiler.backend.lower import lower_to_torch
from compiler.backend.weights import load_state_dict_strict, read_weights
from compiler.diagnostics import NetError
from netdsl.cli.main import main
from netdsl.loader import load_network, load_network_text
from tests.compiler.backend.lowering_nets import EVERY_OP, EXAMPLES, random_inputs, randomise_state

DETECTOR = next(p for p in EXAMPLES if p.stem == "detector_small")  # two outputs, upsample, concat


def as_list(result, names) -> list[torch.Tensor]:
    return [result] if isinstance(result, torch.Tensor) else [result[n] for n in names]


@pytest.fixture(scope="module")
def every_op_module():
    torch.manual_seed(0)
    module = lower_to_torch(load_network_text(EVERY_OP)).eval()
    randomise_state(module)
    return module


@pytest.mark.parametrize("source", ["every_op", "detector_small"])
def test_onnx_passes_the_checker_and_onnxruntime_agrees(source, every_op_module, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if source == "every_op":
        module = every_op_module
    else:
        module = lower_to_torch(load_network(next(p for p in EXAMPLES if p.stem == source))).eval()
        randomise_state(module)
    path = tmp_path / "net.onnx"
    export_onnx(module, path)
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == module.input_names
    assert [o.name for o in session.get_outputs()] == module.output_names
    inputs = random_inputs(module, 3)  # exported at batch 1: the batch dim is dynamic
    got = session.run(None, {n: x.numpy() for n, x in zip(module.input_names, inputs)})
    with torch.no_grad():
        expected = as_list(module(*inputs), module.output_names)
    for g, e in zip(got, expected):
        assert g.shape == tuple(e.shape)
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=1e-4, atol=1e-4)


def test_torchscript_loads_back_and_agrees(every_op_module, tmp_path):
    path = tmp_path / "net.pt"
    export_network(every_op_module.ir, "torchscript", path)
    loaded = torch.jit.load(str(path))
    module = lower_to_torch(every_op_module.ir)
    module.load_state_dict(loaded.state_dict())
    module.eval()
    inputs = random_inputs(module, 2)
    with torch.no_grad():
        got, expected = loaded(*inputs), module(*inputs)
    for name in module.output_names:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("source", ["every_op", "resnet18"])
def test_pytorch_source_is_standalone_and_computes_the_same(source, every_op_module):
    g = every_op_module.ir if source == "every_op" else load_network(next(p for p in EXAMPLES if p.stem == source))
    module = every_op_module if source == "every_op" else lower_to_torch(g).eval()
    text = module_source(g, "test")
    imports = [n for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all((n.module if isinstance(n, ast.ImportFrom) else n.names[0].name).split(".")[0] == "torch"
               for n in imports)
    namespace: dict = {"__name__": "generated"}
    exec(compile(text, "generated.py", "exec"), namespace)  # noqa: S102
    classes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)
               and v.__module__ == namespace.get("__name__")]
    assert len(classes) == 1
    standalone = classes[0]()
    norms = [m for m in standalone.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)  # initialised as lowered
    standalone.load_state_dict(module.state_dict(), strict=True)
    standalone.eval()
    inputs = random_inputs(module, 2)
    with torch.no_grad():
        for a, b in zip(as_list(standalone(*inputs), module.output_names), as_list(module(*inputs), module.output_names)):
            assert torch.equal(a, b)


def test_weights_load_from_safetensors_and_torch_state_dicts(tmp_path):
    g = load_network(DETECTOR)
    torch.manual_seed(3)
    trained = lower_to_torch(g)
    safetensors.torch.save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        module = export_network(g, "pytorch", tmp_path / "net.py", tmp_path / name)
        for key, value in trained.state_dict().items():
            assert torch.equal(module.state_dict()[key], value), key


def test_weights_that_do_not_fit_are_named(tmp_path):
    g = load_network(DETECTOR)
    module = lower_to_torch(g)
    state = module.state_dict()
    wrong = dict(state)
    key = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    wrong[key] = torch.zeros(3, *state[key].shape[1:])
    with pytest.raises(NetError, match="1 shape mismatch") as err:
        load_state_dict_strict(module, wrong)
    assert f"{key}: the file has shape (3, " in err.value.notes[0]
    partial = {k: v for k, v in state.items() if k != key}
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(NetError) as err:
        load_state_dict_strict(module, partial)
    assert any(key in n for n in err.value.notes) and any("extra.weight" in n for n in err.value.notes)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_weights_file_never_executes_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(NetError, match="cannot read weights"):
        read_weights(path)
    torch.save({"w": Payload()}, tmp_path / "evil2.pt")
    with pytest.raises(NetError, match="cannot read weights"):
        read_weights(tmp_path / "evil2.pt")
    assert "must never run" not in capsys.readouterr().out


def test_cli_exports_each_target(tmp_path, capsys):
    net = str(next(p for p in EXAMPLES if p.stem == "lenet5"))
    for target, suffix in (("pytorch", ".py"), ("torchscript", ".pt"), ("onnx", ".onnx")):
        if target == "onnx" and importlib.util.find_spec("onnx") is None:
            continue
        out = tmp_path / f"net{suffix}"
        assert main(["export", net, "--to", target, "-o", str(out)]) == 0
        assert out.stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


def test_cli_errors_exit_2_with_a_message(tmp_path, capsys, monkeypatch):
    net = str(next(p for p in EXAMPLES if p.stem == "lenet5"))
    assert main(["export", net, "--to", "tflite", "-o", str(tmp_path / "x")]) == 2
    assert "known targets: onnx, torchscript, pytorch" in capsys.readouterr().err
    assert main(["export", net, "--to", "pytorch", "-o", str(tmp_path / "x.py"), "--weights", str(tmp_path / "no")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", net, "--to", "onnx", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "pip install 'netdsl[onnx]'" in capsys.readouterr().err


def test_what_onnx_cannot_express_is_a_net_error(tmp_path):
    pytest.importorskip("onnx")
    g = load_network_text("""
    network odd_pool {
        input x: [3, 9, 9]
        output y = x -> conv(4, k=3) -> adaptive_avgpool(2)
    }
    """)
    with pytest.raises(NetError, match="ONNX cannot express network 'odd_pool'"):
        export_onnx(lower_to_torch(g), tmp_path / "odd.onnx")
