"""A latency model with made-up coefficients, for tests that need predictions but no clock."""

from __future__ import annotations

import numpy as np

from compiler.printer import print_network
from compiler.rewrite.residual import drop_blocks
from gensynth.generator import prototype_hash
from gensynth.latency.model import LatencyModel
from gensynth.latency.units import network_units
from gensynth.space import search_space


def synthetic_model(g, seed: int = 0) -> LatencyModel:
    """A model with made-up positive coefficients for every unit the prototype and its block-dropped variant have."""
    rng = np.random.default_rng(seed)
    space = search_space(g)
    units = {}
    for variant in (g, drop_blocks(g, list(space.blocks))):
        for unit in network_units(variant):
            units[unit.signature] = {"dense": unit.dense, "coef": (rng.random(10 if unit.dense else 6) * 1e-6).tolist(),
                                     "alpha": float(rng.uniform(0.5, 1.5)), "samples": 0, "error": 0.0, "what": ""}
    return LatencyModel(g.graph["name"], prototype_hash(print_network(g)), [1, 12, 12], "torch", 1, "wall",
                        {"block": 8, "align": 4}, units,
                        {"intercept": 2e-5, "per_unit": 1e-6, "aligned_reads": 1e-10, "aligned_writes": 2e-10})
