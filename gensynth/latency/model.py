"""A target's latency model: per unit signature, a small regression over channel counts, plus the per-network
overhead whole networks show; saved as JSON tagged with the prototype, runtime and threads it was made for.

A unit's latency (gensynth.latency.units) is fitted over a basis that follows how CPU kernels spend time:

    dense (conv, linear):  [1, ci, co, ci*co, in_blocks(ci)*ceil(co/b)]   once on the blocked path (ci % a == 0
                           or ci < b), once on the generic one; in_blocks(ci) = ceil(ci/b), or ci/b below b
    others (over co):      [1, co, ceil(co/b)]                             split on co % a

`b` (the runtime's channel block) and `a` (the alignment its fast path wants) are chosen by cross-validation
over every unit measured: onnxruntime on AVX-512 runs convs in blocks of 16 output channels when the input's
count is a multiple of 4 or below 16 (read unblocked, at a cost that grows with it), and falls back to a slower
generic path otherwise, so latency steps with the channel count rather than following MACs; PyTorch eager is
close to bilinear. A network's latency is then

    intercept + per_unit * len(units) + sum(alpha[kind of unit] * unit) + layout terms

with the network-level terms (`calibrate`) fitted on whole networks: measured alone, a unit pays the runtime's
call overhead and the layout conversions at its edges, and in a network some units fuse into their neighbours. `LatencyProgram` predicts a fixed structure at many width rows at
once (numpy over rows, one step per signature), as compiler.cost.batch does for MACs.
"""

from __future__ import annotations

import datetime
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from compiler.backend.atomic import atomic_write, read_json
from compiler.diagnostics import NetError
from compiler.rewrite.coupling import ChannelPlan, channel_plan, evaluate
from gensynth.latency.units import describe, network_units, unit_channels

FORMAT = "netdsl-latency-model/1"
BLOCKS = (8, 16, 32)  # channel blocks tried
ALIGNMENTS = (2, 4, 8)  # fast-path alignments tried
RIDGE = 1e-6


@dataclass(frozen=True)
class Basis:
    """The regression features over channel counts (see the module doc)."""

    block: int = 16
    align: int = 4

    def dense(self, ci: np.ndarray, co: np.ndarray) -> np.ndarray:
        """Features of dense units: [..., 10]."""
        ci, co = np.asarray(ci, dtype=float), np.asarray(co, dtype=float)
        narrow = ci < self.block  # read as it is, not in blocks: time grows with ci itself
        blocks = np.where(narrow, ci / self.block, np.ceil(ci / self.block)) * np.ceil(co / self.block)
        terms = np.stack([np.ones_like(ci), ci, co, ci * co, blocks], axis=-1)
        blocked = ((np.mod(ci, self.align) == 0) | narrow)[..., None]
        return np.concatenate([terms * blocked, terms * ~blocked], axis=-1)

    def channels(self, co: np.ndarray) -> np.ndarray:
        """Features of other units (over their output channels): [..., 6]."""
        co = np.asarray(co, dtype=float)
        terms = np.stack([np.ones_like(co), co, np.ceil(co / self.block)], axis=-1)
        aligned = (np.mod(co, self.align) == 0)[..., None]
        return np.concatenate([terms * aligned, terms * ~aligned], axis=-1)

    def features(self, dense: bool, ci, co) -> np.ndarray:
        return self.dense(ci, co) if dense else self.channels(co)


