"""Recover blocks from an imported network: every module class instantiated more than once with the same structure
becomes one parameterised `block`, whose varying attributes are its parameters.

A scope is a module instance (`layer1.0`, class BasicBlock); its nodes are those named under its path. Two
instances have the same structure when their nodes have the same local names, ops and wiring, and their child
scopes the same structure in turn; attribute values may differ. An instance becomes a block call when its
nodes are read from outside only through one output. Everything else is written inline.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import networkx as nx

from compiler.ir import topo_order
from compiler.ops import OPS
from netdsl.importers.imported import NET_KEYWORDS, ImportedModel, net_name
from netdsl.values import FUNCTIONS

# Attributes that count channels: they are required block parameters, passed first, and may be multiples of each other.
CHANNEL_ATTRS = frozenset({"out", "groups", "sections"})


@dataclass
class Item:
    """One step of a body: an op node, or a call of a block standing for a module instance."""

    name: str  # the IR node (op) or the module path (call)
    block: str | None  # the called block, None for an op
    op: str
    values: dict  # op attributes, or the call's argument values (every parameter)
    inputs: list[str]  # IR nodes read from outside the item, in order
    output: str  # the IR node holding the item's value
    covers: frozenset


@dataclass
class Block:
    """A recovered block: its parameters (name -> default or None), inputs, and per-slot expressions."""

    name: str
    cls: str
    instances: list[str]
    params: dict[str, object] = field(default_factory=dict)
    channel_params: set[str] = field(default_factory=set)
    exprs: dict[tuple[str, str], str] = field(default_factory=dict)  # (local item name, attr) -> expression
    input_names: tuple[str, ...] = ()


class Recovery:
    """The analysis: scopes, their structure keys, which instances are block calls, and the blocks."""

    def __init__(self, imported: ImportedModel):
        self.g = imported.graph
        self.order = {n: i for i, n in enumerate(topo_order(self.g))}
        nodes = list(self.order)
        prefixes = {".".join(n.split(".")[:i]) for n in nodes for i in range(1, n.count(".") + 1)}
        self.scopes = {p: s for p, s in imported.scopes.items() if p in prefixes and p not in self.order}
        self.parent = {p: self._scope_of(p) for p in self.scopes}
        self.direct: dict[str, list[str]] = {p: [] for p in ["", *self.scopes]}  # nodes by scope, in topo order
        for n in nodes:
            if self.g.nodes[n]["op"] != "input":
                self.direct[self._scope_of(n)].append(n)
        self.children: dict[str, list[str]] = {p: [] for p in ["", *self.scopes]}
        for p, parent in self.parent.items():
            self.children[parent].append(p)
        self.covers: dict[str, frozenset] = {}
        self.externals: dict[str, list[str]] = {}
        self.outputs: dict[str, list[str]] = {}
        for p in sorted(self.scopes, key=lambda s: -s.count(".")):
            self._analyse(p)
        self.keys: dict[str, tuple] = {}
        for p in sorted(self.scopes, key=lambda s: -s.count(".")):
            self.keys[p] = self._key(p)
        self.blocks: dict[tuple, Block] = {}
        self.block_of: dict[str, Block] = {}
        self.call_values: dict[str, dict] = {}
        self._choose_blocks()

    # ---- analysis ---------------------------------------------------------------------------------------
    def _scope_of(self, name: str) -> str:
        segs = name.split(".")
        for i in range(len(segs) - 1, 0, -1):
            prefix = ".".join(segs[:i])
            if prefix in self.scopes:
                return prefix
        return ""

    def _analyse(self, p: str) -> None:
        covers = set(self.direct[p])
        for c in self.children[p]:
            covers |= self.covers[c]
        self.covers[p] = frozenset(covers)
        ordered = sorted(covers, key=self.order.__getitem__)
        externals = []
        for n in ordered:
            for i in self.g.nodes[n]["inputs"]:
                if i not in covers and i not in externals:
                    externals.append(i)
        self.externals[p] = externals
        graph_outputs = set(self.g.graph["outputs"].values())
        self.outputs[p] = [n for n in ordered if n in graph_outputs
                           or any(s not in covers for s in self.g.successors(n))]

    def blockable(self, p: str) -> bool:
        """A module instance that reads from outside, is read through one output and holds more than one layer."""
        return (bool(self.scopes[p].cls) and len(self.outputs[p]) == 1 and bool(self.externals[p])
                and len(self.covers[p]) > 1)

    def local(self, p: str, name: str) -> str:
        return name[len(p) + 1:] if p else name

    def _ref(self, p: str, name: str) -> tuple:
        if p and name not in self.covers[p]:
            return ("in", self.externals[p].index(name))
        return ("node", self.local(p, name))

    def _anchor(self, p: str) -> int:
        outs = self.outputs[p] or sorted(self.covers[p], key=self.order.__getitem__)
        return self.order[outs[-1]]

    def _key(self, p: str) -> tuple:
        parts = []
        for n in self.direct[p]:
            d = self.g.nodes[n]
            parts.append((self.order[n], ("op", self.local(p, n), d["op"], tuple(sorted(d["attrs"])),
                                         tuple(self._ref(p, i) for i in d["inputs"]))))
        for c in self.children[p]:
            parts.append((self._anchor(c), ("scope", self.local(p, c), self.scopes[c].cls, self.keys[c], tuple(self._ref(p, i) for i in self.externals[c]),
                                            tuple(self.local(p, o) for o in self.outputs[c]))))
        return tuple(k for _, k in sorted(parts, key=lambda kv: kv[0]))

    # ---- items --------------------------------------------------------------------------------------------
    def items(self, p: str) -> list[Item]:
        """The body of scope p: its own nodes, and each child as a block call or inlined."""
        out = []
        for n in self.direct[p]:
            d = self.g.nodes[n]
            out.append((self.order[n], Item(n, None, d["op"], dict(d["attrs"]), list(d["inputs"]), n,
                                            frozenset([n]))))
        for c in self.children[p]:
            if c in self.block_of:
                block = self.block_of[c]
                out.append((self._anchor(c), Item(c, block.name, block.name, self.call_values[c],
                                                  list(self.externals[c]), self.outputs[c][0], self.covers[c])))
            else:
                out.extend((self.order[i.output], i) for i in self.items(c))
        return [i for _, i in sorted(out, key=lambda kv: kv[0])]

    # ---- blocks -------------------------------------------------------------------------------------------
    def _height(self, p: str) -> int:
        return 1 + max((self._height(c) for c in self.children[p]), default=0)

    def _choose_blocks(self) -> None:
        groups: dict[tuple, list[str]] = {}
        for p in sorted(self.scopes, key=lambda s: self._anchor(s)):
            if self.blockable(p):
                groups.setdefault((self.scopes[p].cls, self.keys[p]), []).append(p)
        chosen = {k: v for k, v in groups.items() if len(v) >= 2}
        names = _block_names(chosen, self)
        for key in sorted(chosen, key=lambda k: max(self._height(p) for p in chosen[k])):
            block = Block(names[key], key[0], chosen[key], input_names=self._inputs_named(chosen[key][0]))
            for p in block.instances:
                self.block_of[p] = block
            self._parameterise(block)
            self.blocks[key] = block

    def _inputs_named(self, p: str) -> tuple[str, ...]:
        count = len(self.externals[p])
        if count == 1:
            return ("in",)
        names = [net_name(n, f"in{i}") for i, n in enumerate(self.scopes[p].input_names[:count])]
        if len(names) < count or len(set(names)) < count or "in" in names:
            names = [f"in{i}" for i in range(count)]
        return tuple(names)

    def _parameterise(self, block: Block) -> None:
        """Slots whose values differ between instances become parameters (equal vectors share one)."""
        bodies = {p: {self.local(p, i.name): i for i in self.items(p)} for p in block.instances}
        first = bodies[block.instances[0]]
        vectors: dict[tuple[str, str], tuple] = {}
        for local, item in first.items():
            for attr in item.values:
                vectors[(local, attr)] = tuple(bodies[p][local].values[attr] for p in block.instances)
        # the slot that sets the block's output channels is `out`: it goes first, so others may derive from it
        width = tuple(self.g.nodes[self.outputs[p][0]]["shape"][0] for p in block.instances)
        first_out = next((slot for slot, v in vectors.items() if slot[1] == "out" and v == width), None)
        if first_out is not None:
            vectors = {first_out: vectors[first_out], **vectors}
        by_vector: dict[tuple, str] = {}
        kinds: dict[str, str] = {}
        taken = set(OPS) | set(FUNCTIONS) | NET_KEYWORDS | {"choice", "in", *block.input_names}
        for (local, attr), vector in vectors.items():
            if len(set(map(_hashable, vector))) == 1:
                continue
            key = tuple(map(_hashable, vector))
            if key in by_vector:
                block.exprs[(local, attr)] = by_vector[key]
                continue
            derived = _derive(attr, local, vector, by_vector, kinds, block.exprs)
            if derived is not None:
                block.exprs[(local, attr)] = derived
                continue
            name = _param_name(attr, local, taken, first_out in (None, (local, attr)))
            taken.add(name)
            by_vector[key] = name
            kinds[name] = attr
            block.exprs[(local, attr)] = name
            is_channel = attr in CHANNEL_ATTRS or (first[local].block is not None and attr in
                                                   self._callee_channels(first[local].block))
            if is_channel:
                block.channel_params.add(name)
            common, count = Counter(map(_hashable, vector)).most_common(1)[0]
            default = vector[[_hashable(v) for v in vector].index(common)]
            block.params[name] = None if is_channel or count < 2 else default
        order = sorted(block.params, key=lambda n: n not in block.channel_params)
        block.params = {n: block.params[n] for n in order}
        for i, p in enumerate(block.instances):
            values = {}
            for (local, attr), expr in block.exprs.items():
                if expr in block.params:
                    values[expr] = vectors[(local, attr)][i]
            self.call_values[p] = values

    def _callee_channels(self, block_name: str) -> set[str]:
        for b in self.blocks.values():
            if b.name == block_name:
                return b.channel_params
        return set()


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def _param_name(attr: str, local: str, taken: set[str], plain: bool) -> str:
    """`out` for the output width, `stride` for the first stride...; `out_conv_0` for another `out`."""
    base = net_name(attr, "p")
    if base not in taken and (plain or attr != "out"):
        return base
    name = net_name(f"{base}_{local.replace('.', '_')}", "p")  # out_conv_0: the `out` of conv.0
    i = 2
    while name in taken:
        name = f"{base}_{local.replace('.', '_')}_{i}"
        i += 1
    return name


def _derive(attr: str, local: str, vector: tuple, by_vector: dict, kinds: dict, exprs: dict) -> str | None:
    """An expression over existing parameters that gives `vector` in every instance, for the common cases:
    a channel count that is a multiple or a fraction of another, and a conv's padding (k - 1) // 2."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vector):
        return None
    if attr == "padding":
        k = exprs.get((local, "k"))
        if k is not None and k.isidentifier():
            ks = next((vec for vec, name in by_vector.items() if name == k), None)
            if ks and all(isinstance(x, int) and (x - 1) // 2 == v for x, v in zip(ks, vector)):
                return f"({k} - 1) // 2"
    if attr not in CHANNEL_ATTRS:
        return None
    for other, name in by_vector.items():
        if kinds.get(name) not in CHANNEL_ATTRS or not all(isinstance(x, int) and x > 0 for x in other):
            continue
        ratios = {v / x for x, v in zip(other, vector)}
        if len(ratios) == 1:
            r = ratios.pop()
            if r > 1 and r.is_integer():
                return f"{name} * {int(r)}"
            if 0 < r < 1 and (1 / r).is_integer() and all(x % int(1 / r) == 0 for x in other):
                return f"{name} // {int(1 / r)}"
    return None


def _block_names(groups: dict[tuple, list[str]], rec: Recovery) -> dict[tuple, str]:
    """The class name for the most used structure of a class; `Class_<what it adds>` or `Class_2` for the others."""
    names: dict[tuple, str] = {}
    by_class: dict[str, list[tuple]] = {}
    for key in groups:
        by_class.setdefault(key[0], []).append(key)
    used = set()
    for cls, keys in by_class.items():
        keys.sort(key=lambda k: -len(groups[k]))
        base = net_name(cls, "Block")
        main = {rec.local(groups[keys[0]][0], c).split(".")[0] for c in rec.covers[groups[keys[0]][0]]}
        for i, key in enumerate(keys):
            if i == 0:
                name = base
            else:
                mine = {rec.local(groups[key][0], c).split(".")[0] for c in rec.covers[groups[key][0]]}
                extra = sorted(mine - main)
                name = f"{base}_{'_'.join(extra)}" if extra and len(extra) <= 2 else f"{base}_{i + 1}"
            name = net_name(name, "Block")
            while name in used or name in OPS or name in FUNCTIONS:
                name += "_"
            used.add(name)
            names[key] = name
    return names


def block_graph(rec: Recovery) -> nx.DiGraph:
    """Which block calls which (for writing definitions before their callers)."""
    g = nx.DiGraph()
    for block in rec.blocks.values():
        g.add_node(block.name)
        for item in rec.items(block.instances[0]):
            if item.block:
                g.add_edge(item.block, block.name)
    return g
