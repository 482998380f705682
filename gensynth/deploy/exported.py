"""Exported files run as a deployer runs them (ONNX with onnxruntime, TorchScript with torch.jit.load) and scored
with the same metrics as `netdsl eval FILE.net --weights W`, fed as their metadata says."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compiler.backend.export import read_onnx_metadata, read_torchscript_metadata
from compiler.backend.metadata import ModelMetadata
from compiler.diagnostics import NetError
from gensynth.data import Dataset, load_dataset
from gensynth.data.targets import TASK_WORDS
from gensynth.tasks.objectives import objective_for
from gensynth.training.evaluate import EvalResult, evaluate

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript", ".ts")


def exported_kind(path: str | Path) -> str | None:
    """"onnx" or "torchscript" for a file of an exported model (by its name), None for anything else."""
    suffix = Path(path).suffix.lower()
    return "onnx" if suffix in ONNX_SUFFIXES else "torchscript" if suffix in TORCHSCRIPT_SUFFIXES else None


class OnnxModule(nn.Module):
    """An onnxruntime session as a module: torch batches in, torch tensors (a dict for several outputs) out."""

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own types for a bad file)
            raise NetError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:300]})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise NetError(f"{path}: evaluation needs a model with one input; it has {len(inputs)}")
        self.input_name = inputs[0].name
        self.input_shape = tuple(inputs[0].shape[1:])  # per sample; symbolic dims are strings
        self.output_names = [o.name for o in self.session.get_outputs()]

    def forward(self, x: torch.Tensor):
        outs = self.session.run(None, {self.input_name: x.detach().to("cpu", torch.float32).numpy()})
        tensors = [torch.from_numpy(o) for o in outs]
        return tensors[0] if len(tensors) == 1 else dict(zip(self.output_names, tensors))


@dataclass(frozen=True)
class ExportedModel:
    """An exported file loaded for running: its kind, the module that runs it, its metadata (None if foreign)."""

    path: Path
    kind: str
    module: nn.Module
    metadata: ModelMetadata | None
    input_shape: tuple | None  # per sample, as the file declares it (None: TorchScript says nothing)


def load_exported(path: str | Path, threads: int | None = None) -> ExportedModel:
    """Load an .onnx or TorchScript file; NetError for a missing or unreadable file."""
    path = Path(path)
    kind = exported_kind(path)
    if kind is None:
        raise NetError(f"{path}: not an exported model (expected .onnx, or .pt for TorchScript)")
    if not path.is_file():
        raise NetError(f"file not found: {path}")
    if kind == "onnx":
        meta = read_onnx_metadata(path)
        module = OnnxModule(path, threads)
        return ExportedModel(path, kind, module, meta, module.input_shape)
    module, meta = read_torchscript_metadata(path)
    return ExportedModel(path, kind, module.eval(), meta, meta.input_shape if meta else None)


def input_normalization(model: ExportedModel, mean: tuple | None, std: tuple | None) -> tuple[dict, str]:
    """load_dataset's mean and std for feeding this file, and how that reads: the data's pixels as read when it
    normalises them itself, its own normalisation otherwise; --mean/--std only for files netdsl did not make."""
    meta = model.metadata
    if meta is not None and (meta.normalized_inside or meta.has_normalization):
        if mean is not None or std is not None:
            raise NetError(f"{model.path} carries the normalisation it was trained with; --mean and --std are for "
                           "models netdsl did not make", notes=[f"it takes: {meta.input_text()}"])
        if meta.normalized_inside:
            return ({"mean": (0.0,) * len(meta.mean), "std": (1.0,) * len(meta.std)},
                    "the pixels as read (8-bit values / 255); the model normalises them")
        return {"mean": meta.mean, "std": meta.std}, f"pixels normalised with its mean {list(meta.mean)}, std " \
                                                     f"{list(meta.std)}"
    if mean is None or std is None:
        raise NetError(f"{model.path} does not say how its inputs are normalised (it was not exported by netdsl)",
                       notes=["pass --mean and --std, one value per channel (or one for all), of the pixels in "
                              "[0, 1]; --mean 0 --std 1 if the model normalises its input itself"])
    return {"mean": mean, "std": std}, f"pixels normalised with --mean {list(mean)} --std {list(std)}"


def check_fits(model: ExportedModel, data: Dataset) -> None:
    """The data's images must be the file's input and its targets the task the file was trained for."""
    declared = model.input_shape
    if declared is not None and all(isinstance(d, int) for d in declared) and tuple(declared) != data.input_shape:
        raise NetError(f"{model.path} takes inputs of shape {list(declared)}, {data.name} has images of shape "
                       f"{list(data.input_shape)}")
    task = model.metadata.task if model.metadata else ""
    if task and task != data.task:
        raise NetError(f"{model.path} was trained for {TASK_WORDS[task]}; {data.name} holds {TASK_WORDS[data.task]} "
                       "targets")


def broadcast(values: tuple | None, channels: int) -> tuple | None:
    """One --mean/--std value for every channel, or one per channel."""
    if values is None or len(values) != 1:
        return values
    return tuple(values) * channels


@dataclass(frozen=True)
class ExportedEval:
    """The scores of an exported file on a dataset, with how its inputs were fed."""

    result: EvalResult
    data: Dataset
    model: ExportedModel
    fed: str  # how the pixels were normalised before the file saw them


def evaluate_exported(path: str | Path, spec: str, *, split: str = "test", task: str | None = None,
                      mean: tuple | None = None, std: tuple | None = None, threads: int | None = None,
                      limit_test: int | None = None, batch_size: int = 256) -> ExportedEval:
    """Score an exported file on a dataset split with the task's metrics (as `netdsl eval` scores weights)."""
    model = load_exported(path, threads)
    channels = len(model.metadata.mean) if model.metadata and model.metadata.mean else (
        model.input_shape[0] if model.input_shape and isinstance(model.input_shape[0], int) else 1)
    options, fed = input_normalization(model, broadcast(mean, channels), broadcast(std, channels))
    declared = model.input_shape if model.input_shape and all(isinstance(d, int) for d in model.input_shape) \
        else None  # image folders are decoded to it
    data = load_dataset(spec, task=task, limit_test=limit_test, input_shape=declared, **options)
    check_fits(model, data)
    x, y = (data.test_x, data.test_y) if split == "test" else (data.val_x, data.val_y)
    try:
        result = evaluate(model.module, x, y, batch_size=batch_size, device="cpu", objective=objective_for(data))
    except RuntimeError as err:  # a TorchScript model that does not take these images
        raise NetError(f"{model.path} fails on {data.name}'s images of shape {list(data.input_shape)}: "
                       f"{str(err).strip().splitlines()[-1][:300]}") from None
    return ExportedEval(result, data, model, fed)
