"""Latency: the one measurement (measure.py), a target's latency model (model.py) and its profiling (profile.py)."""
