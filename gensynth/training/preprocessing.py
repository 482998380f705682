"""The preprocessing a network's weights were trained with: written into every weights file netdsl makes, and read
back by everything that uses weights, so that data is always normalised as it was in training.

    save_weights(model, path, metadata_for(model, data))      # train, synth, generate
    data = data_for_weights(spec, path, graph)                # eval (synth --weights, generate --train and
                                                              # export read normalization_options or the metadata)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import networkx as nx
from torch import nn

from compiler.backend.metadata import ModelMetadata, source_hash
from compiler.backend.weights import read_metadata
from compiler.diagnostics import NetError, NetWarning
from gensynth.data import Dataset, load_dataset


def metadata_for(model: nn.Module | nx.DiGraph, data: Dataset) -> ModelMetadata:
    """What weights trained on `data` need to be used: its normalisation, input, task, class names, source hash."""
    graph = model if isinstance(model, nx.DiGraph) else getattr(model, "ir", None)
    name = graph.graph["name"] if graph is not None else type(model).__name__
    return ModelMetadata(network=name, input_shape=tuple(data.input_shape), mean=tuple(data.mean),
                         std=tuple(data.std), task=data.task, class_names=tuple(data.class_names), data=data.name,
                         source_hash=source_hash(graph) if graph is not None else "")


def warn_unnormalized(weights: str | Path, spec: str) -> None:
    """The warning for weights that do not say how their inputs were normalised."""
    warnings.warn(f"{weights} does not say how its inputs were normalised (written by an older netdsl or another "
                  f"tool); using the training statistics of {spec}", NetWarning, stacklevel=3)


def normalization_options(weights: str | Path, spec: str, graph: nx.DiGraph | None = None) -> dict:
    """load_dataset's mean and std for data used with these weights: the ones they were trained with.

    Weights without metadata (written before it existed, or by another tool) get a warning and {} (the data's own
    statistics); weights trained for another source of the network get a warning."""
    meta = read_metadata(weights)
    if meta is None or not meta.has_normalization:
        warn_unnormalized(weights, spec)
        return {}
    if graph is not None and meta.source_hash and meta.source_hash != source_hash(graph):
        warnings.warn(f"{weights} was trained for a different source of {meta.network} (source hash "
                      f"{meta.source_hash}, this network {source_hash(graph)})", NetWarning, stacklevel=2)
    return {"mean": meta.mean, "std": meta.std}


def data_for_weights(spec: str, weights: str | Path, graph: nx.DiGraph | None = None, **options) -> Dataset:
    """The dataset normalised as the weights were trained (see normalization_options)."""
    normalization = normalization_options(weights, spec, graph)
    try:
        return load_dataset(spec, **normalization, **options)
    except NetError as err:
        if normalization:
            meta = read_metadata(weights)
            err.notes.append(f"{weights} was trained on {meta.data or 'unknown data'}, inputs "
                             f"{list(meta.input_shape)}")
        raise
