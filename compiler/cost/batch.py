"""The batched cost of many width rows: a program's MACs and params as a short list of bilinear terms over slots.

MACs and parameters of conv, dwconv, conv_transpose and linear are coefficient * (out // gc) * (in // gi) with
spatial sizes and kernel taps folded into the coefficient; bias and bn affine parameters are linear in the output
channels. Channel counts live in slots: the width columns, constants, and concat/split/scale results computed per
row. Every figure is non-decreasing in every width, so one checked evaluation of the column-wise maximum row
proves that no row overflows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import compiler.cost.kernel as ck
from compiler.cost.program import CostProgram


@dataclass(frozen=True, eq=False)
class SlotProgram:
    """Arrays for cost_kernel.slot_kernel."""

    slots: np.ndarray  # initial slot values: constants set, width and derived slots overwritten per row
    derived: np.ndarray  # int64 [5, derived slots] (D_* rows)
    derived_in: np.ndarray
    terms: np.ndarray  # int64 [6, terms] (T_* rows)
    linear: np.ndarray  # int64 [2, slots with linear params]: slot, coefficient
    base_macs: int  # the figures of terms whose channels never change
    base_params: int


def slot_program(program: CostProgram) -> SlotProgram:
    """Fold a cost program into bilinear terms over channel slots (OverflowError if a coefficient does not fit)."""
    t, in_idx = program.table, program.in_idx
    slots: list[int] = [0] * len(program.width_groups)
    constant: dict[int, int] = {}  # channel count -> slot
    slot_of_rep: dict[int, int] = {}
    derived: list[list[int]] = []
    derived_in: list[int] = []
    for i in range(t.shape[1]):
        if t[ck.REP, i] != i:
            continue
        rule = int(t[ck.CH_RULE, i])
        if rule == ck.CH_VAR:
            slot_of_rep[i] = int(t[ck.CH_ARG, i])
        elif rule == ck.CH_CONST:
            c = int(t[ck.OUT_C, i])
            if c not in constant:
                constant[c] = len(slots)
                slots.append(c)
            slot_of_rep[i] = constant[c]
        else:
            p, n = int(t[ck.IN_PTR, i]), int(t[ck.IN_N, i])
            sources = [slot_of_rep[int(t[ck.REP, j])] for j in in_idx[p:p + n]]
            slot_of_rep[i] = len(slots)
            slots.append(0)
            derived.append([rule, int(t[ck.CH_ARG, i]), len(derived_in), len(sources), slot_of_rep[i]])
            derived_in += sources
    const_slots = set(constant.values())
    bilinear: dict[tuple[int, int, int, int], list[int]] = {}
    linear: dict[int, int] = {}
    base = [0, 0]
    for i in program.costly.tolist():
        j = int(in_idx[t[ck.IN_PTR, i]])
        out, inp = slot_of_rep[int(t[ck.REP, i])], slot_of_rep[int(t[ck.REP, j])]
        op, flags, k2 = int(t[ck.OP, i]), int(t[ck.FLAGS, i]), int(t[ck.AREA, i])
        hw, ihw = int(t[ck.OUT_H, i] * t[ck.OUT_W, i]), int(t[ck.OUT_H, j] * t[ck.OUT_W, j])
        if op == ck.OP_BN:
            if flags & ck.F_AFFINE:
                linear[out] = linear.get(out, 0) + 2
            continue
        if op == ck.OP_LINEAR:
            gc, gi, macs, params = 1, 1, 1, 1
        elif op == ck.OP_CONVT:
            gc, gi, macs, params = int(t[ck.GROUPS, i]), 1, ihw * k2, k2
        else:  # conv, dwconv: one input channel per output when depthwise
            depthwise = op == ck.OP_DWCONV or flags & ck.F_DEPTHWISE
            gc, gi, macs, params = 1, -1 if depthwise else int(t[ck.GROUPS, i]), hw * k2, k2
        if flags & ck.F_BIAS:
            linear[out] = linear.get(out, 0) + 1
        if gi < 0:
            inp = out
        if out in const_slots and inp in const_slots:
            xy = (slots[out] // gc) * (1 if gi < 0 else slots[inp] // gi)
            base[0] += macs * xy
            base[1] += params * xy
            continue
        term = bilinear.setdefault((out, inp, gc, gi), [0, 0])
        term[0] += macs
        term[1] += params
    for s, coef in list(linear.items()):
        if s in const_slots:
            base[1] += coef * slots[s]
            del linear[s]
    terms = [[*key, m, p] for key, (m, p) in bilinear.items()]
    return SlotProgram(
        np.array(slots, dtype=np.int64), _rows(derived, 5), np.array(derived_in, dtype=np.int64),
        _rows(terms, 6), _rows([[s, c] for s, c in linear.items()], 2), base[0], base[1],
    )


def _rows(items: list[list[int]], fields: int) -> np.ndarray:
    """Items as the rows-of-fields layout the kernel reads: int64 [fields, items]."""
    return np.array(items, dtype=np.int64).reshape(len(items), fields).T.copy()


def slot_costs(sp: SlotProgram, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MACs and params of every row (the caller has ruled out overflow)."""
    ck.jit()
    return ck.slot_kernel(widths, sp.slots, sp.derived, sp.derived_in, sp.terms, sp.linear, sp.base_macs,
                          sp.base_params)
