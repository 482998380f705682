"""The numba kernels of the cost model: per-node MACs, parameters, buffers, other ops, activations and peak memory.

The kernels are plain Python until `jit()` compiles them all with numba (once per process, from numba's on-disk
cache when warm). Costing one network (show, cost, check of a file) runs the Python form: numba's import and
cache load take longer than evaluating a few thousand nodes in Python; the batched forms, which synthesis calls
thousands of times, call `jit()` first.

A program is a struct-of-arrays: one int64 table `t[FIELD, node]` (rows named below), the inputs of node i as
`in_idx[t[IN_PTR, i] : t[IN_PTR, i] + t[IN_N, i]]` and the tensors freed after node i as the same slice of
`free_idx` by FREE_PTR/FREE_N. Nodes are in execution order (network inputs first). The formulas are documented in
docs/cost-model.md; keep the two in step. Op codes, fields and flags live here (not in the program builder)
so that numba's on-disk cache, keyed on this file, never runs a kernel against other constants.
"""

from __future__ import annotations

import numpy as np

# op codes
OP_INPUT, OP_CONV, OP_DWCONV, OP_CONVT, OP_LINEAR, OP_BN, OP_ELEMENTWISE, OP_SOFTMAX = 0, 1, 2, 3, 4, 5, 6, 7
OP_MAXPOOL, OP_AVGPOOL, OP_GAP, OP_ADAPTIVE, OP_UPSAMPLE, OP_ADD, OP_MOVE = 8, 9, 10, 11, 12, 13, 14

# table rows (AREA: the kernel's kh * kw)
OUT_C, OUT_H, OUT_W, OP, AREA, GROUPS, ARG, FLAGS = 0, 1, 2, 3, 4, 5, 6, 7
IN_PTR, IN_N, FREE_PTR, FREE_N, CH_RULE, CH_ARG, REP = 8, 9, 10, 11, 12, 13, 14
FIELDS = 15

# flags
F_BIAS, F_AFFINE, F_DEPTHWISE, F_VIEW, F_BILINEAR = 1, 2, 4, 8, 16

# how a width row sets a node's channels (batched evaluation only)
CH_CONST, CH_VAR, CH_SAME, CH_SCALE, CH_SUM, CH_PART = 0, 1, 2, 3, 4, 5

# results per node (rows of the per-node array)
R_MACS, R_PARAMS, R_BUFFERS, R_OTHER, R_ELEMENTS = 0, 1, 2, 3, 4
RESULTS = 5

LIMIT = 9.0e18  # a little under 2**63: a float shadow above this means the int64 figure may have wrapped


_KERNELS: dict = {}  # name -> Python function, in definition order (each after the kernels it calls)
_JITTED: list[bool] = []


def _jit(fn):
    """A kernel: plain Python until jit() replaces it, in this module, by its numba-compiled form."""
    _KERNELS[fn.__name__] = fn
    return fn


def jit() -> None:
    """Compile every kernel with numba, callees first, and put the compiled ones in their place (once)."""
    if _JITTED:
        return
    from numba import njit

    for name, fn in _KERNELS.items():
        try:
            compiled = njit(cache=True)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install, no HOME cache)
            compiled = njit(fn)
        globals()[name] = compiled  # the kernels after it resolve it here when numba compiles them
    _JITTED.append(True)


def jitted() -> bool:
    """Whether the kernels are numba's compiled ones."""
    return bool(_JITTED)


