"""Two networks layer by layer (`netdsl diff A.net B.net`, and each FermiNet against its prototype in report.md):
per layer the channels, kernel and stride before and after, whether it was removed or added, its MACs and params,
and subtotals per block.

Layers are matched by name (rewrites keep the names of the layers they change; a factorized conv's new depthwise
layer is `<name>_dw`). A block is a layer's first name part (`layer1` of `layer1.0.conv1`); a flat network's
layers are grouped by the resolution of the stage they compute in the first network (`28x28`, ...), and layers
after the spatial dimensions are gone form the `head`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import networkx as nx

from compiler.cost.network import compile_costs, cost_of, execution_order

LAYER_COLUMNS = ("layer", "op", "channels", "k", "stride", "MACs", "params", "")
BLOCK_COLUMNS = ("block", "MACs", "", "params", "")


def count_text(n: int) -> str:
    """A count in 3 significant digits with k/M/G and no space: 7.23M."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{prefix}"
    return str(n)


def arrow(a, b, show=str) -> str:
    """'a→b', or 'a' when they are equal."""
    return show(a) if a == b else f"{show(a)}→{show(b)}"


def change(a: int, b: int) -> str:
    """B against A in per cent ('' when equal or A is 0)."""
    return "" if a == 0 or a == b else f"{(b - a) / a:+.0%}"


@dataclass(frozen=True)
class LayerState:
    """One layer in one network: its op, output channels, kernel and stride (None where the op has none), cost."""

    op: str
    channels: int
    kernel: int | None
    stride: int | None
    macs: int
    params: int


@dataclass(frozen=True)
class LayerDiff:
    """A layer of either network: its state in A (None: added in B) and in B (None: removed)."""

    name: str
    block: str
    a: LayerState | None
    b: LayerState | None

    @property
    def status(self) -> str:
        """same, changed, removed or added."""
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        return "same" if self.a == self.b else "changed"

    def cells(self) -> list[str]:
        """Layer, op, channels, k, stride, MACs, params, and removed/added, as a table row shows them."""
        a, b = self.a, self.b
        if a is None or b is None:
            s = a or b
            return [self.name, s.op, str(s.channels), str(s.kernel or ""), str(s.stride or ""), count_text(s.macs),
                    count_text(s.params), self.status]
        return [self.name, arrow(a.op, b.op), arrow(a.channels, b.channels), arrow(a.kernel or "", b.kernel or ""),
                arrow(a.stride or "", b.stride or ""), arrow(a.macs, b.macs, count_text),
                arrow(a.params, b.params, count_text), ""]

    def to_json(self) -> dict:
        return {"name": self.name, "block": self.block, "status": self.status,
                "a": asdict(self.a) if self.a else None, "b": asdict(self.b) if self.b else None}


@dataclass(frozen=True)
class BlockDiff:
    """MACs and params of every node of a block (layers, norms, activations alike) in A and in B."""

    name: str
    macs: tuple[int, int]
    params: tuple[int, int]
    removed: bool  # the whole block is gone from B

    def cells(self) -> list[str]:
        """Block, MACs, their change, params, their change, as a table row shows them."""
        return [self.name + (" (removed)" if self.removed else ""), arrow(*self.macs, count_text), change(*self.macs),
                arrow(*self.params, count_text), change(*self.params)]


@dataclass(frozen=True)
class NetworkDiff:
    """A against B: the layers that compute (MACs > 0 in either), every block's subtotals, and the totals."""

    a: str
    b: str
    layers: list[LayerDiff]
    blocks: list[BlockDiff]
    macs: tuple[int, int]
    params: tuple[int, int]

    def total_cells(self) -> list[str]:
        """The totals as a block row."""
        return BlockDiff("total", self.macs, self.params, False).cells()

    def changed(self) -> list[LayerDiff]:
        """The layers that differ between A and B."""
        return [d for d in self.layers if d.status != "same"]

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "macs": list(self.macs), "params": list(self.params),
                "layers": [d.to_json() for d in self.layers],
                "blocks": [{"name": b.name, "macs": list(b.macs), "params": list(b.params), "removed": b.removed}
                           for b in self.blocks]}


def _states(g: nx.DiGraph) -> tuple[dict[str, LayerState], list[str]]:
    """Every node's state, and the nodes in execution order."""
    report = cost_of(compile_costs(g))
    states = {}
    for row in report.nodes():
        d = g.nodes[row["name"]]
        a = d["attrs"]
        k, stride = a.get("k"), a.get("stride")
        states[row["name"]] = LayerState(d["op"], int(d["shape"][0]) if d["shape"] else 0,
                                         k if isinstance(k, int) else None,
                                         stride if isinstance(stride, int) else None, row["macs"], row["params"])
    return states, execution_order(g)


def _own_block(g: nx.DiGraph, name: str) -> str | None:
    """A dotted name's first part; a flat name's stage (output resolution) or the head; None for no shape."""
    if "." in name:
        return name.split(".")[0]
    shape = g.nodes[name]["shape"]
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}"
    return "head" if len(shape) <= 1 else None


def _anchor(b: nx.DiGraph, name: str, in_a: set[str]) -> str | None:
    """The first layer downstream of a B-only layer that A also has (where the new layer sits in A's order)."""
    seen, frontier = set(), list(b.successors(name))
    while frontier:
        nxt = frontier.pop(0)
        if nxt in in_a:
            return nxt
        if nxt not in seen:
            seen.add(nxt)
            frontier.extend(b.successors(nxt))
    return None


def network_diff(a: nx.DiGraph, b: nx.DiGraph) -> NetworkDiff:
    """What B changed of A, layer by layer and block by block."""
    sa, order_a = _states(a)
    sb, order_b = _states(b)
    blocks = {n: _own_block(a, n) for n in order_a}
    anchors: dict[str, list[str]] = {}
    tail = []
    for n in order_b:
        if n in sa:
            continue
        anchor = _anchor(b, n, set(sa))
        blocks[n] = _own_block(b, n) if anchor is None or "." in n else blocks[anchor]
        if anchor is None:
            tail.append(n)
        else:
            anchors.setdefault(anchor, []).append(n)
    order = [m for n in order_a for m in (*anchors.get(n, ()), n)] + tail
    layers = [LayerDiff(n, blocks[n] or "", sa.get(n), sb.get(n)) for n in order
              if max(sa[n].macs if n in sa else 0, sb[n].macs if n in sb else 0) > 0]
    totals: dict[str, list[int]] = {}
    for n in order:
        if blocks[n] is None:
            continue
        t = totals.setdefault(blocks[n], [0, 0, 0, 0, 0])
        t[0] += sa[n].macs if n in sa else 0
        t[1] += sb[n].macs if n in sb else 0
        t[2] += sa[n].params if n in sa else 0
        t[3] += sb[n].params if n in sb else 0
        t[4] += n in sb
    block_rows = [BlockDiff(name, (t[0], t[1]), (t[2], t[3]), removed=t[4] == 0) for name, t in totals.items()]
    macs = (sum(s.macs for s in sa.values()), sum(s.macs for s in sb.values()))
    params = (sum(s.params for s in sa.values()), sum(s.params for s in sb.values()))
    return NetworkDiff(a.graph["name"], b.graph["name"], layers, block_rows, macs, params)
