"""What every importer produces: the network as compiler IR, its trained weights, and the module tree it came from."""

from __future__ import annotations

import functools
import keyword
import re
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from compiler.diagnostics import NetError
from compiler.ir import add_node, new_graph, remove_nodes
from compiler.shapes import fmt, infer_node_shape, one_or_pair

# Words the .net grammar reserves: never an input, output or network name.
NET_KEYWORDS = frozenset({"fixed", "as", "in", "input", "output", "let", "block", "network", "import", "from",
                          "repeat", "true", "false", "none"})


@dataclass(frozen=True)
class Scope:
    """A module instance whose forward produced some of the network's nodes: its path, class, and forward's inputs."""

    path: str
    cls: str  # the class name, e.g. "BasicBlock"; "" for a plain container (Sequential, ModuleList)
    input_names: tuple[str, ...] = ()


@dataclass
class ImportedModel:
    """A network read from another framework.

    graph    validated compiler IR with shapes; node names follow the source's module paths
    weights  the lowered network's state_dict as numpy arrays, keyed by node name (`layer1.0.conv1.weight`)
    scopes   {module path: Scope} for the modules that are not layers themselves (block recovery reads them)
    source   what was imported, for the written file's header
    notes    things the user should know (renamed keys, ignored ops)
    """

    graph: nx.DiGraph
    weights: dict[str, np.ndarray]
    scopes: dict[str, Scope] = field(default_factory=dict)
    source: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Shuffling:
    """A channel shuffle in progress: the channels viewed as [groups, C/groups] (transposed once `swapped`); the
    reshape back to [C, H, W] completes it."""

    source: str
    groups: int
    swapped: bool


def window_value(value) -> int | list[int]:
    """A kernel size, stride, padding or dilation as the language writes it: one int, or [h, w] where they differ."""
    if isinstance(value, int):
        return value
    values = [int(v) for v in value]
    return one_or_pair(values[0], values[-1])


def net_name(text: str, fallback: str) -> str:
    """A valid .net name (network, input or output) from any text: `input` -> `input_`, `1x` -> `_1x`."""
    name = re.sub(r"\W", "_", text) or fallback
    if name[0].isdigit():
        name = "_" + name
    if name in NET_KEYWORDS or keyword.iskeyword(name):
        name += "_"
    return name


_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


@functools.lru_cache(maxsize=4096)
def node_segment(text: str) -> str:
    """One segment of a node name: a word or an integer (module names are; anything else is made so)."""
    if _SEGMENT.fullmatch(text):
        return text
    return re.sub(r"\W", "_", text) or "_"


class GraphBuilder:
    """Adds nodes one at a time with unique names, inferring each shape and checking it against the source's."""

    def __init__(self, name: str, where: str):
        self.g = new_graph(name)
        self.where = where  # "model.onnx" or "model.py:Net", for messages
        self.counts: dict[str, int] = {}

    def fresh(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ... if taken (the .net builder's own scheme)."""
        i = self.counts.get(base, 0)
        name = base if i == 0 else f"{base}_{i}"
        while name in self.g:
            i += 1
            name = f"{base}_{i}"
        self.counts[base] = i
        return name

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        add_node(self.g, name, "input", {"shape": [int(s) for s in shape]}, [])
        self.g.nodes[name]["shape"] = tuple(int(s) for s in shape)
        return name

    def add(self, base: str, op: str, attrs: dict, inputs: list[str], expected: tuple[int, ...] | None,
            origin: str) -> str:
        """A node named `base` (deduplicated); its inferred shape must equal `expected` (the source's)."""
        name = self.fresh(base)
        add_node(self.g, name, op, attrs, inputs)
        try:
            shape = infer_node_shape(self.g, name)
        except NetError as err:
            raise NetError(f"{self.where}: {origin}: {err.message}") from None
        if expected is not None and tuple(shape) != tuple(expected):
            raise NetError(f"{self.where}: {origin}: netdsl's {op} gives shape {fmt(shape)} where the model's "
                           f"gives {fmt(expected)}", notes=["this is a bug in the importer; please report it"])
        self.g.nodes[name]["shape"] = tuple(shape)
        return name


def dead_nodes(g: nx.DiGraph) -> list[str]:
    """Remove the nodes no output depends on (an op whose result the model drops); returns their names."""
    live = set(g.graph["outputs"].values())
    for out in list(live):
        live |= nx.ancestors(g, out)
    dead = [n for n in g.nodes if n not in live]
    remove_nodes(g, dead)
    return dead


def unsupported(what: str, origin: str, supported: list[str], notes: list[str] | None = None) -> NetError:
    """The error for a construct netdsl cannot express: what, where it came from, and what is supported."""
    return NetError(f"{origin}: {what}", notes=[*(notes or []), "supported: " + ", ".join(sorted(supported))])
