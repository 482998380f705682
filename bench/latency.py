"""Batch-1 latency of several networks measured side by side (interleaved, so machine load affects them alike) with
the one measurement netdsl uses everywhere (gensynth.latency.measure)."""

from __future__ import annotations


def latency_side_by_side(texts: list[str], runtime: str = "torch", threads: int = 1, max_seconds: float = 20.0,
                         clock: str = "wall") -> list[float]:
    """Median batch-1 latency (s) of each network (.net source text), measured interleaved."""
    return [lat.median for lat in measure_side_by_side(texts, runtime, threads, max_seconds, clock)]


def measure_side_by_side(texts: list[str], runtime: str = "torch", threads: int = 1, max_seconds: float = 20.0,
                         clock: str = "wall"):
    """The Latency (median, interval, spread) of each network (.net source text), measured interleaved."""
    from gensynth.latency.measure import measure, runner
    from netdsl.loader import load_network_text

    return measure([runner(load_network_text(text), runtime, threads) for text in texts], max_seconds=max_seconds,
                   clock=clock)