@_jit
def node_cost(t, i, c, cin, j):
    """(macs, params, buffers, other ops, overflowed) of node i with c output and cin input channels; j = input 0."""
    op = t[OP, i]
    hw = t[OUT_H, i] * t[OUT_W, i]
    ihw = t[OUT_H, j] * t[OUT_W, j]
    k2 = t[AREA, i]
    bias = c if t[FLAGS, i] & F_BIAS else 0
    macs = 0
    params = 0
    buffers = 0
    other = 0
    shadow = 0.0
    if op == OP_CONV:
        g = cin if t[FLAGS, i] & F_DEPTHWISE else t[GROUPS, i]
        per_out = (cin // g) * k2
        macs = c * hw * per_out
        params = c * per_out + bias
        shadow = float(c) * float(hw) * float(per_out)
    elif op == OP_DWCONV:
        macs = c * hw * k2
        params = c * k2 + bias
        shadow = float(c) * float(hw) * float(k2)
    elif op == OP_CONVT:
        per_in = (c // t[GROUPS, i]) * k2
        macs = cin * ihw * per_in
        params = cin * per_in + bias
        shadow = float(cin) * float(ihw) * float(per_in)
    elif op == OP_LINEAR:
        macs = cin * c
        params = macs + bias
        shadow = float(cin) * float(c)
    elif op == OP_BN:
        params = 2 * c if t[FLAGS, i] & F_AFFINE else 0
        buffers = 2 * c + 1
        other = c * hw
    elif op == OP_ELEMENTWISE:
        other = c * hw
    elif op == OP_SOFTMAX:
        other = 3 * c * hw
    elif op == OP_MAXPOOL or op == OP_AVGPOOL:
        other = c * hw * k2
        shadow = float(c) * float(hw) * float(k2)
    elif op == OP_GAP:
        other = c * ihw
    elif op == OP_ADAPTIVE:
        other = c * t[ARG, i]
        shadow = float(c) * float(t[ARG, i])
    elif op == OP_UPSAMPLE:
        other = 4 * c * hw if t[FLAGS, i] & F_BILINEAR else 0
    elif op == OP_ADD:
        other = (t[IN_N, i] - 1) * c * hw
        shadow = float(t[IN_N, i]) * float(c) * float(hw)
    return macs, params, buffers, other, shadow > LIMIT or float(c) * float(cin) * float(k2) > LIMIT


@_jit
def cost_kernel(t, in_idx, free_idx):
    """Per-node results [RESULTS, n], the peak of live activation elements, and the first overflowing node (-1)."""
    n = t.shape[1]
    res = np.zeros((RESULTS, n), dtype=np.int64)
    totals = np.zeros(RESULTS, dtype=np.float64)
    bad = -1
    alive = 0
    peak = 0
    for i in range(n):
        j = in_idx[t[IN_PTR, i]] if t[IN_N, i] > 0 else i
        c = t[OUT_C, i]
        macs, params, buffers, other, overflow = node_cost(t, i, c, t[OUT_C, j], j)
        elements = c * t[OUT_H, i] * t[OUT_W, i]
        res[R_MACS, i] = macs
        res[R_PARAMS, i] = params
        res[R_BUFFERS, i] = buffers
        res[R_OTHER, i] = other
        res[R_ELEMENTS, i] = elements
        for r in range(RESULTS):
            totals[r] += float(res[r, i])
        if (overflow or totals.max() > LIMIT) and bad < 0:
            bad = i
        if not t[FLAGS, i] & F_VIEW:
            alive += elements
        if alive > peak:
            peak = alive
        for f in range(t[FREE_PTR, i], t[FREE_PTR, i] + t[FREE_N, i]):
            o = free_idx[f]
            alive -= t[OUT_C, o] * t[OUT_H, o] * t[OUT_W, o]
    return res, peak, bad


@_jit
def batched_kernel(t, in_idx, active, costly, widths):
    """MACs and parameters of the network at every row of widths [rows, width variables]; overflow per row."""
    rows = widths.shape[0]
    macs_out = np.zeros(rows, dtype=np.int64)
    params_out = np.zeros(rows, dtype=np.int64)
    overflow_out = np.zeros(rows, dtype=np.bool_)
    ch = t[OUT_C].copy()
    for r in range(rows):
        for a in range(active.shape[0]):
            i = active[a]
            rule = t[CH_RULE, i]
            p = t[IN_PTR, i]
            if rule == CH_VAR:
                ch[i] = widths[r, t[CH_ARG, i]]
            elif rule == CH_SCALE:
                ch[i] = ch[t[REP, in_idx[p]]] * t[CH_ARG, i]
            elif rule == CH_PART:
                ch[i] = ch[t[REP, in_idx[p]]] // t[CH_ARG, i]
            else:  # CH_SUM
                s = 0
                for q in range(p, p + t[IN_N, i]):
                    s += ch[t[REP, in_idx[q]]]
                ch[i] = s
        macs_total = 0
        params_total = 0
        shadow = 0.0
        bad = False
        for a in range(costly.shape[0]):
            i = costly[a]
            j = in_idx[t[IN_PTR, i]]
            macs, params, _, _, overflow = node_cost(t, i, ch[t[REP, i]], ch[t[REP, j]], j)
            macs_total += macs
            params_total += params
            shadow += float(macs) + float(params)
            bad |= overflow
        macs_out[r] = macs_total
        params_out[r] = params_total
        overflow_out[r] = bad or shadow > LIMIT
    return macs_out, params_out, overflow_out


# the slot form of batched evaluation: slot values = [width columns | constants | derived channel counts]
D_KIND, D_ARG, D_PTR, D_N, D_SLOT = 0, 1, 2, 3, 4  # derived rows (kind is CH_SUM, CH_PART or CH_SCALE)
T_OUT, T_IN, T_GC, T_GI, T_MACS, T_PARAMS = 0, 1, 2, 3, 4, 5  # bilinear terms (T_GI < 0: one input per output)


@_jit
def slot_kernel(widths, slots, derived, derived_in, terms, linear, base_macs, base_params):
    """MACs and params per width row as sums of coefficient * (out // gc) * (in // gi) terms; no overflow checks."""
    rows, columns = widths.shape
    vals = slots.copy()
    macs_out = np.empty(rows, dtype=np.int64)
    params_out = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        for c in range(columns):
            vals[c] = widths[r, c]
        for d in range(derived.shape[1]):
            p = derived[D_PTR, d]
            kind = derived[D_KIND, d]
            if kind == CH_SUM:
                s = 0
                for q in range(p, p + derived[D_N, d]):
                    s += vals[derived_in[q]]
            elif kind == CH_PART:
                s = vals[derived_in[p]] // derived[D_ARG, d]
            else:
                s = vals[derived_in[p]] * derived[D_ARG, d]
            vals[derived[D_SLOT, d]] = s
        macs = base_macs
        params = base_params
        for q in range(terms.shape[1]):
            x = vals[terms[T_OUT, q]] // terms[T_GC, q]
            gi = terms[T_GI, q]
            xy = x if gi < 0 else x * (vals[terms[T_IN, q]] // gi)
            macs += terms[T_MACS, q] * xy
            params += terms[T_PARAMS, q] * xy
        for q in range(linear.shape[1]):
            params += linear[1, q] * vals[linear[0, q]]
        macs_out[r] = macs
        params_out[r] = params
    return macs_out, params_out
