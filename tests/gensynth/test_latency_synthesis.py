"""Latency in synthesis: the projection meets a predicted latency bound by construction, the finalists are judged on
measurements, --round-to keeps channel counts at multiples, and bad input is refused before any training."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from compiler.diagnostics import NetError
from compiler.rewrite.coupling import channel_plan
from gensynth import loop as synth_module
from gensynth.generator import GeneratorState, initial_state, sample
from gensynth.inquisitor import Budget
from gensynth.latency.model import LatencyModel
from gensynth.latency.profile import ProfileOptions, profile
from gensynth.loop import SynthConfig, synthesize
from gensynth.requirements import parse_requirements
from gensynth.space import search_space
from netdsl.cli.main import main
from netdsl.loader import load_network_text
from tests.gensynth.latency.latency_fixtures import synthetic_model
from tests.gensynth.synth_fixtures import TINY_NET

QUICK = ProfileOptions(runtime="torch", samples=4, fit_networks=8, check_networks=2, unit_seconds=0.05,
                       network_seconds=0.1)


@pytest.fixture(scope="module")
def tiny():
    return load_network_text(TINY_NET, "tiny.net")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    """The prototype as a file, a latency model profiled on this machine, and one made for another network."""
    root = tmp_path_factory.mktemp("latency")
    net = root / "tiny.net"
    net.write_text(TINY_NET)
    measured = root / "tiny-torch.json"
    profile(tiny, QUICK)[0].save(measured)
    other = root / "other.json"
    model = synthetic_model(tiny)
    model.prototype, model.prototype_hash = "Other", "0123456789abcdef"
    model.save(other)
    return {"net": str(net), "model": str(measured), "other": str(other)}


def config(data, **kw) -> SynthConfig:
    budget = Budget(images=160, epochs=1, final_epochs=1, batch_size=32, lr=0.05, final_lr=0.05, probe_images=64,
                    latency_seconds=0.2, device="cpu")
    base = dict(data=data, requirements=["acc>=0.3"], cycles=1, per_cycle=3, budget=budget, prototype_epochs=1,
                finalists=1)
    base.update(kw)
    return SynthConfig(**base)


def test_every_sample_is_predicted_to_meet_the_latency_bound(tiny):
    model = synthetic_model(tiny)
    space = search_space(tiny)
    bound = 0.6 * model.predict(tiny)
    reqs = parse_requirements([f"latency<={bound * 1e3:.6f}ms"])
    state = initial_state(space, reqs)
    state.blocks = {b: 0.5 for b in state.blocks}
    samples = [sample(state, space, seed, reqs, model) for seed in range(30)]
    assert all(s.meets and s.latency <= bound for s in samples)
    assert all(s.latency == pytest.approx(model.predict(s.graph)) for s in samples)  # the projection's own figure
    assert max(s.latency for s in samples) > 0.8 * bound  # it fills the bound, not just shrinks
    blind = [sample(state, space, seed, reqs) for seed in range(30)]  # without a model nothing aims at latency
    assert sum(model.predict(s.graph) > bound for s in blind) >= 10


def test_round_to_keeps_every_width_at_a_multiple(tiny):
    space = search_space(tiny)
    state = initial_state(space, parse_requirements(["macs<=60K"]))
    state.round_to = 8
    for seed in range(10):
        s = sample(state, space, seed, parse_requirements(["macs<=60K"]))
        plan = channel_plan(s.graph)
        assert s.meets and all(grp.channels % 8 == 0 for grp in plan.free_groups())
    assert space.unrounded(8) == [] and len(space.unrounded(16)) == 1  # the 12-channel group has no 16


def test_tiny_synth_with_a_latency_requirement(tmp_path, tiny, data, files):
    model = LatencyModel.load(files["model"])
    bound = 0.8 * model.predict(tiny)
    req = f"latency<={bound * 1e3:.6f}ms"
    result = synthesize(tiny, config(data, requirements=["acc>=0.3", req], latency_model=files["model"]),
                        tmp_path / "run")
    assert (result.out / "latency-model.json").exists()
    assert json.loads((result.out / "generator.json").read_text())["latency_model"] == "latency-model.json"
    for r in result.candidates:
        assert r.predicted_latency <= bound * (1 + 1e-9)
        assert (req in r.missed) == (r.latency > bound)  # decided on the measurement
    final = result.finals[0]
    assert final.latency > 0 and final.latency_fast <= final.latency <= final.latency_slow
    assert "predicted" in result.report.read_text() and "PyTorch eager, 1 thread" in result.report.read_text()


def test_without_a_model_synth_profiles_this_machine_first(tmp_path, tiny, data, monkeypatch):
    quick = []

    def quick_profile(g, options, on_progress=None):
        quick.append(options)
        return profile(g, dataclasses.replace(options, **{k: getattr(QUICK, k) for k in (
            "samples", "fit_networks", "check_networks", "unit_seconds", "network_seconds")}), on_progress)

    monkeypatch.setattr("gensynth.latency.profile.profile", quick_profile)
    events = []
    result = synthesize(tiny, config(data, requirements=["acc>=0.3", "latency<=1s"], cycles=1, per_cycle=1),
                        tmp_path / "run", on_event=lambda kind, payload: events.append(kind))
    assert len(quick) == 1 and quick[0].runtime == "torch" and quick[0].threads == 1
    assert "latency_profile" in events and (result.out / "latency-model.json").exists()
    assert result.candidates[0].predicted_latency is not None


def test_a_latency_bound_below_the_fastest_network_is_refused_before_training(tmp_path, tiny, data, files):
    with pytest.raises(NetError, match=r"fastest network .* is predicted to take \d+\.\d+ ms"):
        synthesize(tiny, config(data, requirements=["latency<=1us"], latency_model=files["model"]), tmp_path / "r")
    assert not (tmp_path / "r" / "prototype.safetensors").exists()


@pytest.mark.parametrize("argv, message", [
    (["--latency-model", "other"], "was made for another prototype (Other"),
    (["--latency-model", "model", "--runtime", "onnxruntime"], "made for runtime torch, not onnxruntime"),
    (["--latency-model", "model", "--threads", "2"], "made at 1 thread(s), not 2"),
    (["--round-to", "0"], "--round-to must be at least 1"),
])
def test_bad_latency_options_exit_2(tmp_path, data, files, capsys, argv, message):
    argv = [files.get(a, a) for a in argv]
    assert main(["synth", files["net"], "--data", data, "--req", "latency<=1ms", "--out", str(tmp_path / "r"),
                 *argv]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "r" / "prototype.safetensors").exists()


def test_round_to_beyond_a_layers_channels_is_said_once(tmp_path, data, files, capsys, monkeypatch):
    monkeypatch.setattr(synth_module.Run, "prototype_weights", lambda self: (_ for _ in ()).throw(SystemExit(3)))
    with pytest.raises(SystemExit):
        main(["synth", files["net"], "--data", data, "--req", "macs<=60K", "--round-to", "16",
              "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert err.count("--round-to 16") == 1 and "(12)" in err


def test_a_generator_learned_with_a_latency_model_needs_it_beside_it(tmp_path, tiny, data, files):
    result = synthesize(tiny, config(data, requirements=["latency<=1s"], per_cycle=1, latency_model=files["model"]),
                        tmp_path / "run")
    generated = tmp_path / "gen"
    assert main(["generate", str(result.out / "generator.json"), "--count", "2", "-o", str(generated)]) == 0
    (result.out / "latency-model.json").unlink()
    assert main(["generate", str(result.out / "generator.json"), "--count", "1", "-o", str(tmp_path / "g2")]) == 2
    state = GeneratorState.load(result.out / "generator.json")
    assert state.latency_model == "latency-model.json" and np.isfinite(state.min_fraction)
