"""`netdsl import`: read a model (ONNX, or a PyTorch class with a state dict), write a readable .net file and its
weights, and check that the written network computes what the original does."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError
from netdsl.importers.imported import ImportedModel, net_name
from netdsl.importers.netfile import write_checked
from netdsl.importers.python_source import SPEC_FORMS, build_model, is_python_spec, parse_arg
from netdsl.loader import BINARY_FORMATS, load_network_text, sniff_binary

VERIFY_BATCH = 1  # the capture already ran a batch of 2, which shows where a model mixes the batch in
VERIFY_SEED = 0


@dataclass(frozen=True)
class ImportRequest:
    """What to import and where to write it (see `netdsl import --help`)."""

    source: str
    out: Path
    weights_out: Path | None = None
    input_shapes: tuple[tuple[int, ...], ...] | None = None
    name: str | None = None
    args: tuple[str, ...] = ()
    state_dict: Path | None = None
    force: bool = False
    verify: bool = True
    mean: tuple[float, ...] | None = None  # the normalisation the model was trained with, per channel of [0, 1] pixels
    std: tuple[float, ...] | None = None


@dataclass
class ImportReport:
    """What was written, and how closely the written network reproduces the original's outputs."""

    network: str
    source: str
    kind: str  # "onnx" or "pytorch"
    out: str
    weights: str
    layers: int
    lines: int
    blocks: dict[str, int]  # block name -> instances
    macs: int
    params: int
    max_abs_diff: float | None
    output_scale: float | None
    seconds: float
    flat: bool
    notes: list[str] = field(default_factory=list)


def parse_shape(text: str) -> tuple[int, ...]:
    """'3x224x224' -> (3, 224, 224): the per-sample shape, without the batch."""
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise NetError(f"--input expects a per-sample shape like 3x224x224, got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise NetError(f"--input sizes must be positive, got {text!r}")
    return shape


def source_kind(source: str) -> str:
    """'onnx' or 'pytorch' for what SRC names; a NetError that says what to do with anything else."""
    path = Path(source)
    if not path.is_file():
        if is_python_spec(source):
            return "pytorch"
        raise NetError(f"no such file: {source}", notes=[f"give an .onnx file, or a PyTorch model as {SPEC_FORMS}"])
    with path.open("rb") as f:
        kind = sniff_binary(f.read(64))
    if kind == "zip" and _is_torchscript(path):
        raise NetError(f"{source} is a TorchScript archive, which netdsl does not import",
                       notes=[f"import the Python model it was made from: {SPEC_FORMS} with --state-dict",
                              "or convert it: torch.onnx.export(torch.jit.load(FILE), example_input, 'model.onnx')"])
    if kind in ("zip", "pickle", "safetensors"):
        raise NetError(f"{source} is a weights file ({BINARY_FORMATS[kind][0]}): it holds weights, not the architecture",
                       notes=[f"give the model as {SPEC_FORMS} and these weights with --state-dict {source}"])
    if kind is None and path.suffix.lower() == ".net":
        raise NetError(f"{source} is already a .net file", notes=[f"check it: netdsl check {source}"])
    return "onnx"


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds compiled code (code/, constants.pkl); a torch.save checkpoint does not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def read_model(request: ImportRequest):
    """(ImportedModel, a function computing the original's outputs for a list of input arrays, kind)."""
    kind = source_kind(request.source)
    shapes = [tuple(s) for s in request.input_shapes] if request.input_shapes else None
    if kind == "onnx":
        from netdsl.importers.from_onnx import import_onnx

        if request.args or request.state_dict:
            raise NetError("--arg and --state-dict are for PyTorch models; an ONNX file holds its weights")
        imported = import_onnx(request.source, shapes, request.name)
        return imported, _onnx_runner(request.source), kind
    import torch

    from compiler.backend.weights import load_state_dict_strict, read_weights
    from netdsl.importers.from_torch import import_torch

    args = dict(parse_arg(a) for a in request.args)
    model = build_model(request.source, args)
    if request.state_dict is not None:
        load_state_dict_strict(model, read_weights(request.state_dict), str(request.state_dict))
    if not shapes:
        first = next((m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))), None)
        hint = (f"its first layer takes {first.in_channels} channels: e.g. --input {first.in_channels}x224x224"
                if isinstance(first, torch.nn.Conv2d) else "e.g. --input 3x224x224")
        raise NetError(f"{request.source}: a PyTorch model does not declare its input size; give it with --input",
                       notes=[hint])
    imported = import_torch(model, shapes, request.source, request.name)
    if request.state_dict is None:
        imported.notes.append("no --state-dict: the weights are those the constructor made")

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = model.eval()(*[torch.from_numpy(x) for x in inputs])
        if isinstance(out, dict):
            return {net_name(str(k), "out"): v.detach().numpy() for k, v in out.items()}
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        return [o.detach().numpy() for o in outs]

    return imported, run, kind


def _onnx_runner(path: str):
    def run(inputs: list[np.ndarray]) -> list[np.ndarray] | None:
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        outputs = [net_name(o.name, f"out{i}") for i, o in enumerate(session.get_outputs())]
        if all(isinstance(i.shape[0], str) for i in session.get_inputs()):
            return dict(zip(outputs, session.run(None, dict(zip(names, inputs)))))
        runs = [session.run(None, {n: x[k:k + 1] for n, x in zip(names, inputs)}) for k in range(len(inputs[0]))]
        return dict(zip(outputs, (np.concatenate(parts) for parts in zip(*runs))))  # exported for batch 1

    return run


