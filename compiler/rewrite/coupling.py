"""Channel coupling: which tensors' channel counts must change together, and rewriting a network to new widths.

Every tensor's channel count (dim 0 of its per-sample shape) is an expression over *channel groups*:

    ("var", g)           the width of group g (conv/linear/conv_transpose outputs start a group; residual adds,
                         depthwise convs and pass-through ops such as bn, activations and pools join it)
    ("sum", terms)       a channel concat: the sum of its inputs
    ("part", e, n)       one of n equal parts of a channel split
    ("scale", e, k)      k times e (dwconv multiplier, flatten of [C, H, W] -> C*H*W features)
    ("const", c)         a count that never changes (a split into listed sizes)

A group is fixed when it holds a network input, a `fixed` node, anything an output reads, a broadcast operand,
or when a divisibility rule (grouped conv, channel_shuffle, equal split) cannot be kept by multiples of its
width alone; a free group's width must be a multiple of its `multiple_of`. Each op's expression comes from the
rule for its channels trait (compiler.ops), in CHANNEL_RULES.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ir import copy_graph, topo_order
from compiler.ops import OPS
from compiler.shapes import infer_shapes

Expr = tuple


@dataclass(frozen=True)
class ChannelGroup:
    """Tensors whose channel count is one variable: the rewrite unit of width search."""

    id: int
    members: tuple[str, ...]  # nodes whose output has exactly this group's channel count
    writers: tuple[str, ...]  # nodes whose attributes apply_widths rewrites (conv `out`, depthwise `groups`)
    channels: int  # the prototype's count
    fixed: bool
    reason: str = ""  # why it is fixed; "" when free
    multiple_of: int = 1  # a free width must be a multiple of this


@dataclass(frozen=True)
class ChannelPlan:
    """The groups, and every node's output channel count as an expression over group ids."""

    groups: tuple[ChannelGroup, ...]
    exprs: dict[str, Expr]
    depthwise: frozenset[str]  # conv nodes whose groups follow their channels

    def free_groups(self) -> list[ChannelGroup]:
        return [grp for grp in self.groups if not grp.fixed]


def expr_vars(e: Expr) -> set[int]:
    """The group ids an expression depends on."""
    if e[0] == "var":
        return {e[1]}
    if e[0] == "sum":
        return set().union(*(expr_vars(t) for t in e[1]))
    if e[0] in ("part", "scale"):
        return expr_vars(e[1])
    return set()


def evaluate(e: Expr, widths) -> int:
    """The channel count of an expression given every group's width (a mapping or sequence by group id)."""
    kind = e[0]
    if kind == "var":
        return widths[e[1]]
    if kind == "sum":
        return sum(evaluate(t, widths) for t in e[1])
    if kind == "part":
        return evaluate(e[1], widths) // e[2]
    if kind == "scale":
        return evaluate(e[1], widths) * e[2]
    return e[1]


def _substitute(e: Expr, root) -> Expr:
    kind = e[0]
    if kind == "var":
        return ("var", root(e[1]))
    if kind == "sum":
        return ("sum", tuple(_substitute(t, root) for t in e[1]))
    if kind in ("part", "scale"):
        return (kind, _substitute(e[1], root), e[2])
    return e


def producer_order(g: nx.DiGraph) -> list[str]:
    """compiler.ir.topo_order, without the sort when insertion order already puts producers first (it usually does)."""
    seen: set[str] = set()
    for name, d in g.nodes(data=True):
        if not seen.issuperset(d["inputs"]):
            return topo_order(g)
        seen.add(name)
    return list(g.nodes)


