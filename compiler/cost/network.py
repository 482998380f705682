"""The cost model's public API: exact MACs, parameters, buffers, other ops and activation memory of a network.

    program = compile_costs(g)            # the struct-of-arrays form, built once
    report = cost_of(program)             # totals and per-node figures (one numba call)
    macs, params = batched_costs(program, widths)   # one row of channel widths per candidate

Conventions (docs/cost-model.md): a MAC is one multiply-accumulate of a conv, dwconv, conv_transpose or linear
(bias adds are not MACs); elementwise, normalisation and pooling work is counted apart as "other ops".
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import networkx as nx
import numpy as np

import compiler.cost.kernel as ck
from compiler.cost.batch import SlotProgram, slot_costs, slot_program
from compiler.cost.program import CostProgram, compile_costs, execution_order
from compiler.diagnostics import NetError
from compiler.ir import block_call_notes, copy_graph
from compiler.shapes import infer_shapes
from compiler.validate import validate

__all__ = ["CostProgram", "CostReport", "batched_costs", "compile_costs", "cost_of", "execution_order",
           "network_cost", "with_input_shapes"]

FIGURES = ("macs", "params", "buffers", "other_ops", "activation_elements")


def _total(row: int, doc: str) -> property:
    """A read-only total of one per-node row, as an int."""
    return property(lambda self: int(self.per_node[row].sum()), doc=doc)


@dataclass(frozen=True, eq=False)
class CostReport:
    """Per-node figures (arrays in program order) and totals of one cost evaluation."""

    program: CostProgram
    per_node: np.ndarray  # int64 [5, nodes]: macs, params, buffers, other ops, output elements
    peak_activation_elements: int
    dtype_bytes: int = 4

    macs = _total(ck.R_MACS, "Multiply-accumulates of convs and linears.")
    params = _total(ck.R_PARAMS, "Trainable parameters.")
    buffers = _total(ck.R_BUFFERS, "Buffer elements (batch norm running statistics).")
    other_ops = _total(ck.R_OTHER, "Elementwise, normalisation and pooling ops.")
    activation_elements = _total(ck.R_ELEMENTS, "The elements of every node's output.")

    @property
    def peak_activation_bytes(self) -> int:
        return self.peak_activation_elements * self.dtype_bytes

    def totals(self) -> dict[str, int]:
        """Every total as a plain int (JSON-ready)."""
        out = {name: int(v) for name, v in zip(FIGURES, self.per_node.sum(axis=1))}
        out["activation_bytes"] = out["activation_elements"] * self.dtype_bytes
        out["peak_activation_elements"] = int(self.peak_activation_elements)
        out["peak_activation_bytes"] = self.peak_activation_bytes
        return out

    def node(self, name: str) -> dict[str, int]:
        """The figures of one node by name."""
        i = self.program.names.index(name)
        out = {f: int(self.per_node[r, i]) for r, f in enumerate(FIGURES)}
        out["activation_bytes"] = out["activation_elements"] * self.dtype_bytes
        return out

    def nodes(self) -> list[dict]:
        """One dict per node, in execution order: name, op and every figure."""
        columns = [self.per_node[r].tolist() for r in range(len(FIGURES))]
        return [
            {"name": name, "op": op, **{f: columns[r][i] for r, f in enumerate(FIGURES)},
             "activation_bytes": columns[ck.R_ELEMENTS][i] * self.dtype_bytes}
            for i, (name, op) in enumerate(zip(self.program.names, self.program.ops))
        ]


def _overflow(program: CostProgram, where: str, node: int | None = None) -> NetError:
    span = program.spans[node] if node is not None and node < len(program.spans) else None
    notes = block_call_notes(program.names[node], program.calls, program.scopes) if node is not None else []
    return NetError(f"the cost of network '{program.network}' overflows 64-bit integers at {where} "
                    f"(a figure above {ck.LIMIT:.1e})", span, notes)


# Up to this many nodes a one-off evaluation runs the kernel as Python (a 400-layer network: milliseconds, where
# importing numba and loading its cache take about 0.4 s); larger ones, or once numba is loaded, the compiled one.
PYTHON_NODES = 5000


def cost_of(program: CostProgram, dtype_bytes: int = 4) -> CostReport:
    """Evaluate the program once: per-node figures, totals and the peak of live activations."""
    if len(program.names) > PYTHON_NODES:
        ck.jit()
    with np.errstate(over="ignore"):  # the Python form wraps as numba's does; the shadow sums catch it
        per_node, peak, bad = ck.cost_kernel(program.table, program.in_idx, program.free_idx)
    if bad >= 0:
        raise _overflow(program, f"{program.ops[bad]} '{program.names[bad]}'", int(bad))
    return CostReport(program, per_node, int(peak), dtype_bytes)


def network_cost(g: nx.DiGraph, dtype_bytes: int = 4) -> CostReport:
    """compile_costs then cost_of, for one-off use."""
    return cost_of(compile_costs(g), dtype_bytes)


def batched_costs(program: CostProgram, widths) -> tuple[np.ndarray, np.ndarray]:
    """MACs and parameters for every row of `widths` (rows = candidates, columns = program.width_groups)."""
    widths = np.ascontiguousarray(widths, dtype=np.int64)
    if widths.ndim == 1:
        widths = widths.reshape(1, -1)
    if widths.ndim != 2 or widths.shape[1] != len(program.width_groups):
        raise NetError(f"widths must be a matrix with {len(program.width_groups)} columns (one per free channel "
                       f"group), got shape {list(widths.shape)}")
    bad_rows = np.flatnonzero(((widths <= 0) | (widths % np.maximum(program.multiple_of, 1) != 0)).any(axis=1))
    if bad_rows.size:
        row = int(bad_rows[0])
        col = int(np.flatnonzero((widths[row] <= 0) | (widths[row] % program.multiple_of != 0))[0])
        raise NetError(f"widths row {row}: column {col} (channel group {program.width_groups[col]}) must be a "
                       f"positive multiple of {int(program.multiple_of[col])}, got {int(widths[row, col])}")
    if widths.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ck.jit()
    fast = _slot_program(program)
    # every figure grows with every width: if the column-wise maximum does not overflow, no row does
    _, _, overflow = ck.batched_kernel(program.table, program.in_idx, program.active, program.costly,
                                       widths.max(axis=0, keepdims=True))
    if fast is not None and not overflow[0]:
        return slot_costs(fast, widths)
    macs, params, overflow = ck.batched_kernel(program.table, program.in_idx, program.active, program.costly, widths)
    if overflow.any():
        raise _overflow(program, f"widths row {int(np.flatnonzero(overflow)[0])}")
    return macs, params


_SLOT_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _slot_program(program: CostProgram) -> SlotProgram | None:
    """The program's batched slot form, built on first use (None when a coefficient does not fit in int64)."""
    if program not in _SLOT_PROGRAMS:
        try:
            _SLOT_PROGRAMS[program] = slot_program(program)
        except OverflowError:
            _SLOT_PROGRAMS[program] = None
    return _SLOT_PROGRAMS[program]


def with_input_shapes(g: nx.DiGraph, shapes: dict[str, tuple[int, ...]]) -> nx.DiGraph:
    """A copy of the network with new per-sample input shapes, every shape re-inferred (NetError if one fails)."""
    new = copy_graph(g)
    for name, shape in shapes.items():
        if name not in new.graph["inputs"]:
            raise NetError(f"the network has no input '{name}' (inputs: {', '.join(new.graph['inputs'])})")
        old = new.nodes[name]["attrs"]["shape"]
        if len(shape) != len(old):
            raise NetError(f"input '{name}' has rank {len(old)} per sample ({old}); got {list(shape)}")
        if any(not isinstance(s, int) or s <= 0 for s in shape):
            raise NetError(f"input '{name}': sizes must be positive integers, got {list(shape)}")
        new.nodes[name]["attrs"]["shape"] = list(shape)
    return validate(infer_shapes(new))
