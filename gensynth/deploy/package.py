"""A trained network exported complete (`netdsl export`): the normalisation it was trained with as its first
operation, metadata that says how to feed it and read its outputs, and on request int8 weights and activations."""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from compiler.backend.export import check_target, export_network, write_onnx_metadata
from compiler.backend.lower import parameter_count
from compiler.backend.metadata import ModelMetadata, source_hash
from compiler.backend.quantize import Quantized, quantize_onnx
from compiler.backend.weights import read_metadata
from compiler.cost import network_cost
from compiler.diagnostics import NetError, NetWarning
from gensynth.data import Dataset, load_dataset
from gensynth.tasks.outputs import decoder_source, outputs_text
from gensynth.training.preprocessing import metadata_for, warn_unnormalized

DEFAULT_CALIBRATION = 512  # training images that calibrate an int8 export's activation ranges
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class Shipped:
    """One exported file: what it holds and how it was made."""

    path: Path
    target: str
    metadata: ModelMetadata
    params: int
    weights: str | None  # None: freshly initialised weights
    int8: Quantized | None = None


def input_shape(graph: nx.DiGraph) -> tuple[int, ...]:
    """The per-sample shape of the network's first input (image folders are decoded to it)."""
    return tuple(graph.nodes[graph.graph["inputs"][0]]["shape"])


def check_request(target: str, int8: bool, data: str | None, calibration: int) -> None:
    """Refuse what cannot be exported, before any work: an unknown target, int8 other than ONNX or without data."""
    check_target(target)
    if int8 and target != "onnx":
        raise NetError(f"--int8 is for ONNX exports, not {target}", notes=["use --to onnx --int8"])
    if int8 and data is None:
        raise NetError("--int8 needs calibration data: pass --data SPEC (the training split's images set the "
                       "activation ranges)", notes=[f"--calibration N chooses how many (default {DEFAULT_CALIBRATION})"])
    if calibration < 1:
        raise NetError(f"--calibration must be at least 1 image, got {calibration}")


def model_metadata(graph: nx.DiGraph, weights: str | Path | None, data: str | None, preprocess: bool,
                   data_options: dict | None = None) -> ModelMetadata:
    """The metadata an export carries: the weights' own, or (older weights, random weights) the data's statistics.

    Warns when the normalisation has to be taken from the data, or is not known at all."""
    meta = read_metadata(weights) if weights is not None else None
    if meta is None or not meta.has_normalization:
        if data is not None:
            if weights is not None:
                warn_unnormalized(weights, data)
            meta = metadata_for(graph, load_dataset(data, input_shape=input_shape(graph), **(data_options or {})))
        else:
            if weights is not None and preprocess:
                warnings.warn(f"{weights} does not say how its inputs were normalised, and no --data was given: the "
                              "export takes normalised inputs (pass --data SPEC to build that data's training "
                              "normalisation into it)", NetWarning, stacklevel=2)
            meta = ModelMetadata(network=graph.graph["name"], input_shape=input_shape(graph),
                                 source_hash=source_hash(graph))
    cost = network_cost(graph)
    outputs = {o: tuple(graph.nodes[n]["shape"]) for o, n in graph.graph["outputs"].items()}
    return dataclasses.replace(meta, network=graph.graph["name"], macs=cost.macs, params=cost.params,
                               normalized_inside=preprocess and meta.has_normalization,
                               outputs=outputs_text(meta.task, outputs, meta.input_shape))


def calibration_images(data: str, meta: ModelMetadata, count: int) -> np.ndarray:
    """`count` training images (a seeded random choice), exactly as the exported model takes them."""
    channels = len(meta.mean) or None
    options = ({"mean": (0.0,) * channels, "std": (1.0,) * channels} if meta.normalized_inside
               else {"mean": meta.mean, "std": meta.std} if meta.has_normalization else {})
    dataset: Dataset = load_dataset(data, input_shape=meta.input_shape, **options)
    check_input(dataset, meta, data)
    n = len(dataset.train_x)
    pick = np.sort(np.random.default_rng(CALIBRATION_SEED).permutation(n)[:min(count, n)])
    return dataset.train_x[pick].numpy()


def check_input(dataset: Dataset, meta: ModelMetadata, where: str) -> None:
    """NetError with both shapes when a dataset's images are not the network's input."""
    if tuple(dataset.input_shape) != tuple(meta.input_shape):
        raise NetError(f"{where} has images of shape {list(dataset.input_shape)}, the network takes "
                       f"{list(meta.input_shape)}")


def export_model(graph: nx.DiGraph, target: str, out: str | Path, *, weights: str | Path | None = None,
                 data: str | None = None, preprocess: bool = True, int8: bool = False,
                 calibration: int = DEFAULT_CALIBRATION, origin: str | None = None) -> Shipped:
    """Export a (trained) network complete: normalisation first unless preprocess is False, metadata, and with
    int8 a statically quantized ONNX file calibrated on `calibration` training images of `data`."""
    check_request(target, int8, data, calibration)
    if weights is None:
        warnings.warn("no --weights: exporting freshly initialised (random) weights", NetWarning, stacklevel=2)
    meta = model_metadata(graph, weights, data, preprocess)
    out = Path(out)
    appendix = decoder_source(meta.task, {o: tuple(graph.nodes[n]["shape"]) for o, n in graph.graph["outputs"].items()},
                              meta.input_shape, meta.class_names) if target == "pytorch" else ""
    if not int8:
        module = export_network(graph, target, out, weights, origin, meta, appendix)
        return Shipped(out, target, meta, parameter_count(module), str(weights) if weights else None)
    images = calibration_images(data, meta, calibration)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        module = export_network(graph, "onnx", float_path, weights, origin, meta)
        quantized = quantize_onnx(float_path, out, images)
    meta = dataclasses.replace(meta, quantization=quantized.summary())
    write_onnx_metadata(out, meta)
    return Shipped(out, target, meta, parameter_count(module), str(weights) if weights else None, quantized)