class _Builder:
    """One walk over the graph collecting variables, unions, freezes and divisibility requirements."""

    def __init__(self, g: nx.DiGraph):
        self.g = g
        self.parent: list[int] = []
        self.proto: list[int] = []
        self.exprs: dict[str, Expr] = {}
        self.writers: dict[str, int] = {}
        self.depthwise: set[str] = set()
        self.equal: list[tuple[str, list[Expr]]] = []
        self.freezes: list[tuple[Expr, str]] = []
        self.requires: list[tuple[Expr, int, str]] = []

    def new_var(self, channels: int) -> Expr:
        self.parent.append(len(self.parent))
        self.proto.append(channels)
        return ("var", len(self.parent) - 1)

    def root(self, v: int) -> int:
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def walk(self, order: list[str]) -> None:
        g, exprs = self.g, self.exprs
        data = dict(g.nodes(data=True))
        for name in order:
            d = data[name]
            inputs = d["inputs"]
            exprs[name] = self.node_expr(name, d, [exprs[i] for i in inputs], [data[i]["shape"] for i in inputs])
            if d.get("fixed"):
                self.freezes.append((exprs[name], f"'{name}' is marked fixed"))
        for out, node in g.graph["outputs"].items():
            self.freezes.append((self.exprs[node], f"it feeds output '{out}'"))

    def node_expr(self, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
        rule = _RULE.get(d["op"])
        if rule is None:
            raise NetError(f"channel coupling does not know op '{d['op']}' (node '{name}')", d.get("span"))
        return rule(self, name, d, ins, in_shapes)


def _source(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    e = b.new_var(d["shape"][0])
    b.freezes.append((e, f"it is the network input '{name}'"))
    return e


def _width(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    op, a = d["op"], d["attrs"]
    e = b.new_var(a["out"])
    b.writers[name] = e[1]
    if a.get("groups", 1) > 1:
        why = f"{op} '{name}' has groups={a['groups']}"
        b.requires += [(ins[0], a["groups"], why), (e, a["groups"], why)]
    return e


def _conv(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    if is_depthwise_conv(d, in_shapes[0]):
        b.depthwise.add(name)
        b.writers[name] = -1
        return ins[0]
    return _width(b, name, d, ins, in_shapes)


def _depthwise(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    m = d["attrs"]["multiplier"]
    return ins[0] if m == 1 else ("scale", ins[0], m)


def _flatten(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    rest = math.prod(in_shapes[0][1:])
    return ins[0] if rest == 1 else ("scale", ins[0], rest)


def _split(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    sections = d["attrs"]["sections"]
    if isinstance(sections, int):
        if sections == 1:
            return ins[0]
        b.requires.append((ins[0], sections, f"split '{name}' makes {sections} equal parts"))
        return ("part", ins[0], sections)
    b.freezes.append((ins[0], f"split '{name}' cuts it into the listed sizes {sections}"))
    return ("const", d["shape"][0])


def _concat(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    if d["attrs"]["dim"] % len(d["shape"]) == 0:
        return ("sum", tuple(ins))
    return _broadcast(b, name, d, ins, in_shapes)


def _broadcast(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    shape = d["shape"]
    full = [len(s) == len(shape) and s[0] == shape[0] for s in in_shapes]
    for e, is_full in zip(ins, full):
        if not is_full:
            b.freezes.append((e, f"it is a broadcast operand of {d['op']} '{name}'"))
    coupled = [e for e, is_full in zip(ins, full) if is_full]
    b.equal.append((name, coupled))
    return coupled[0]


def _shuffle(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    groups = d["attrs"]["groups"]
    b.requires.append((ins[0], groups, f"channel_shuffle '{name}' has groups={groups}"))
    return ins[0]


def _same(b: _Builder, name: str, d: dict, ins: list[Expr], in_shapes: list[tuple]) -> Expr:
    return ins[0]


# channels trait (compiler.ops.TRAITS["channels"]) -> rule(builder, name, node, input exprs, input shapes) -> expr
CHANNEL_RULES = {
    "source": _source, "conv": _conv, "width": _width, "depthwise": _depthwise, "same": _same, "shuffle": _shuffle,
    "flatten": _flatten, "split": _split, "concat": _concat, "broadcast": _broadcast,
}
_RULE = {name: CHANNEL_RULES[spec.channels] for name, spec in OPS.items() if spec.channels in CHANNEL_RULES}


def is_depthwise_conv(d: dict, in_shape: tuple) -> bool:
    """A conv (channels trait "conv") with groups = input channels = output channels > 1: it follows its input."""
    return OPS[d["op"]].channels == "conv" and 1 < d["attrs"]["groups"] == in_shape[0] == d["attrs"]["out"]


def _requirement(e: Expr, d: int, frozen: set[int], proto: list[int], needs: dict[int, int]) -> set[int]:
    """Add to `needs` (group -> divisor) what keeps `e` a multiple of d; return the groups that make it fail."""
    free = expr_vars(e) - frozen
    if d == 1 or not free:
        return set()  # a fixed count: the prototype's shapes already satisfy it
    kind = e[0]
    if kind == "var":
        if proto[e[1]] % d:
            return {e[1]}
        needs[e[1]] = math.lcm(needs.get(e[1], 1), d)
        return set()
    if kind == "sum":
        if sum(evaluate(t, proto) for t in e[1] if not expr_vars(t) - frozen) % d:
            return free
        return set().union(*(_requirement(t, d, frozen, proto, needs) for t in e[1]))
    if kind == "part":
        return _requirement(e[1], d * e[2], frozen, proto, needs)
    return _requirement(e[1], d // math.gcd(d, e[2]), frozen, proto, needs)  # scale


def channel_plan(g: nx.DiGraph, order: list[str] | None = None) -> ChannelPlan:
    """Group the network's tensors by shared channel count (see the module doc for the rules)."""
    b = _Builder(g)
    b.walk(order or producer_order(g))
    for _, coupled in b.equal:
        for e in coupled[1:]:
            if e[0] == "var" and coupled[0][0] == "var":
                b.union(e[1], coupled[0][1])
    reasons: dict[int, str] = {}

    def freeze(e: Expr, why: str) -> bool:
        new = expr_vars(_substitute(e, b.root)) - reasons.keys()
        for v in new:
            reasons[v] = why
        return bool(new)

    for e, why in b.freezes:
        freeze(e, why)
    for name, coupled in b.equal:
        canon = {_substitute(e, b.root) for e in coupled}
        if len(canon) > 1:
            for e in coupled:
                freeze(e, f"the operands of '{name}' are not all single groups")
    requires = [(_substitute(e, b.root), d, why) for e, d, why in b.requires]
    while True:  # freeze the groups that break a divisibility rule until multiples keep every rule
        needs: dict[int, int] = {}
        failed = False
        for e, d, why in requires:
            culprits = _requirement(e, d, set(reasons), b.proto, needs)
            for v in culprits:
                reasons[v] = f"{why}, which multiples of this width alone cannot keep"
            failed |= bool(culprits)
        if not failed:
            break
    return _assemble(b, reasons, needs)


def _assemble(b: _Builder, reasons: dict[int, str], needs: dict[int, int]) -> ChannelPlan:
    roots = sorted({b.root(v) for v in range(len(b.parent))})
    ids = {r: i for i, r in enumerate(roots)}
    group_id = [ids[b.root(v)] for v in range(len(b.parent))]
    renamed: dict[Expr, Expr] = {}  # pass-through nodes share their input's expression: rename each once
    exprs = {}
    for n, e in b.exprs.items():
        if e not in renamed:
            renamed[e] = ("var", group_id[e[1]]) if e[0] == "var" else _substitute(e, group_id.__getitem__)
        exprs[n] = renamed[e]
    members: dict[int, list[str]] = {i: [] for i in ids.values()}
    writers: dict[int, list[str]] = {i: [] for i in ids.values()}
    for name, e in exprs.items():
        if e[0] == "var":
            members[e[1]].append(name)
            if name in b.writers:
                writers[e[1]].append(name)
    groups = tuple(
        ChannelGroup(ids[r], tuple(members[ids[r]]), tuple(writers[ids[r]]), b.proto[r], r in reasons,
                     reasons.get(r, ""), 1 if r in reasons else needs.get(r, 1))
        for r in roots
    )
    return ChannelPlan(groups, exprs, frozenset(b.depthwise))


def channel_groups(g: nx.DiGraph) -> list[ChannelGroup]:
    """The channel groups of a network, in order of first appearance."""
    return list(channel_plan(g).groups)


def check_widths(plan: ChannelPlan, widths: dict[int, int]) -> None:
    """Raise NetError unless every width names a free group and is a positive multiple of its multiple_of."""
    for gid, w in widths.items():
        if not (isinstance(gid, int) and 0 <= gid < len(plan.groups)):
            raise NetError(f"no channel group {gid!r} (the network has {len(plan.groups)})")
        grp = plan.groups[gid]
        if grp.fixed:
            raise NetError(f"channel group {gid} ({grp.members[0]}) is fixed: {grp.reason}")
        if not (isinstance(w, int) and not isinstance(w, bool)) or w <= 0 or w % grp.multiple_of:
            need = f"a positive multiple of {grp.multiple_of}" if grp.multiple_of > 1 else "a positive integer"
            raise NetError(f"width of channel group {gid} ({grp.members[0]}) must be {need}, got {w!r}")


def _as_int(x):
    """numpy integers as ints; anything else unchanged (check_widths rejects it)."""
    if isinstance(x, bool) or not hasattr(x, "__index__"):
        return x
    return operator.index(x)


def apply_widths(g: nx.DiGraph, widths: dict[int, int], plan: ChannelPlan | None = None) -> nx.DiGraph:
    """A copy of the network with the given groups at the given channel counts, shapes re-inferred."""
    plan = plan or channel_plan(g)
    widths = {_as_int(k): _as_int(v) for k, v in widths.items()}
    check_widths(plan, widths)
    values = [widths.get(grp.id, grp.channels) for grp in plan.groups]
    new = copy_graph(g)
    for grp in plan.groups:
        for name in grp.writers:
            attrs = new.nodes[name]["attrs"]
            attrs["out"] = values[grp.id]
            if name in plan.depthwise:
                attrs["groups"] = values[grp.id]
    for name in plan.depthwise:  # depthwise convs on derived tensors (concat outputs, split parts)
        if plan.exprs[name][0] != "var":
            attrs = new.nodes[name]["attrs"]
            attrs["out"] = attrs["groups"] = evaluate(plan.exprs[name], values)
    return infer_shapes(new)
