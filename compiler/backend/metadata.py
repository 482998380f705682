"""What a trained network needs to be used, carried inside its files: the input normalisation it was trained with,
input size and channels, task, class names, netdsl version and a hash of its source.

Weights files keep it as safetensors metadata, ONNX files as metadata_props, TorchScript files as an extra file
(`netdsl.json`), the standalone PyTorch source as constants. All of them use the same flat string map
(`to_strings`), so one reader (`from_strings`) serves every format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata as distribution

import networkx as nx

from compiler.diagnostics import NetError
from compiler.printer import print_network

PREFIX = "netdsl."
EXTRA_FILE = "netdsl.json"  # the TorchScript extra file holding the same map


def netdsl_version() -> str:
    """The installed netdsl's version (the distribution's metadata; the compiler imports nothing of netdsl)."""
    try:
        return distribution.version("netdsl")
    except distribution.PackageNotFoundError:  # pragma: no cover (running from a bare checkout)
        return "unknown"


def source_hash(g: nx.DiGraph) -> str:
    """sha256 of the network's canonical .net text (compiler.printer), its name left out: first 16 hex digits.

    The name is left out so that a FermiNet's weights (saved under the prototype's name) and its fermi-N.net file
    (renamed) hash alike; any change to a layer, shape or connection changes the hash."""
    named = g.copy()
    named.graph["name"] = "Network"
    return hashlib.sha256(print_network(named).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelMetadata:
    """How to feed a trained network and read its outputs. Empty mean/std: the normalisation is unknown.

    `normalized_inside` is true for an exported file whose first operation is the normalisation: it then takes
    float pixels in [0, 1] (8-bit images divided by 255), NCHW, channels in the data's order."""

    network: str
    input_shape: tuple[int, ...]  # per sample: channels, height, width
    mean: tuple[float, ...] = ()  # per channel, of the training split's [0, 1] pixels
    std: tuple[float, ...] = ()
    task: str = ""  # classify | segment | detect ("" unknown: random weights)
    class_names: tuple[str, ...] = ()
    data: str = ""  # the data spec it was trained on
    version: str = dataclasses.field(default_factory=netdsl_version)
    source_hash: str = ""
    normalized_inside: bool = False  # exports only: normalisation is the model's first op
    macs: int | None = None  # exports only
    params: int | None = None
    outputs: str = ""  # exports only: what the outputs are and how to decode them
    quantization: str = ""  # int8 exports only: how it was quantized, which ops stay float

    @property
    def has_normalization(self) -> bool:
        return bool(self.mean) and len(self.mean) == len(self.std)

    def input_text(self) -> str:
        """The input as a deployer needs to know it: layout, channel order, scaling, normalisation."""
        parts = []
        if self.input_shape:
            c = self.input_shape[0]
            order = {1: "one grey channel", 3: "channels in RGB order"}.get(c, f"{c} channels in the data's order")
            parts.append(f"float32 [N, {', '.join(map(str, self.input_shape))}] (NCHW), {order}")
        if self.normalized_inside:
            parts.append("pixels in [0, 1] (8-bit values / 255); the model normalises them itself "
                         f"(mean {_floats(self.mean)}, std {_floats(self.std)})")
        elif self.has_normalization:
            parts.append(f"pixels in [0, 1] (8-bit values / 255), then (x - mean) / std per channel with mean "
                         f"{_floats(self.mean)}, std {_floats(self.std)}")
        else:
            parts.append("normalisation unknown")
        return "; ".join(parts)

    def to_strings(self) -> dict[str, str]:
        """The flat string map every format stores (unset optional fields left out)."""
        out = {
            "network": self.network, "input_shape": json.dumps(list(self.input_shape)),
            "mean": json.dumps(list(self.mean)), "std": json.dumps(list(self.std)), "task": self.task,
            "class_names": json.dumps(list(self.class_names)), "data": self.data, "version": self.version,
            "source_hash": self.source_hash, "normalized_inside": json.dumps(self.normalized_inside),
            "input": self.input_text(),
        }
        for key in ("macs", "params"):
            if getattr(self, key) is not None:
                out[key] = str(getattr(self, key))
        for key in ("outputs", "quantization"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return {PREFIX + k: v for k, v in out.items()}

    @classmethod
    def from_strings(cls, strings: Mapping[str, str], where: str) -> ModelMetadata | None:
        """The metadata in a string map, or None when it holds none of ours; NetError naming `where` if damaged."""
        own = {k[len(PREFIX):]: v for k, v in strings.items() if k.startswith(PREFIX)}
        if "input_shape" not in own:
            return None
        try:
            values = {
                "network": own.get("network", ""),
                "input_shape": tuple(int(d) for d in json.loads(own["input_shape"])),
                "mean": tuple(float(v) for v in json.loads(own.get("mean", "[]"))),
                "std": tuple(float(v) for v in json.loads(own.get("std", "[]"))),
                "task": own.get("task", ""),
                "class_names": tuple(str(n) for n in json.loads(own.get("class_names", "[]"))),
                "data": own.get("data", ""), "version": own.get("version", "unknown"),
                "source_hash": own.get("source_hash", ""),
                "normalized_inside": bool(json.loads(own.get("normalized_inside", "false"))),
                "macs": int(own["macs"]) if "macs" in own else None,
                "params": int(own["params"]) if "params" in own else None,
                "outputs": own.get("outputs", ""), "quantization": own.get("quantization", ""),
            }
        except (ValueError, TypeError) as err:
            raise NetError(f"{where}: its netdsl metadata is damaged ({err})") from None
        meta = cls(**values)
        if len(meta.mean) != len(meta.std) or any(s <= 0 for s in meta.std):
            raise NetError(f"{where}: its netdsl metadata is damaged (mean {list(meta.mean)}, std {list(meta.std)})")
        return meta

    def to_json(self) -> str:
        return json.dumps(self.to_strings(), indent=1)


def _floats(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"
