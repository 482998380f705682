"""The predictor: a GP over candidates' decisions that pools noisy scores, screens G's samples, ranks finalists."""

from __future__ import annotations

import numpy as np

from gensynth.generator import initial_state, sample
from gensynth.predictor import by_prediction, features, fit, screen, screened_seeds
from gensynth.records import Candidate, Decisions
from gensynth.requirements import parse_requirements
from gensynth.space import search_space
from netdsl.loader import load_network, load_network_text
from tests.gensynth.synth_fixtures import TINY_NET


def test_features_are_log_widths_then_rewrites_then_choices():
    space = search_space(load_network("examples/fashion_cnn.net"), widen=2.0)
    decisions = Decisions(widths={str(g.id): w for g, w in zip(space.groups, (16, 64, 256))}, strided=("conv_4",))
    x = features(space, decisions)
    # stage widths against the unwidened prototype's 32 / 64 / 128; strides of conv, conv_2, conv_4; four
    # factorizable convs; two skippable blocks
    assert x.tolist() == [-1.0, 0.0, 1.0, 0.0, 0.0, 1.0] + [0.0] * 4 + [0.0] * 2


def test_pooled_prediction_outranks_a_lucky_single_score():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(30, 2))
    y = 3 * x[:, 0] + rng.normal(0, 0.3, 30)
    lucky = np.array([[0.05, 0.5]])
    p = fit(np.vstack([x, lucky]), np.append(y, 3.5))  # one noisy measurement far above its neighbourhood
    mu, sd = p.predict(np.array([[0.95, 0.5], [0.05, 0.5]]))
    assert mu[0] > mu[1] and mu[1] < 2.0
    assert sd[0] < p.predict(np.array([[5.0, 5.0]]))[1][0]  # uncertain far from the data


def test_screen_prefers_promising_proposals_and_never_repeats_one():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(12, 1))
    p = fit(x, 5 * x[:, 0] + rng.normal(0, 0.1, 12))
    proposals = np.array([[0.0], [0.1], [0.9], [0.95], [0.9]])
    picked = screen(p, proposals, 3)
    assert len(set(picked)) == 3 and picked[0] in (2, 3, 4)


def test_screened_seeds_and_finalist_order_on_a_real_space():
    g = load_network_text(TINY_NET, "tiny.net")
    space = search_space(g)
    reqs = parse_requirements(["macs<=60K"])
    state = initial_state(space, reqs, "accuracy", stride=0.5)
    records = []
    for seed in range(8):
        s = sample(state, space, seed, reqs)
        score = 50 + 10 * len(s.strided) + np.random.default_rng(seed).normal(0, 1)
        records.append(Candidate(key=f"0:{seed}", cycle=0, seed=seed, arch=s.arch, decisions=s.decisions(),
                                 val={"acc": score / 100}, utility=score))
    seeds = list(range(100, 124))
    chosen = screened_seeds(state, space, reqs, records, seeds, 4)
    assert len(chosen) == 4 and set(chosen) <= set(seeds)
    assert screened_seeds(state, space, reqs, records, seeds, 4) == chosen  # deterministic: a resumed run agrees
    strided = [len(sample(state, space, s, reqs).strided) for s in chosen]
    assert max(strided) == 2  # the journal says strides score higher
    ranked = by_prediction(space, records)
    assert len(ranked[0].decisions.strided) == 2
