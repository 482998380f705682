"""Lower the graph IR to the cost model's struct-of-arrays program (built once, evaluated many times)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain

import networkx as nx
import numpy as np

import compiler.cost.kernel as ck
from compiler.diagnostics import NetError, count
from compiler.ops import OPS
from compiler.rewrite.coupling import ChannelPlan, channel_plan, expr_vars, producer_order
from compiler.shapes import pair

# cost trait (compiler.ops.TRAITS["cost"]) -> the kernel's op code
COST_CODES: dict[str, int] = {
    "input": ck.OP_INPUT, "conv": ck.OP_CONV, "dwconv": ck.OP_DWCONV, "conv_transpose": ck.OP_CONVT,
    "linear": ck.OP_LINEAR, "bn": ck.OP_BN, "elementwise": ck.OP_ELEMENTWISE, "softmax": ck.OP_SOFTMAX,
    "maxpool": ck.OP_MAXPOOL, "avgpool": ck.OP_AVGPOOL, "gap": ck.OP_GAP, "adaptive_avgpool": ck.OP_ADAPTIVE,
    "upsample": ck.OP_UPSAMPLE, "nary": ck.OP_ADD, "move": ck.OP_MOVE,
}
COSTLY = frozenset({ck.OP_CONV, ck.OP_DWCONV, ck.OP_CONVT, ck.OP_LINEAR, ck.OP_BN})  # codes with MACs or parameters
# read once per op from the specs, so that building a program looks up nothing else per node
_CODE = {name: COST_CODES[spec.cost] for name, spec in OPS.items() if spec.cost in COST_CODES}
_VIEW = frozenset(name for name, spec in OPS.items() if spec.view)  # outputs alias their input: no new memory
MAX_ELEMENTS = 2**62


@dataclass(frozen=True, eq=False)
class CostProgram:
    """A network as int64 arrays for the numba kernels, plus the names and channel plan to read results back."""

    names: tuple[str, ...]  # execution order: network inputs first, then topological
    ops: tuple[str, ...]
    table: np.ndarray  # int64 [cost_kernel.FIELDS, nodes]
    in_idx: np.ndarray  # inputs of every node, sliced by IN_PTR/IN_N
    free_idx: np.ndarray  # tensors whose memory is released after each node, sliced by FREE_PTR/FREE_N
    active: np.ndarray  # nodes whose channels a width row recomputes, in order
    costly: np.ndarray  # nodes with MACs or parameters
    width_groups: tuple[int, ...]  # the channel group id of each width column
    multiple_of: np.ndarray  # per width column: widths must be multiples of it
    plan: ChannelPlan
    network: str = ""
    spans: tuple = ()  # each node's source Span (or None), in execution order: where a cost error points
    calls: dict = field(default_factory=dict)  # the graph's block calls and scopes, for the notes of such an error
    scopes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def prototype_widths(self) -> np.ndarray:
        """The prototype's width row (one entry per width column)."""
        return np.array([self.plan.groups[gid].channels for gid in self.width_groups], dtype=np.int64)


def execution_order(g: nx.DiGraph) -> list[str]:
    """Network inputs first (they are alive from the start), then every other node topologically."""
    inputs = list(g.graph["inputs"])
    first = set(inputs)
    return inputs + [n for n in producer_order(g) if n not in first]


def check_ops(g: nx.DiGraph) -> None:
    """Raise NetError for a node whose op the cost model has no formula for (never count it as 0)."""
    for name, d in g.nodes(data=True):
        if d["op"] not in _CODE:
            raise NetError(f"the cost model does not know op '{d['op']}' (node '{name}')", d.get("span"))


def _spatial(shape: tuple) -> tuple[int, int, int]:
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    return shape[0], 1, math.prod(shape[1:])


def _adaptive_windows(size: int, out: int) -> int:
    """Total length of PyTorch's adaptive pooling windows along one axis: window i spans
    [floor(i*size/out), ceil((i+1)*size/out)), and the lengths add up to size + out - gcd(size, out)."""
    return size + out - math.gcd(size, out)


def _last_uses(inputs_of: list[list[int]], owner: list[int], outputs: list[int]) -> list[list[int]]:
    """For each step, the storages (by owner index) that no later step reads; outputs are never released."""
    last = list(range(len(inputs_of)))
    for i, inputs in enumerate(inputs_of):
        for src in inputs:
            o = owner[src]
            last[o] = max(last[o], i)
    outputs = {owner[i] for i in outputs}
    frees: list[list[int]] = [[] for _ in inputs_of]
    for i in range(len(inputs_of)):
        if owner[i] == i and i not in outputs:
            frees[last[i]].append(i)
    return frees


# the table rows in the order compile_costs lists them
_ROW_ORDER = (ck.OUT_C, ck.OUT_H, ck.OUT_W, ck.OP, ck.AREA, ck.GROUPS, ck.ARG, ck.FLAGS, ck.IN_PTR, ck.IN_N, ck.FREE_PTR, ck.FREE_N,
              ck.CH_RULE, ck.CH_ARG, ck.REP)
