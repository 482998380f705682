"""Whether a run's requirements can be met at all by the networks its generator reaches, checked before any
training, and what the run says once about its search space."""

from __future__ import annotations

from pathlib import Path

from compiler.diagnostics import NetError
from gensynth.config import SynthConfig
from gensynth.requirements import Requirement
from gensynth.space import SearchSpace, largest_reachable, smallest_reachable
from gensynth.tasks.metrics import METRICS


def check_feasible(space: SearchSpace, reqs: list[Requirement], cfg: SynthConfig, latency=None,
                   latency_file: Path | None = None) -> dict:
    """Structural requirements no reachable network meets are an error before any training: an upper bound
    (macs<=) checked against the smallest network the generator can reach, a lower bound (params>=) against
    the largest (the prototype); with a latency model, a latency bound below the fastest network it predicts."""
    smallest = smallest_reachable(space, cfg.min_fraction, factorize=cfg.factorize > 0,
                                  stride=cfg.stride > 0, round_to=cfg.round_to, latency=latency)
    largest = None
    for r in reqs:
        if r.metric not in smallest:
            continue
        if r.comparison in ("<=", "<") and not r.holds(smallest[r.metric]):
            if r.metric == "latency":
                raise NetError(f"requirement '{r.text}' cannot be met: the fastest network the generator can "
                               "reach from this prototype is predicted to take "
                               f"{METRICS['latency'].format(smallest['latency'])} ({latency.runtime}, "
                               f"{latency.threads} thread(s), latency model {latency_file})",
                               notes=["relax the requirement, lower --min-fraction, allow --stride or "
                                      "--factorize, or start from a smaller prototype"])
            raise NetError(f"requirement '{r.text}' cannot be met: the smallest network the generator can "
                           f"reach from this prototype has {r.metric} = {smallest[r.metric]:,.0f}",
                           notes=["relax the requirement, lower --min-fraction, or start from a smaller prototype"])
        if r.comparison in (">=", ">"):
            largest = largest or largest_reachable(space)
            if largest is not None and r.metric in largest and not r.holds(largest[r.metric]):
                raise NetError(f"requirement '{r.text}' cannot be met: the largest network the generator can "
                               f"reach from this prototype (the prototype itself) has {r.metric} = "
                               f"{largest[r.metric]:,.0f}", notes=["the generator only removes; relax the "
                                                                   "requirement or start from a larger prototype"])
    return smallest


def round_to_notices(space: SearchSpace, round_to: int) -> list[str]:
    """What the run says once at its start: groups too narrow for --round-to."""
    narrow = space.unrounded(round_to) if round_to > 1 else []
    if not narrow:
        return []
    names = ", ".join(f"{grp.members[0]} ({grp.channels})" for grp in narrow[:6])
    more = f" and {len(narrow) - 6} more" if len(narrow) > 6 else ""
    return [f"--round-to {round_to}: {len(narrow)} layer group(s) have fewer channels than that and "
            f"keep their own step and minimum: {names}{more}"]
