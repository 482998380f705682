"""Export a network: ONNX, TorchScript, or a standalone PyTorch source file; optionally with trained weights.

Given metadata (compiler.backend.metadata) an export is complete: with `normalized_inside` the input normalisation
is the model's first operation, so it takes float pixels in [0, 1]; ONNX files carry the metadata as
metadata_props, TorchScript files as the extra file `netdsl.json`, the source as its docstring and constants.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import torch

from compiler.backend.codegen import module_source
from compiler.backend.lower import LoweredNetwork, lower_to_torch
from compiler.backend.metadata import EXTRA_FILE, ModelMetadata
from compiler.backend.weights import load_weights_file
from compiler.cost import check_memory
from compiler.diagnostics import NetError, NetWarning

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


def export_onnx(module: LoweredNetwork, path: str | Path, opset: int = ONNX_OPSET,
                metadata: ModelMetadata | None = None) -> None:
    """ONNX (TorchScript-based exporter: the dynamo one needs onnxscript), batch dim dynamic, checked; eval mode;
    the metadata as metadata_props."""
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
    if metadata is not None:
        write_onnx_metadata(path, metadata)
    onnx.checker.check_model(str(path), full_check=True)


def write_onnx_metadata(path: str | Path, metadata: ModelMetadata) -> None:
    """Set the file's metadata_props (replacing netdsl's keys) and its doc string."""
    import onnx

    model = onnx.load(str(path))
    keep = {p.key: p.value for p in model.metadata_props if not p.key.startswith("netdsl.")}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**keep, **metadata.to_strings()})
    model.doc_string = f"{metadata.network} (netdsl {metadata.version}). Input: {metadata.input_text()}." + (
        f" Outputs: {metadata.outputs}" if metadata.outputs else "")
    onnx.save(model, str(path))


def read_onnx_metadata(path: str | Path) -> ModelMetadata | None:
    """The netdsl metadata of an ONNX file (None for a file netdsl did not make)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 (protobuf raises assorted types for a damaged file)
        raise NetError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    return ModelMetadata.from_strings({p.key: p.value for p in model.metadata_props}, str(path))


def export_torchscript(module: LoweredNetwork, path: str | Path, metadata: ModelMetadata | None = None) -> None:
    """TorchScript by scripting the generated forward (dropout and BN keep their train/eval behaviour); the
    metadata as the extra file netdsl.json."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(module.eval())
        except (RuntimeError, torch.jit.Error) as err:  # pragma: no cover (every op scripts; a safety net)
            raise NetError(f"TorchScript cannot compile network '{module.network}': "
                           f"{str(err).splitlines()[0]}") from None
        extra = {EXTRA_FILE: metadata.to_json()} if metadata is not None else {}
        try:
            torch.jit.save(scripted, str(path), _extra_files=extra)
        except RuntimeError as err:  # torch reports a file it cannot open as a RuntimeError, not an OSError
            reason = str(err).splitlines()[0].rpartition("strerror: ")[2]
            raise NetError(f"cannot write {path}: {reason}") from None


def read_torchscript_metadata(path: str | Path) -> tuple[torch.jit.ScriptModule, ModelMetadata | None]:
    """A TorchScript file's module (on the CPU) and its netdsl metadata (None if netdsl did not make it)."""
    import json

    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 (torch.jit.load raises assorted types for a damaged file)
        raise NetError(f"{path}: not a readable TorchScript file ({type(exc).__name__})", notes=[
            "if it holds weights (a state dict), evaluate them with: netdsl eval FILE.net --weights " + str(path)]) from None
    if not extra[EXTRA_FILE]:
        return module, None
    try:
        strings = json.loads(extra[EXTRA_FILE])
    except ValueError:
        raise NetError(f"{path}: its netdsl metadata is damaged (not JSON)") from None
    return module, ModelMetadata.from_strings(strings, str(path))


def export_pytorch_source(graph: nx.DiGraph, path: str | Path, origin: str | None = None,
                          metadata: ModelMetadata | None = None, appendix: str = "") -> None:
    """A standalone .py file defining the network as one nn.Module class (and `appendix`, such as a decoder)."""
    normalization = (metadata.mean, metadata.std) if metadata is not None and metadata.normalized_inside else None
    Path(path).write_text(module_source(graph, origin, normalization, source_header(metadata), appendix),
                          encoding="utf-8")


def source_header(metadata: ModelMetadata | None) -> str:
    """The standalone source's docstring paragraphs about its metadata, wrapped at 100 columns."""
    if metadata is None:
        return ""
    paragraphs = [f"Input: {metadata.input_text()}."]
    if metadata.outputs:
        paragraphs.append(f"Outputs: {metadata.outputs}")
    if metadata.class_names:
        paragraphs.append(f"Classes: {', '.join(metadata.class_names)}.")
    paragraphs.append(f"Trained on {metadata.data or 'unknown data'} for {metadata.task or 'an unknown task'}; "
                      f"netdsl {metadata.version}, source hash {metadata.source_hash}.")
    return "\n\n".join(textwrap.fill(p, 100) for p in paragraphs)


def export_network(graph: nx.DiGraph, target: str, out: str | Path, weights: str | Path | None = None,
                   origin: str | None = None, metadata: ModelMetadata | None = None,
                   appendix: str = "", on_note: Callable[[str], None] | None = None) -> LoweredNetwork:
    """Lower, load `weights` if given, and write `out` in the target format; returns the lowered module.

    With metadata that has `normalized_inside`, the exported model normalises its input first. on_note hears what
    loading the weights converted (floats of another precision); without it, that is a NetWarning."""
    check_target(target)
    check_memory(graph, "exporting")
    if metadata is not None and metadata.normalized_inside and not metadata.has_normalization:
        metadata = dataclasses.replace(metadata, normalized_inside=False)
    inside = metadata is not None and metadata.normalized_inside
    module = lower_to_torch(graph, normalization=(metadata.mean, metadata.std) if inside else None)
    if weights is not None:
        for note in load_weights_file(module, weights):
            if on_note is not None:
                on_note(note)
            else:
                warnings.warn(note, NetWarning, stacklevel=2)
    try:
        if target == "onnx":
            export_onnx(module, out, metadata=metadata)
        elif target == "torchscript":
            export_torchscript(module, out, metadata)
        else:
            export_pytorch_source(graph, out, origin, metadata, appendix)
    except OSError as err:
        raise NetError(f"cannot write {out}: {err.strerror or err}") from None
    return module
