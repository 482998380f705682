"""Export a network: ONNX, TorchScript, or a standalone PyTorch source file; optionally with trained weights."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import networkx as nx
import torch

from compiler.backend.codegen import module_source
from compiler.backend.lower import LoweredNetwork, lower_to_torch
from compiler.backend.weights import load_weights_file
from compiler.diagnostics import NetError

TARGETS = ("onnx", "torchscript", "pytorch")
ONNX_OPSET = 17
ONNX_INSTALL = "pip install 'netdsl[onnx]'"


def check_target(target: str) -> None:
    """Raise NetError for an unknown target (listing the known ones) or a missing optional dependency."""
    if target not in TARGETS:
        raise NetError(f"unknown export target '{target}'", notes=[f"known targets: {', '.join(TARGETS)}"])
    if target == "onnx" and importlib.util.find_spec("onnx") is None:
        raise NetError("ONNX export needs the onnx package, which is not installed", notes=[f"install it: {ONNX_INSTALL}"])


def _example_inputs(module: LoweredNetwork) -> tuple[torch.Tensor, ...]:
    device = next(module.parameters(), torch.empty(0)).device
    return tuple(torch.randn(1, *module.shapes[i], device=device) for i in module.input_names)


def export_onnx(module: LoweredNetwork, path: str | Path, opset: int = ONNX_OPSET) -> None:
    """ONNX (TorchScript-based exporter: the dynamo one needs onnxscript), batch dim dynamic, checked; eval mode."""
    check_target("onnx")
    import onnx

    names = [*module.input_names, *module.output_names]
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            # PRESERVE and no constant folding keep batch norm as its own node and every weight under its layer's
            # name, so the file reads back (netdsl import) as the same network; onnxruntime fuses conv and BN itself.
            torch.onnx.export(module, _example_inputs(module), str(path), dynamo=False, opset_version=opset,
                              input_names=module.input_names, output_names=module.output_names,
                              dynamic_axes={n: {0: "batch"} for n in names},
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    except torch.onnx.errors.OnnxExporterError as err:
        raise NetError(f"ONNX cannot express network '{module.network}': {str(err).splitlines()[0]}") from None
    onnx.checker.check_model(str(path), full_check=True)


def export_torchscript(module: LoweredNetwork, path: str | Path) -> None:
    """TorchScript by scripting the generated forward (dropout and BN keep their train/eval behaviour)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(module.eval())
        except (RuntimeError, torch.jit.Error) as err:  # pragma: no cover (every op scripts; a safety net)
            raise NetError(f"TorchScript cannot compile network '{module.network}': "
                           f"{str(err).splitlines()[0]}") from None
        torch.jit.save(scripted, str(path))


def export_pytorch_source(graph: nx.DiGraph, path: str | Path, origin: str | None = None) -> None:
    """A standalone .py file defining the network as one nn.Module class."""
    Path(path).write_text(module_source(graph, origin), encoding="utf-8")


def export_network(graph: nx.DiGraph, target: str, out: str | Path, weights: str | Path | None = None,
                   origin: str | None = None) -> LoweredNetwork:
    """Lower, load `weights` if given, and write `out` in the target format; returns the lowered module."""
    check_target(target)
    module = lower_to_torch(graph)
    if weights is not None:
        load_weights_file(module, weights)
    try:
        if target == "onnx":
            export_onnx(module, out)
        elif target == "torchscript":
            export_torchscript(module, out)
        else:
            export_pytorch_source(graph, out, origin)
    except OSError as err:
        raise NetError(f"cannot write {out}: {err.strerror or err}") from None
    return module