assert _ROW_ORDER == tuple(range(ck.FIELDS))


def compile_costs(g: nx.DiGraph) -> CostProgram:
    """Build the struct-of-arrays cost program of a shape-inferred network."""
    check_ops(g)
    order = execution_order(g)
    plan = channel_plan(g, order)
    data = dict(g.nodes(data=True))
    index = {name: i for i, name in enumerate(order)}
    free_groups = [grp.id for grp in plan.groups if not grp.fixed]
    column = {gid: c for c, gid in enumerate(free_groups)}
    fixed_vars = {grp.id for grp in plan.groups if grp.fixed}
    table: list[list[int]] = []
    in_idx: list[int] = []
    owner: list[int] = []
    inputs_of: list[list[int]] = []
    for i, name in enumerate(order):
        d = data[name]
        op, a, shape = d["op"], d["attrs"], d["shape"]
        if shape is None:
            raise NetError(f"node '{name}' has no shape; infer shapes before costing", d.get("span"))
        c, h, w = _spatial(shape)
        if c * h * w >= MAX_ELEMENTS:
            raise NetError(f"{op} '{name}' has {count(c * h * w)} elements, more than the cost model's "
                           "64-bit integers hold", d.get("span"))
        inputs = [index[s] for s in d["inputs"]]
        flags = ((ck.F_BIAS if a.get("bias") else 0) | (ck.F_AFFINE if a.get("affine") else 0)
                 | (ck.F_DEPTHWISE if name in plan.depthwise else 0) | (ck.F_VIEW if op in _VIEW else 0)
                 | (ck.F_BILINEAR if a.get("mode") == "bilinear" else 0))
        arg = 0
        code = _CODE[op]
        if code == ck.OP_ADAPTIVE:
            _, ih, iw = _spatial(data[d["inputs"][0]]["shape"])
            arg = _adaptive_windows(ih, a["size"]) * _adaptive_windows(iw, a["size"])
        rule, rule_arg, rep = _channel_rule(name, d, plan, column, fixed_vars, inputs, table)
        table.append([c, h, w, code, math.prod(pair(a.get("k", 0))), a.get("groups", 1), arg, flags, len(in_idx), len(inputs),
                      0, 0, rule, rule_arg, i if rep < 0 else rep])
        in_idx += inputs
        inputs_of.append(inputs)
        owner.append(owner[inputs[0]] if op in _VIEW else i)
    free_idx: list[int] = []
    for i, released in enumerate(_last_uses(inputs_of, owner, [index[n] for n in g.graph["outputs"].values()])):
        table[i][ck.FREE_PTR], table[i][ck.FREE_N] = len(free_idx), len(released)
        free_idx += released
    n = len(order)
    t = np.fromiter(chain.from_iterable(table), dtype=np.int64, count=n * ck.FIELDS).reshape(n, ck.FIELDS).T.copy()
    active = [i for i, row in enumerate(table) if row[ck.CH_RULE] not in (ck.CH_CONST, ck.CH_SAME)]
    costly = [i for i, row in enumerate(table) if row[ck.OP] in COSTLY]
    return CostProgram(
        tuple(order), tuple(data[x]["op"] for x in order), t, _int_array(in_idx), _int_array(free_idx),
        _int_array(active), _int_array(costly), tuple(free_groups),
        _int_array([plan.groups[gid].multiple_of for gid in free_groups]), plan, g.graph.get("name", ""),
        tuple(data[x].get("span") for x in order), g.graph.get("calls", {}), g.graph.get("scopes", {}),
    )


def _int_array(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64).reshape(-1)


def _channel_rule(name: str, d: dict, plan: ChannelPlan, column: dict[int, int], fixed_vars: set[int],
                  inputs: list[int], table: list[list[int]]) -> tuple[int, int, int]:
    """How a width row sets this node's channels: (rule, argument, representative node or -1 for itself)."""
    e = plan.exprs[name]
    if e[0] == "var" and e[1] in fixed_vars or e[0] != "var" and not expr_vars(e) - fixed_vars:
        return ck.CH_CONST, 0, -1
    for pos, src in enumerate(d["inputs"]):
        if plan.exprs[src] == e:
            return ck.CH_SAME, pos, table[inputs[pos]][ck.REP]
    kind = e[0]
    if kind == "var":
        return ck.CH_VAR, column[e[1]], -1
    if kind == "sum":
        return ck.CH_SUM, 0, -1
    if kind == "scale":
        return ck.CH_SCALE, e[2], -1
    if kind == "part":
        return ck.CH_PART, e[2], -1
    raise NetError(f"no channel rule for {d['op']} '{name}' ({e})", d.get("span"))  # pragma: no cover
