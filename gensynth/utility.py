"""Utilities U(N) that synthesis maximises: NetScore (default) and information density."""

from __future__ import annotations

import math


def netscore(accuracy: float, params: float, macs: float, alpha: float = 2.0, beta: float = 0.5,
             gamma: float = 0.5) -> float:
    """NetScore (Wong 2018): 20 log10(a^alpha / (p^beta m^gamma)); a in %, p in millions of params, m in millions of MACs."""
    a = max(accuracy * 100.0, 1e-9)
    p = max(params / 1e6, 1e-12)
    m = max(macs / 1e6, 1e-12)
    return 20.0 * math.log10(a**alpha / (p**beta * m**gamma))


def information_density(accuracy: float, params: float) -> float:
    """Accuracy (%) per parameter, in % per million parameters."""
    return accuracy * 100.0 / max(params / 1e6, 1e-12)


UTILITIES = {
    "netscore": lambda rec: netscore(rec["accuracy"], rec["params"], rec["macs"]),
    "density": lambda rec: information_density(rec["accuracy"], rec["params"]),
    # the best accuracy the requirements allow (in %, on the scale of the requirement penalty): nothing pulls
    # the network below its MAC or parameter budget, as it is what pruning tools are asked for
    "accuracy": lambda rec: rec["accuracy"] * 100.0,
}
