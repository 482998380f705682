"""Batch-1 CPU latency of several networks measured side by side, so that machine load affects them alike."""

from __future__ import annotations

import statistics
import time


def latency_side_by_side(texts: list[str], runs: int = 200) -> list[float]:
    """Median batch-1 latency (s) of each network (.net source text), the models interleaved run by run."""
    import torch

    from compiler.backend.lower import lower_to_torch
    from netdsl.loader import load_network_text

    models = []
    for text in texts:
        g = load_network_text(text)
        models.append((lower_to_torch(g).eval(), torch.randn(1, *g.nodes[g.graph["inputs"][0]]["shape"])))
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for m, x in models:
            for _ in range(20):
                m(x)
        for _ in range(runs):
            for i, (m, x) in enumerate(models):
                t = time.perf_counter()
                m(x)
                times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]
