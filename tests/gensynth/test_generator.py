import json

import numpy as np
import pytest

from compiler.cost import network_cost
from compiler.diagnostics import NetError
from gensynth.generator import GeneratorState, initial_state, sample
from gensynth.records import Candidate, Decisions
from gensynth.requirements import parse_requirements
from gensynth.space import search_space, smallest_reachable
from gensynth.update import apply_pressure, update_generator
from netdsl.loader import load_network, load_network_text


def record(utility: float, decisions: dict, **kw) -> Candidate:
    """A search candidate's record holding what the update reads."""
    return Candidate(key="0:0", cycle=0, seed=0, arch="", utility=utility, decisions=Decisions.from_json(decisions),
                     **kw)


@pytest.fixture(scope="module")
def fashion():
    g = load_network("examples/fashion_cnn.net")
    return g, search_space(g)


def test_search_space_of_the_reference_prototype(fashion):
    g, space = fashion
    assert len(space.groups) >= 3
    assert {b.id for b in space.blocks} == {n for n, d in g.nodes(data=True) if d["op"] == "add"}
    for grp in space.groups:
        assert not grp.fixed and grp.channels > 1


def test_samples_meet_structural_requirements_and_are_deterministic(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=5M", "params<=60K", "acc>=0.9"])
    state = initial_state(space, reqs)
    samples = [sample(state, space, seed, reqs) for seed in range(20)]
    for s in samples:
        cost = network_cost(s.graph)
        assert s.meets and cost.macs <= 5e6 and cost.params <= 60e3
        assert (cost.macs, cost.params) == (s.macs, s.params)
    assert len({s.arch for s in samples}) >= 18
    again = sample(state, space, 7, reqs)
    assert again.arch == samples[7].arch and again.kept == samples[7].kept


def test_kept_channels_follow_probabilities(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=6M"])
    state = initial_state(space, reqs)
    gid = str(space.groups[-1].id)
    n = len(state.channels[gid])
    state.channels[gid] = [1.0] * (n // 2) + [0.02] * (n - n // 2)
    member = space.groups[-1].members[0]
    kept = [set(sample(state, space, seed, reqs).kept[member]) for seed in range(10)]
    favoured = np.mean([len(k & set(range(n // 2))) / max(1, len(k)) for k in kept])
    assert favoured > 0.8


def test_unreachable_requirement_is_reported_with_the_smallest_cost(fashion):
    g, space = fashion
    smallest = smallest_reachable(space, 0.1)
    assert 0 < smallest["macs"] < network_cost(g).macs


def test_generator_json_roundtrip_and_damage(tmp_path, fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=5M"])
    state = initial_state(space, reqs)
    path = tmp_path / "generator.json"
    state.save(path)
    loaded = GeneratorState.load(path)
    assert loaded.channels == state.channels and loaded.prototype_hash == state.prototype_hash
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(NetError, match="not a generator file"):
        GeneratorState.load(tmp_path / "bad.json")
    (tmp_path / "foreign.json").write_text(json.dumps({"format": "something-else/2"}))
    with pytest.raises(NetError, match="not a netdsl generator"):
        GeneratorState.load(tmp_path / "foreign.json")
    data = state.to_json()
    data["prototype"] += " "
    (tmp_path / "tampered.json").write_text(json.dumps(data))
    with pytest.raises(NetError, match="does not match its hash"):
        GeneratorState.load(tmp_path / "tampered.json")


def test_update_moves_probability_toward_important_channels(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=20M"])
    state = initial_state(space, reqs)
    gid = str(space.groups[0].id)
    n = len(state.channels[gid])
    importance = {str(grp.id): [1.0] * grp.channels for grp in space.groups}
    importance[gid] = [5.0 if c < n // 2 else 0.01 for c in range(n)]
    records = [record(50.0, {"dropped": []}, violation=0.0, importance=importance)]
    new = update_generator(state, space, records, reqs)
    p = np.asarray(new.channels[gid])
    assert p[: n // 2].mean() > p[n // 2:].mean() + 0.3
    assert new.cycle == state.cycle + 1 and state.channels[gid] == [1.0] * n  # old state untouched


def test_pressure_brings_the_expected_network_under_the_bound(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=3M"])
    state = apply_pressure(initial_state(space, reqs), space, reqs)
    expected = {grp.id: int(sum(state.channels[str(grp.id)])) for grp in space.groups}
    assert all(expected[grp.id] < grp.channels for grp in space.groups)


def test_prototype_with_nothing_rewritable_is_refused():
    g = load_network_text("""
network Frozen {
    input x: [3, 8, 8]
    output y = x -> fixed conv(8, k=3) -> gap -> linear(2)
}""", "frozen.net")
    with pytest.raises(NetError, match="nothing synthesis can rewrite"):
        search_space(g)


def test_magnitude_prior_makes_the_first_cycle_keep_strong_channels(fashion):
    from compiler.backend.lower import lower_to_torch
    from gensynth.generator import PRIOR_FLOOR, magnitude_prior

    g, space = fashion
    weights = {k: v.numpy().copy() for k, v in lower_to_torch(g).state_dict().items()}
    grp = max(space.groups, key=lambda grp: grp.channels)
    for node in grp.writers:  # filter norms grow with the channel index
        w = weights[f"{node}.weight"]
        weights[f"{node}.weight"] = np.abs(w) + np.arange(w.shape[0]).reshape(-1, *[1] * (w.ndim - 1))
    prior = magnitude_prior(space, weights)
    p = np.asarray(prior[str(grp.id)])
    assert p.min() == pytest.approx(PRIOR_FLOOR) and p.max() == pytest.approx(1.0) and np.all(np.diff(p) > 0)
    reqs = parse_requirements(["macs<=8M"])
    kept_with, kept_without = [], []
    for seed in range(12):
        for state, out in ((initial_state(space, reqs, channel_prior=prior), kept_with),
                           (initial_state(space, reqs), kept_without)):
            s = sample(state, space, seed, reqs)
            out.append(np.mean(s.kept[grp.writers[0]]))
    half = (grp.channels - 1) / 2  # the mean index of a random subset
    assert np.mean(kept_with) > half + grp.channels / 10 and abs(np.mean(kept_without) - half) < grp.channels / 8


def test_accuracy_utility_fills_the_budget_where_netscore_keeps_thetas_size(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=12M"])
    macs = {}
    for utility in ("netscore", "accuracy"):
        state = initial_state(space, reqs, utility=utility, stride=0.0)
        for grp in space.groups:  # θG that learnt to keep about a third of every group
            state.channels[str(grp.id)] = [0.3] * grp.channels
        macs[utility] = np.mean([sample(state, space, seed, reqs).macs for seed in range(8)])
    assert macs["accuracy"] <= 12e6 and macs["accuracy"] > 0.9 * 12e6
    assert macs["netscore"] < 0.6 * macs["accuracy"]


def _fractions(s, space) -> np.ndarray:
    return np.array([s.widths[str(grp.id)] / grp.channels for grp in space.groups])


def test_samples_try_different_splits_of_the_budget_between_groups(fashion):
    """One shared threshold alone gives every group about the same share; the per-group factor varies it."""
    g, space = fashion
    reqs = parse_requirements(["macs<=5M"])
    state = initial_state(space, reqs, utility="accuracy")
    spreads = {}
    for spread in (0.0, 0.4):
        state.spread = spread
        shares = np.array([_fractions(sample(state, space, seed, reqs), space) for seed in range(24)])
        spreads[spread] = float(np.std(shares[:, 0] - shares[:, -1]))  # stage 1's share against stage 3's
    assert spreads[0.4] > 2 * spreads[0.0]
    s = sample(state, space, 3, reqs)
    assert set(s.decisions().scales) == {str(grp.id) for grp in space.groups}


def test_learned_scales_shift_width_toward_a_group(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=5M"])
    state = initial_state(space, reqs, utility="accuracy")
    first, last = str(space.groups[0].id), str(space.groups[-1].id)
    mean_share = {}
    for bias in (-1.0, 1.0):
        state.scales = {gid: 0.0 for gid in state.scales} | {last: bias, first: -bias}
        shares = np.array([_fractions(sample(state, space, seed, reqs), space) for seed in range(16)])
        mean_share[bias] = shares[:, -1].mean() - shares[:, 0].mean()
        assert all(sample(state, space, seed, reqs).macs <= 5e6 for seed in range(4))
    assert mean_share[1.0] > mean_share[-1.0] + 0.2


def test_update_moves_scales_toward_what_good_candidates_drew_and_centres_them(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=5M"])
    state = initial_state(space, reqs, utility="accuracy")
    gids = list(state.scales)
    good = {gids[0]: 0.8, **{gid: -0.4 for gid in gids[1:]}}
    bad = {gids[0]: -0.8, **{gid: 0.4 for gid in gids[1:]}}
    records = [record(90.0, {"dropped": [], "scales": good}), record(60.0, {"dropped": [], "scales": bad})]
    new = update_generator(state, space, records, reqs)
    assert new.scales[gids[0]] > 0.2 and all(new.scales[gid] < 0 for gid in gids[1:])
    assert abs(sum(new.scales.values())) < 1e-9
    assert state.scales == {gid: 0.0 for gid in gids}  # the old state is untouched
    # records from before scales existed leave them alone
    assert update_generator(state, space, [record(1.0, {"dropped": []})], reqs).scales == state.scales


def test_a_generator_saved_before_scales_existed_still_loads(tmp_path, fashion):
    g, space = fashion
    data = initial_state(space, parse_requirements(["macs<=5M"])).to_json()
    del data["scales"], data["spread"], data["factorize"], data["stride"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = GeneratorState.load(tmp_path / "old.json")
    assert old.scales == {} and sample(old, space, 0, parse_requirements(["macs<=5M"])).macs <= 5e6


def test_the_projection_fills_a_mac_budget_to_within_a_few_percent(fashion):
    """The threshold is refined between grid points: no sample leaves much of the budget unused."""
    g, space = fashion
    for target in (11e6, 5.5e6, 2.7e6):
        reqs = parse_requirements([f"macs<={target:.0f}"])
        state = initial_state(space, reqs, utility="accuracy", stride=0.0)
        fill = np.array([sample(state, space, seed, reqs).macs / target for seed in range(64)])
        assert fill.max() <= 1.0
        assert np.median(fill) >= 0.95 and fill.min() >= 0.9


def test_the_generator_factorizes_convs_with_its_learned_probability(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=2.7M"])
    assert space.factorizable == ("conv_1", "conv_2", "conv_3", "conv_4")
    never = initial_state(space, reqs, utility="accuracy", factorize=0.0, stride=0.0)
    always = initial_state(space, reqs, utility="accuracy", factorize=1.0, stride=0.0)
    for seed in range(6):
        plain, split = sample(never, space, seed, reqs), sample(always, space, seed, reqs)
        assert plain.factorized == () and all(d["op"] != "dwconv" for _, d in plain.graph.nodes(data=True))
        assert split.factorized == space.factorizable and split.meets
        assert list(split.decisions().factorized) == list(space.factorizable)
        assert sum(split.widths.values()) > 1.5 * sum(plain.widths.values())  # the budget buys wider layers
    half = initial_state(space, reqs, factorize=0.5, stride=0.0)
    counts = [len(sample(half, space, seed, reqs).factorized) for seed in range(40)]
    assert 1 < np.mean(counts) < 3


@pytest.mark.parametrize("rewrite, decision, good, bad, untried", [
    ("factorize", "factorized", "conv_1", "conv_2", "conv_3"),
    ("stride", "strided", "conv", "conv_2", "conv_4"),
])
def test_a_rewrite_probability_follows_the_candidates_that_did_well(fashion, rewrite, decision, good, bad, untried):
    g, space = fashion
    reqs = parse_requirements(["macs<=5M"])
    records = [record(10.0, {decision: [good]}), record(0.0, {decision: [bad]})]
    new = getattr(update_generator(initial_state(space, reqs, **{rewrite: 0.5}), space, records, reqs), rewrite)
    assert new[good] > 0.5 > new[bad]
    assert new[untried] < 0.5  # no candidate rewrote it
    off = update_generator(initial_state(space, reqs, **{rewrite: 0.0}), space, records, reqs)
    assert set(getattr(off, rewrite).values()) == {0.0}  # switched off stays off


def test_a_higher_rate_and_lower_temperature_follow_the_best_candidate_further(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=5M"])
    # four candidates: the best strided conv, the other three conv_2
    records = [record(80.0, {"strided": ["conv"]})] + [record(u, {"strided": ["conv_2"]}) for u in (75.0, 70.0, 65.0)]
    start = initial_state(space, reqs, stride=0.5)

    def stride_after(**kw) -> dict[str, float]:
        return update_generator(start, space, records, reqs, **kw).stride

    default, faster, sharper = stride_after(), stride_after(rate=0.9), stride_after(temperature=0.25)
    assert 0.5 < default["conv"] < faster["conv"] and default["conv"] < sharper["conv"]
    assert sharper["conv_2"] < default["conv_2"]  # the three worse candidates count for less
    both = stride_after(rate=1.0, temperature=0.1)
    assert both["conv"] > 0.95 and both["conv_2"] < 0.05  # all the way to the best candidate's choices


def test_factorizing_lowers_the_smallest_reachable_network(fashion):
    g, space = fashion
    assert smallest_reachable(space, 0.1, factorize=True)["macs"] < smallest_reachable(space, 0.1)["macs"]


def test_the_generator_strides_convs_with_its_learned_probability(fashion):
    g, space = fashion
    reqs = parse_requirements(["macs<=2.7M"])
    assert space.stridable == ("conv", "conv_2", "conv_4")
    never = initial_state(space, reqs, utility="accuracy", stride=0.0)
    always = initial_state(space, reqs, utility="accuracy", stride=1.0)
    for seed in range(6):
        plain, strided = sample(never, space, seed, reqs), sample(always, space, seed, reqs)
        assert plain.strided == () and all(d["attrs"].get("stride", 1) == 1 for _, d in plain.graph.nodes(data=True)
                                           if d["op"] == "conv")
        assert strided.strided == space.stridable and strided.meets
        assert list(strided.decisions().strided) == list(space.stridable)
        out = g.graph["outputs"]["logits"]
        assert strided.graph.nodes[out]["shape"] == plain.graph.nodes[out]["shape"] == (10,)
        assert strided.graph.nodes["conv_4"]["shape"][1:] == (1, 1)  # 28 -s2-> 14 -pool-> 7 -s2-> 4 -pool-> 2 -s2-> 1
        assert sum(strided.widths.values()) > 1.5 * sum(plain.widths.values())  # the budget buys wider layers
    half = initial_state(space, reqs, stride=0.5)
    counts = [len(sample(half, space, seed, reqs).strided) for seed in range(40)]
    assert 0.8 < np.mean(counts) < 2.2
    assert sample(half, space, 3, reqs).arch == sample(half, space, 3, reqs).arch


def test_striding_lowers_the_smallest_reachable_network(fashion):
    g, space = fashion
    assert smallest_reachable(space, 0.1, stride=True)["macs"] < smallest_reachable(space, 0.1)["macs"] / 2


def test_samples_that_drop_chained_blocks_factorize_and_stride_lint_clean():
    from dataclasses import replace

    from compiler.lint import lint

    g = load_network("examples/mobilenet_v2.net")  # its inverted residuals read one another's adds directly
    space = search_space(g)
    reqs = parse_requirements(["macs<=200M"])
    state = initial_state(space, reqs, factorize=0.5, stride=0.5)
    state = replace(state, blocks={b: 0.5 for b in state.blocks})
    dropped = 0
    for seed in range(6):
        s = sample(state, space, seed, reqs)
        lint(s.graph)
        dropped += len(s.dropped)
        assert (network_cost(s.graph).macs, network_cost(s.graph).params) == (s.macs, s.params)
    assert dropped >= 6