def import_model(request: ImportRequest) -> ImportReport:
    """Import, write OUT.net and the weights, load both back and compare outputs with the original."""
    start = time.perf_counter()
    weights_out = request.weights_out or request.out.with_suffix(".safetensors")
    if weights_out == request.out:
        raise NetError(f"the network and its weights would both be written to {request.out}")
    if not request.force:
        for path in (request.out, weights_out):
            if path.exists():
                raise NetError(f"{path} exists; netdsl import does not overwrite files unless given --force")
    carried = carried_metadata(request)
    imported, original, kind = read_model(request)
    how = "torch.export" if kind == "pytorch" else "the onnx package"
    header = [f"Imported from {request.source} by `netdsl import` ({how}).",
              f"Weights: {weights_out.name} (keys are the layer names below)."]
    text, recovered = write_checked(imported, str(request.out), header)
    g = load_network_text(text, str(request.out))
    module = _lowered_with_weights(g, imported)
    diff, scale = _compare(module, original, imported) if request.verify else (None, None)
    try:
        request.out.parent.mkdir(parents=True, exist_ok=True)
        request.out.write_text(text, encoding="utf-8")
        _save(imported.weights, weights_out, weights_metadata(request, g, carried))
    except OSError as err:
        raise NetError(f"cannot write {err.filename}: {err.strerror}") from None
    from compiler.cost import network_cost

    cost = network_cost(g)
    return ImportReport(
        network=g.graph["name"], source=request.source, kind=kind, out=str(request.out), weights=str(weights_out),
        layers=sum(1 for _, d in g.nodes(data=True) if d["op"] != "input"), lines=len(text.splitlines()),
        blocks=_block_uses(g), macs=cost.macs, params=cost.params, max_abs_diff=diff, output_scale=scale,
        seconds=time.perf_counter() - start, flat=not recovered, notes=imported.notes)


def _block_uses(g) -> dict[str, int]:
    uses: dict[str, int] = {}
    for block in g.graph["scopes"].values():
        uses[block] = uses.get(block, 0) + 1
    return uses


def _lowered_with_weights(g, imported: ImportedModel):
    """The written network lowered, with the imported weights loaded strictly (every key, every shape)."""
    import torch

    from compiler.backend.lower import lower_to_torch
    from compiler.backend.weights import load_state_dict_strict

    module = lower_to_torch(g).eval()
    state = {k: torch.as_tensor(v) for k, v in imported.weights.items()}
    load_state_dict_strict(module, state, "the imported weights")
    return module


def _compare(module, original, imported: ImportedModel) -> tuple[float | None, float | None]:
    """Max |netdsl - original| over the outputs for a seeded random batch, and the largest |original| output."""
    import torch

    g = imported.graph
    rng = np.random.default_rng(VERIFY_SEED)
    inputs = [rng.standard_normal((VERIFY_BATCH, *g.nodes[i]["shape"])).astype(np.float32) for i in g.graph["inputs"]]
    expected = original(inputs)
    if expected is None:
        imported.notes.append("outputs not compared: onnxruntime is not installed")
        return None, None
    with torch.no_grad():
        got = module(*[torch.from_numpy(x) for x in inputs])
    got = [got[o] for o in module.output_names] if isinstance(got, dict) else [got]
    if isinstance(expected, dict):  # a forward returning a dict: its keys are the output names
        expected = [expected[o] for o in module.output_names]
    if len(got) != len(expected):
        raise NetError(f"the imported network has {len(got)} outputs, the original {len(expected)}")
    diff = max(float(np.abs(a.numpy() - np.asarray(b)).max()) for a, b in zip(got, expected))
    scale = max(float(np.abs(np.asarray(b)).max()) for b in expected)
    return diff, scale


def _save(weights: dict[str, np.ndarray], path: Path, metadata) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.array(v, order="C") for k, v in weights.items()}, str(path),
              metadata={"format": "pt", **metadata.to_strings()})


def carried_metadata(request: ImportRequest):
    """The metadata of an ONNX file netdsl exported (None otherwise); one that normalises its input itself is
    refused: netdsl has no op for that Sub and Div, and the weights file carries the normalisation instead."""
    if source_kind(request.source) != "onnx" or not Path(request.source).is_file():
        return None
    from compiler.backend.export import read_onnx_metadata

    meta = read_onnx_metadata(request.source)
    if meta is not None and meta.normalized_inside:
        raise NetError(f"{request.source} normalises its input itself (exported by netdsl); import a file exported "
                       "with --no-preprocess: its weights then carry the normalisation")
    return meta


def weights_metadata(request: ImportRequest, g, carried):
    """What the imported weights carry: --mean/--std (or a netdsl export's own), task and class names if known."""
    from compiler.backend.metadata import ModelMetadata, source_hash

    shape = tuple(g.nodes[g.graph["inputs"][0]]["shape"])
    mean, std = request.mean, request.std
    if (mean is None) != (std is None):
        raise NetError("--mean and --std go together")
    if mean is not None:
        mean, std = (tuple(v) * shape[0] if len(v) == 1 else tuple(v) for v in (mean, std))
        if len(mean) != shape[0] or len(std) != shape[0] or any(not v > 0 for v in std):
            raise NetError(f"--mean and --std need one value, or one per input channel ({shape[0]}), std positive; "
                           f"got {list(request.mean)} and {list(request.std)}")
    elif carried is not None:
        mean, std = carried.mean, carried.std
    return ModelMetadata(network=g.graph["name"], input_shape=shape, mean=mean or (), std=std or (),
                         task=carried.task if carried else "", class_names=carried.class_names if carried else (),
                         data=carried.data if carried else "", source_hash=source_hash(g))
