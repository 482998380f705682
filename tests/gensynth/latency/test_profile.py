"""Profiling a small prototype on this machine: the model it fits predicts held-out networks of its search space
(loose bounds: the machine is shared), and it covers what synthesis can draw."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.diagnostics import NetError
from compiler.printer import print_network
from gensynth.generator import prototype_hash
from gensynth.latency.measure import measure, runner
from gensynth.latency.profile import ProfileOptions, profile, random_network
from gensynth.latency.units import network_units
from gensynth.space import search_space
from netdsl.loader import load_network_text
from tests.gensynth.synth_fixtures import TINY_NET

QUICK = ProfileOptions(runtime="torch", samples=4, fit_networks=8, check_networks=4, unit_seconds=0.05,
                       network_seconds=0.1)


@pytest.fixture(scope="module")
def tiny():
    return load_network_text(TINY_NET)


@pytest.fixture(scope="module")
def profiled(tiny):
    steps = []
    model, accuracy = profile(tiny, QUICK, lambda done, total, what: steps.append((done, total, what)))
    return model, accuracy, steps


def test_the_model_is_tagged_and_covers_every_unit_synthesis_draws(tiny, profiled):
    model, accuracy, steps = profiled
    assert model.prototype == "Tiny" and model.prototype_hash == prototype_hash(print_network(tiny))
    assert model.runtime == "torch" and model.threads == 1 and model.input_shape == [1, 12, 12]
    assert all(u["samples"] >= 4 for u in model.units.values())
    space = search_space(tiny)
    rng = np.random.default_rng(99)
    for _ in range(20):  # no layer of a drawn network is missing from the model
        model.predict(random_network(space, rng, QUICK.min_fraction))
    assert accuracy.networks == 4 and model.accuracy["networks"] == 4
    assert steps[-1][0] == steps[-1][1] and all(b >= a for (a, _, _), (b, _, _) in zip(steps, steps[1:]))


def test_predictions_of_held_out_networks_are_close_to_measurements(tiny, profiled):
    model = profiled[0]
    space = search_space(tiny)
    rng = np.random.default_rng(12345)  # not the profile's draws
    graphs = [random_network(space, rng, QUICK.min_fraction, aligned=8 if k % 2 else 1) for k in range(8)]
    measured = np.array([lat.median for lat in measure([runner(g, "torch") for g in graphs], max_seconds=3.0)])
    predicted = np.array([model.predict(g) for g in graphs])
    error = np.abs(predicted / measured - 1)
    assert np.median(error) < 0.35 and error.max() < 1.0, (predicted, measured)
    # bigger networks are predicted slower: the model ranks them, whatever the machine's load
    units = [len(network_units(g)) for g in graphs]
    assert np.corrcoef(predicted, measured)[0, 1] > 0.5, (predicted, measured, units)


def test_options_that_cannot_work_are_refused(tiny):
    with pytest.raises(NetError, match="--samples must be at least 4"):
        profile(tiny, ProfileOptions(samples=2))
    with pytest.raises(NetError, match="unknown runtime"):
        profile(tiny, ProfileOptions(runtime="tvm"))
