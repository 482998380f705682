"""The latency model without a clock: the basis fit, vectorised prediction over width rows, the file and its tags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compiler.cost import compile_costs
from compiler.diagnostics import NetError
from compiler.printer import print_network
from compiler.rewrite.coupling import apply_widths, channel_plan
from compiler.rewrite.residual import drop_blocks
from gensynth.generator import prototype_hash
from gensynth.latency.model import (
    CALIBRATION_RIDGE,
    Basis,
    LatencyModel,
    UnitSamples,
    calibrate,
    choose_basis,
    fit_relative,
)
from gensynth.latency.units import network_units
from gensynth.space import search_space
from netdsl.loader import load_network_text
from tests.gensynth.latency.latency_fixtures import synthetic_model
from tests.gensynth.synth_fixtures import TINY_NET


@pytest.fixture(scope="module")
def tiny():
    return load_network_text(TINY_NET)


def test_fit_recovers_a_curve_of_the_basis():
    basis = Basis(block=16, align=4)
    rng = np.random.default_rng(1)
    ci, co = rng.integers(4, 64, 80), rng.integers(4, 64, 80)
    x = basis.dense(ci, co)
    true = rng.random(10) * 1e-6 + 1e-7
    coef = fit_relative(x, x @ true, ridge=1e-12)
    assert np.allclose(x @ coef, x @ true, rtol=1e-4)


def onnxruntime_like_conv(ci: np.ndarray, co: np.ndarray) -> np.ndarray:
    """Microseconds of a 3x3 conv on 14x14 as onnxruntime runs it (the shape of a measured grid): in blocks of 16
    output channels when the input has a multiple of 4 channels or fewer than 16 (read unblocked, at a cost that
    grows with it), bilinear on a slower generic path otherwise."""
    in_blocks = np.where(ci < 16, ci / 16, np.ceil(ci / 16))
    blocked = 4.0 + 3.0 * in_blocks * np.ceil(co / 16)
    generic = 6.0 + 0.02 * ci * co
    return np.where((ci % 4 == 0) | (ci < 16), blocked, generic)


def test_the_basis_follows_a_runtime_that_reads_narrow_inputs_unblocked():
    rng = np.random.default_rng(4)
    ci, co = rng.integers(3, 65, 48), rng.integers(3, 65, 48)
    basis = Basis(block=16, align=4)
    coef = fit_relative(basis.dense(ci, co), onnxruntime_like_conv(ci, co))
    grid_ci, grid_co = np.meshgrid(np.arange(3, 65), np.arange(3, 65))
    truth = onnxruntime_like_conv(grid_ci.ravel(), grid_co.ravel())
    predicted = basis.dense(grid_ci.ravel(), grid_co.ravel()) @ coef
    assert np.abs(predicted / truth - 1).max() < 0.01


def test_the_basis_chosen_is_the_one_the_data_follow():
    rng = np.random.default_rng(2)
    truth = Basis(block=32, align=8)
    samples = {}
    for sig in ("a", "b"):
        ci, co = rng.integers(8, 128, 48), rng.integers(8, 128, 48)
        y = truth.dense(ci, co) @ np.r_[1, 0, 0, 0.02, 3, 2, 0, 0, 0.05, 0] * 1e-6
        samples[sig] = UnitSamples(True, list(zip(ci.tolist(), co.tolist())), y.tolist())
    assert choose_basis(samples) == truth


def test_vectorised_prediction_equals_one_network_at_a_time(tiny):
    model = synthetic_model(tiny)
    space = search_space(tiny)
    for g in (tiny, drop_blocks(tiny, list(space.blocks))):
        program = compile_costs(g)
        latency = model.program(g, program.width_groups, program.plan)
        rng = np.random.default_rng(3)
        hi = program.prototype_widths
        rows = np.stack([rng.integers(1, hi + 1) for _ in range(16)])
        vectorised = latency.predict(rows)
        plan = channel_plan(g)
        for row, predicted in zip(rows, vectorised):
            child = apply_widths(g, dict(zip(program.width_groups, row.tolist())), plan)
            assert model.predict(child) == pytest.approx(predicted, rel=1e-9)
        assert len(set(np.round(vectorised, 12))) > 8  # widths matter


def test_calibration_recovers_the_network_terms(tiny):
    true = synthetic_model(tiny)
    flat = LatencyModel(**{**true.__dict__, "units": {s: {**u, "alpha": 1.0} for s, u in true.units.items()},
                           "calibration": {}})
    plan = channel_plan(tiny)
    rng = np.random.default_rng(4)
    graphs = [apply_widths(tiny, {grp.id: int(rng.integers(1, grp.channels + 1)) for grp in plan.free_groups()}, plan)
              for _ in range(40)]
    space = search_space(tiny)
    graphs += [drop_blocks(g, list(space.blocks)) for g in graphs[:20]]
    measured = np.array([true.predict(g) for g in graphs])
    programs = [flat.program(g) for g in graphs]
    for ridge, tolerance in ((1e-9, 0.02), (CALIBRATION_RIDGE, 0.15)):  # exact; pulled towards scale 1
        calibration, alphas = calibrate(programs, measured, {s: s for s in true.units}, ridge)
        for sig, alpha in alphas.items():
            flat.units[sig]["alpha"] = alpha
        flat.calibration = calibration
        assert np.allclose([flat.predict(g) for g in graphs], measured, rtol=tolerance)


def test_the_file_round_trips_and_refuses_other_prototypes_runtimes_and_threads(tiny, tmp_path):
    model = synthetic_model(tiny)
    path = tmp_path / "target.json"
    model.save(path)
    again = LatencyModel.load(path)
    assert again.predict(tiny) == pytest.approx(model.predict(tiny))
    h = prototype_hash(print_network(tiny))
    again.check_for(h, "Tiny", "torch", 1)
    with pytest.raises(NetError, match="made for another prototype"):
        again.check_for("0" * 16, "Other")
    with pytest.raises(NetError, match="made for runtime torch, not onnxruntime"):
        again.check_for(h, "Tiny", runtime="onnxruntime")
    with pytest.raises(NetError, match=r"made at 1 thread\(s\), not 4"):
        again.check_for(h, "Tiny", threads=4)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON"),
    (json.dumps({"format": "netdsl-generator/1"}), "is not a netdsl latency model"),
    (json.dumps({"format": "netdsl-latency-model/1", "runtime": "torch"}), "is damaged"),
])
def test_bad_model_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(NetError, match=message):
        LatencyModel.load(path)
    with pytest.raises(NetError, match="cannot read latency model"):
        LatencyModel.load(tmp_path / "missing.json")


def test_a_layer_the_model_never_measured_is_named(tiny):
    model = synthetic_model(tiny)
    model.units.pop(network_units(tiny)[4].signature)
    with pytest.raises(NetError, match=r"no measurements of 1 layer.*conv k=3 \+ bn \+ relu on 6x6"):
        model.predict(tiny)


@pytest.mark.parametrize("aligned_cost", [0.0, 2e-8])
def test_the_layout_terms_are_kept_only_where_networks_pay_them(tiny, aligned_cost):
    # measurements with 3% noise, from a target whose aligned tensors cost aligned_cost per element, or nothing
    true = synthetic_model(tiny)
    true.calibration = {**true.calibration, "aligned_reads": aligned_cost, "aligned_writes": aligned_cost}
    flat = LatencyModel(**{**true.__dict__, "units": {s: {**u, "alpha": 1.0} for s, u in true.units.items()},
                           "calibration": {}})
    plan = channel_plan(tiny)
    rng = np.random.default_rng(5)
    def width(channels: int, aligned: bool) -> int:  # half the networks at multiples of 8, as profiling draws them
        w = int(rng.integers(1, channels + 1))
        return max(8, w // 8 * 8) if aligned and channels >= 8 else w

    graphs = [apply_widths(tiny, {grp.id: width(grp.channels, k % 2 == 1) for grp in plan.free_groups()}, plan)
              for k in range(36)]
    measured = np.array([true.predict(g) for g in graphs]) * rng.normal(1.0, 0.03, len(graphs))
    calibration, _ = calibrate([flat.program(g) for g in graphs], measured, {s: s for s in true.units})
    if aligned_cost:
        assert calibration["aligned_reads"] + calibration["aligned_writes"] > 0.5 * aligned_cost
    else:
        assert calibration["aligned_reads"] == calibration["aligned_writes"] == 0.0