def fit_relative(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Least squares of relative errors ((x w - y) / y), columns scaled, with a small ridge."""
    w = x / y[:, None]
    scale = np.abs(w).max(axis=0)
    scale[scale == 0] = 1.0
    a = w / scale
    coef = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ np.ones(len(y)))
    return coef / scale


@dataclass
class UnitSamples:
    """Measured configurations of one signature: channel tuples (unit_channels layout) and seconds."""

    dense: bool
    channels: list[tuple[int, ...]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = np.asarray(self.channels, dtype=float)
        return c[:, 0], c[:, -1], np.asarray(self.seconds)


def cross_validated_error(samples: dict[str, UnitSamples], basis: Basis, folds: int = 4) -> float:
    """Median relative error of held-out unit measurements over every signature (k-fold)."""
    errors = []
    for s in samples.values():
        ci, co, y = s.arrays()
        x = basis.features(s.dense, ci, co)
        fold = np.arange(len(y)) % folds
        for k in range(folds):
            test = fold == k
            if test.all() or not test.any():
                continue
            coef = fit_relative(x[~test], y[~test])
            errors.append(np.abs(x[test] @ coef - y[test]) / y[test])
    return float(np.median(np.concatenate(errors))) if errors else 0.0


def choose_basis(samples: dict[str, UnitSamples]) -> Basis:
    """The block and alignment that predict held-out units best."""
    return min((Basis(b, a) for b in BLOCKS for a in ALIGNMENTS),
               key=lambda basis: cross_validated_error(samples, basis))


@dataclass
class LatencyModel:
    """What `netdsl profile` writes: per-signature coefficients and the network overhead, with its tags."""

    prototype: str  # network name
    prototype_hash: str  # of the profiled prototype's canonical text (gensynth.generator.prototype_hash)
    input_shape: list[int]
    runtime: str
    threads: int
    clock: str
    basis: dict  # Basis fields
    units: dict[str, dict]  # signature -> {"dense", "coef", "alpha", "samples", "error", "what"}
    calibration: dict[str, float]  # network terms: intercept, per_unit, aligned_reads, aligned_writes
    accuracy: dict = field(default_factory=dict)  # held-out networks measured while profiling
    machine: str = field(default_factory=lambda: f"{platform.machine()} {platform.processor() or platform.system()}")
    created: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))
    profile_seconds: float = 0.0

    def to_json(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | Path) -> None:
        """Write atomically (a killed run never leaves half a model)."""
        atomic_write(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LatencyModel:
        data = read_json(path, "latency model")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NetError(f"{path} is not a netdsl latency model (expected \"format\": \"{FORMAT}\"); make one "
                           "with netdsl profile")
        try:
            return cls(**{k: v for k, v in data.items() if k != "format"})
        except TypeError as err:
            raise NetError(f"latency model {path} is damaged: {err}") from None

    def check_for(self, prototype_hash: str, network: str, runtime: str | None = None, threads: int | None = None,
                  where: str = "the latency model") -> None:
        """NetError unless the model was made for this prototype (and runtime and thread count, when given)."""
        if prototype_hash != self.prototype_hash:
            raise NetError(f"{where} was made for another prototype ({self.prototype}, hash {self.prototype_hash}, "
                           f"input {'x'.join(map(str, self.input_shape))}), not {network} (hash {prototype_hash})",
                           notes=["make one for this prototype: netdsl profile PROTOTYPE.net -o FILE (on the target)"])
        if runtime is not None and runtime != self.runtime:
            raise NetError(f"{where} was made for runtime {self.runtime}, not {runtime}",
                           notes=[f"profile with --runtime {runtime}, or ask for --runtime {self.runtime}"])
        if threads is not None and threads != self.threads:
            raise NetError(f"{where} was made at {self.threads} thread(s), not {threads}",
                           notes=[f"profile with --threads {threads}, or ask for --threads {self.threads}"])

    @property
    def fitted_basis(self) -> Basis:
        return Basis(**self.basis)

    def program(self, g: nx.DiGraph, width_groups: tuple[int, ...] | None = None,
                plan: ChannelPlan | None = None) -> LatencyProgram:
        """The predictor of one network structure over width rows (columns: width_groups, default the plan's
        free groups in order, as compiler.cost.compile_costs lays them out)."""
        return latency_program(self, g, width_groups, plan)

    def predict(self, g: nx.DiGraph) -> float:
        """Predicted seconds of one network."""
        prog = self.program(g)
        return float(prog.predict(prog.prototype_row[None, :])[0])


@dataclass(frozen=True, eq=False)
class LatencyProgram:
    """One structure's units grouped by signature (channel expressions, coefficients), its tensors' layout
    terms and the network-level calibration: predicts many width rows at once."""

    columns: tuple[int, ...]  # group id of each width column
    constants: tuple[int, ...]  # every group's prototype channel count (for the groups without a column)
    signatures: tuple[str, ...]
    groups: tuple[tuple[bool, np.ndarray, tuple, tuple], ...]  # per signature: (dense, coef, ci exprs, co exprs)
    reads: tuple[tuple[tuple, int], ...]  # (channel expr, spatial size) of every tensor a unit reads
    writes: tuple[tuple[tuple, int], ...]  # ... and of every unit's output
    units: int
    basis: Basis
    calibration: dict[str, float]
    alpha: np.ndarray  # per signature

    @property
    def prototype_row(self) -> np.ndarray:
        return np.array([self.constants[gid] for gid in self.columns], dtype=np.int64)

    def _widths(self, rows: np.ndarray) -> list:
        widths: list = list(self.constants)
        for j, gid in enumerate(self.columns):
            widths[gid] = rows[:, j]
        return widths

    def terms(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the summed unit predictions of each signature [rows, signatures], and the elements of
        aligned tensors read and written [rows, 2]."""
        rows = np.asarray(rows)
        widths, n = self._widths(rows), len(rows)
        summed = np.zeros((n, len(self.groups)))
        for k, (dense, coef, ci_exprs, co_exprs) in enumerate(self.groups):
            ci = np.stack([np.broadcast_to(evaluate(e, widths), (n,)) for e in ci_exprs])
            co = np.stack([np.broadcast_to(evaluate(e, widths), (n,)) for e in co_exprs])
            summed[:, k] = np.maximum(self.basis.features(dense, ci, co) @ coef, 0.0).sum(axis=0)
        layout = np.zeros((n, 2))
        for j, tensors in enumerate((self.reads, self.writes)):
            for expr, spatial in tensors:
                c = np.broadcast_to(evaluate(expr, widths), (n,))
                layout[:, j] += np.where(np.mod(c, self.basis.align) == 0, c * spatial, 0)
        return summed, layout

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Predicted seconds of every width row ([rows, columns] -> [rows])."""
        summed, layout = self.terms(rows)
        c = self.calibration
        return (c["intercept"] + c["per_unit"] * self.units + summed @ self.alpha
                + layout @ np.array([c["aligned_reads"], c["aligned_writes"]]))


def latency_program(model: LatencyModel, g: nx.DiGraph, width_groups: tuple[int, ...] | None = None,
                    plan: ChannelPlan | None = None) -> LatencyProgram:
    plan = plan or channel_plan(g)
    columns = tuple(width_groups) if width_groups is not None else tuple(grp.id for grp in plan.free_groups())
    by_signature: dict[str, tuple[list, list]] = {}
    units = network_units(g)
    missing = [unit for unit in units if unit.signature not in model.units]
    if missing:
        raise NetError(f"the latency model has no measurements of {len(missing)} layer(s) of network "
                       f"'{g.graph['name']}', e.g. '{missing[0].head}': {describe(missing[0].signature)}",
                       notes=["profile this prototype again (netdsl profile) with the options synthesis uses "
                              "(--stride, --factorize, --min-fraction)"])
    reads, writes = [], []
    for unit in units:
        exprs = unit_channels(g, plan, unit)
        ci, co = by_signature.setdefault(unit.signature, ([], []))
        ci.append(exprs[0] if unit.inputs else exprs[-1])
        co.append(exprs[-1])
        reads += [(e, _spatial(g, i)) for e, i in zip(exprs, unit.inputs)]
        writes.append((exprs[-1], _spatial(g, unit.last)))
    signatures = tuple(by_signature)
    groups = tuple((model.units[s]["dense"], np.asarray(model.units[s]["coef"]), tuple(ci), tuple(co))
                   for s, (ci, co) in by_signature.items())
    alpha = np.array([model.units[s].get("alpha", 1.0) for s in signatures])
    return LatencyProgram(columns, tuple(grp.channels for grp in plan.groups), signatures, groups, tuple(reads),
                          tuple(writes), len(units), model.fitted_basis, {**NO_CALIBRATION, **model.calibration},
                          alpha)


def _spatial(g: nx.DiGraph, name: str) -> int:
    """Elements per channel of a node's output."""
    return int(np.prod(g.nodes[name]["shape"][1:], dtype=np.int64))


NO_CALIBRATION = {"intercept": 0.0, "per_unit": 0.0, "aligned_reads": 0.0, "aligned_writes": 0.0}
# pulls each kind's scale towards 1 where few networks tell it apart: at 0.1 the scale of a kind with a small share
# of the time wandered to -2 on MobileNetV2 (harmless while its share stays small, absurd when it grows); at 1.0 it
# stays near 1 and held-out networks are predicted as well (within ±10%: 92% against 95% in one session)
CALIBRATION_RIDGE = 1.0
# the layout terms must cut the held-out error by a fifth to be kept: on networks of a target without them and
# 3% noise, the fit with them came out up to 10% better or worse by chance; where aligned tensors cost ~40% of the
# latency, they cut it by 60-85%
LAYOUT_GAIN = 0.8


def calibrate(programs: list[LatencyProgram], measured: np.ndarray, kinds: dict[str, str],
              ridge: float = CALIBRATION_RIDGE) -> tuple[dict, dict]:
    """Fit the network-level terms on whole networks (relative error): the intercept, a cost per unit, a cost
    per element of aligned tensors read and written (runtimes that keep aligned tensors in a blocked layout
    pay to convert at the edges of a unit measured alone, not inside a network), and a scale per kind of unit
    (`kinds`: signature -> its head op; runtimes fuse some units, adds say, into their neighbours), ridge-pulled
    towards 1. Per kind rather than per signature: in a network the signatures of one kind occur together, so
    their scales cannot be told apart. The layout terms are kept only where they predict held-out networks
    better (leave one out): fitted on a runtime without a blocked layout, or on noisy measurements, they
    mistake noise for a cost of aligned channel counts. Returns (calibration, alpha per signature)."""
    x, index = calibration_matrix(programs, kinds)
    coef = solve_calibration(x, measured, ridge, layout_helps(x, measured, ridge))
    calibration = dict(zip(("intercept", "per_unit", "aligned_reads", "aligned_writes"), map(float, coef[:4])))
    return calibration, {s: float(coef[i]) for s, i in index.items()}


def calibration_matrix(programs: list[LatencyProgram], kinds: dict[str, str]) -> tuple[np.ndarray, dict[str, int]]:
    """Per network: [1, units, aligned reads, aligned writes, summed unit predictions of each kind], and the
    column of each signature's kind."""
    names = sorted(set(kinds.values()))
    index = {s: 4 + names.index(k) for s, k in kinds.items()}
    x = np.zeros((len(programs), 4 + len(names)))
    for i, prog in enumerate(programs):
        summed, layout = prog.terms(prog.prototype_row[None, :])
        x[i, :4] = [1.0, prog.units, *layout[0]]
        for k, s in enumerate(prog.signatures):
            x[i, index[s]] += summed[0, k]
    return x, index


def solve_calibration(x: np.ndarray, measured: np.ndarray, ridge: float, layout: bool) -> np.ndarray:
    """Coefficients of the calibration matrix's columns (the layout columns 0 unless `layout`)."""
    a = x / measured[:, None]
    if not layout:
        a[:, 2:4] = 0.0
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    kinds = x.shape[1] - 4
    pull = np.r_[np.zeros(4), np.full(kinds, ridge)]
    prior = np.r_[np.zeros(4), np.ones(kinds)] * scale
    return np.linalg.solve(a.T @ a + np.diag(pull + 1e-9), a.T @ np.ones(len(measured)) + pull * prior) / scale


def layout_helps(x: np.ndarray, measured: np.ndarray, ridge: float = CALIBRATION_RIDGE) -> bool:
    """Whether the layout terms predict held-out networks clearly better (LAYOUT_GAIN) than the calibration
    without them: where they cost nothing the two tie within the noise, and a tie keeps the simpler fit."""
    return held_out_error(x, measured, ridge, True) < LAYOUT_GAIN * held_out_error(x, measured, ridge, False)


def held_out_error(x: np.ndarray, measured: np.ndarray, ridge: float, layout: bool) -> float:
    """Median relative error of each network predicted by the calibration fitted on the others."""
    errors = []
    for i in range(len(measured)):
        rest = np.arange(len(measured)) != i
        coef = solve_calibration(x[rest], measured[rest], ridge, layout)
        errors.append(abs(x[i] @ coef / measured[i] - 1))
    return float(np.median(errors)) if errors else 0.0
