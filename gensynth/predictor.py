"""A predictor of a candidate's search score from its decisions, fitted on the journal as it grows.

A candidate's score (validation accuracy after a short fine-tune of inherited weights) is noisy: its 2,000-image
validation split alone has a standard error near one point, and the fine-tune's subset and order add more. Taking
the single best score among a dozen candidates then picks noise as often as structure. The predictor pools
the candidates instead: Gaussian-process regression over what each decided (per free group the log of its width
against the prototype's, which convs are strided or factorized, which blocks are dropped, which options are
picked), with the kernel's length scale and the noise chosen by marginal likelihood. Synthesis uses it twice:
each cycle after the first, G draws several samples per candidate and the predictor keeps those with the largest
expected improvement over the best predicted score so far (so a cycle's evaluations go where the journal says a
better network is likely); and the finalist is the candidate with the best predicted score rather than the best
single measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gensynth.records import Candidate, Decisions
from gensynth.space import SearchSpace

LENGTH_SCALES = (0.5, 1.0, 2.0, 4.0)  # RBF length scales tried, in feature units (a log2 width step is 1)
NOISE = (0.05, 0.1, 0.2, 0.4, 0.8)  # noise variance tried, as a share of the standardised scores' unit variance


def features(space: SearchSpace, decisions: Decisions) -> np.ndarray:
    """A candidate's decisions as a vector: log2(width / prototype width) per free group, then one 0/1 per stridable
    conv, factorizable conv and skippable block, then a one-hot per declared choice."""
    widths = decisions.widths
    out = []
    for grp in space.groups:
        base = len(space.original.get(grp.id, range(grp.channels)))
        out.append(float(np.log2(max(widths.get(str(grp.id), base), 1) / base)))
    strided, factorized, dropped = set(decisions.strided), set(decisions.factorized), set(decisions.dropped)
    out += [float(name in strided) for name in space.stridable]
    out += [float(name in factorized) for name in space.factorizable]
    out += [float(b.id in dropped) for b in space.blocks]
    picks = decisions.picks
    for did, options in space.decisions.items():
        out += [float(picks.get(did) == i) for i in range(len(options))]
    return np.asarray(out, dtype=float)


@dataclass(frozen=True)
class Predictor:
    """A fitted Gaussian process: posterior mean and standard deviation of the score at any decisions."""

    x: np.ndarray
    y: np.ndarray  # the scores it was fitted on
    alpha: np.ndarray
    chol: np.ndarray
    length: float
    noise: float
    mean: float
    scale: float

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-0.5 * d2 / self.length ** 2)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (of the underlying score, without the noise) at rows of x."""
        k = self._kernel(np.atleast_2d(x), self.x)
        mu = k @ self.alpha
        v = np.linalg.solve(self.chol, k.T)
        var = np.maximum(1.0 - (v ** 2).sum(0), 1e-12)
        return self.mean + self.scale * mu, self.scale * np.sqrt(var)


def fit(x: np.ndarray, y: np.ndarray) -> Predictor:
    """The GP over (x, y) whose length scale and noise maximise the marginal likelihood on a small grid."""
    x, y = np.atleast_2d(np.asarray(x, dtype=float)), np.asarray(y, dtype=float)
    mean, scale = float(y.mean()), float(y.std()) or 1.0
    z = (y - mean) / scale
    best = None
    for length in LENGTH_SCALES:
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        k = np.exp(-0.5 * d2 / length ** 2)
        for noise in NOISE:
            chol = np.linalg.cholesky(k + noise * np.eye(len(x)))
            alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
            evidence = -0.5 * z @ alpha - np.log(np.diag(chol)).sum()
            if best is None or evidence > best[0]:
                best = (evidence, Predictor(x, y, alpha, chol, length, noise, mean, scale))
    return best[1]


def expected_improvement(mu: np.ndarray, sd: np.ndarray, incumbent: float) -> np.ndarray:
    """E[max(f - incumbent, 0)] under f ~ N(mu, sd^2)."""
    from math import erf, sqrt

    z = (mu - incumbent) / sd
    cdf = 0.5 * (1 + np.vectorize(erf)(z / sqrt(2)))
    pdf = np.exp(-0.5 * z ** 2) / np.sqrt(2 * np.pi)
    return (mu - incumbent) * cdf + sd * pdf


def screen(predictor: Predictor, proposals: np.ndarray, count: int) -> list[int]:
    """Indices of `count` distinct proposals, chosen one at a time by expected improvement over the best predicted
    score so far; each chosen one then counts as observed at its predicted score (the "kriging believer"), so the
    next choice looks elsewhere."""
    x, y = predictor.x, predictor.y
    chosen: list[int] = []
    current = predictor
    for _ in range(min(count, len(proposals))):
        mu, sd = current.predict(proposals)
        incumbent = float(current.predict(current.x)[0].max())
        gain = expected_improvement(mu, sd, incumbent)
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        x = np.vstack([x, proposals[pick]])
        y = np.append(y, mu[pick])
        current = _refit(current, x, y)
    return chosen


def _refit(p: Predictor, x: np.ndarray, y: np.ndarray) -> Predictor:
    """The same hyperparameters on more data."""
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    chol = np.linalg.cholesky(np.exp(-0.5 * d2 / p.length ** 2) + p.noise * np.eye(len(x)))
    z = (y - p.mean) / p.scale
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
    return Predictor(x, y, alpha, chol, p.length, p.noise, p.mean, p.scale)


def target(record: Candidate) -> float:
    """What the predictor learns: the candidate's utility, less the update's penalty for missed requirements."""
    from gensynth.update import VIOLATION_PENALTY

    return float(record.utility - VIOLATION_PENALTY * record.violation)


def fitted(space: SearchSpace, records: list[Candidate]) -> Predictor:
    """The predictor fitted on evaluated candidates."""
    return fit(np.stack([features(space, r.decisions) for r in records]), np.array([target(r) for r in records]))


def screened_seeds(state, space: SearchSpace, reqs, records: list[Candidate], seeds: list[int],
                   count: int, latency=None) -> list[int]:
    """Of G's samples for `seeds` (projected with the run's latency model, if any, as the search samples them), the
    `count` whose networks the predictor (fitted on `records`) expects to improve the most; their seeds, in order."""
    from gensynth.generator import sample

    proposals = np.stack([features(space, sample(state, space, seed, reqs, latency).decisions()) for seed in seeds])
    return [seeds[i] for i in screen(fitted(space, records), proposals, count)]


def by_prediction(space: SearchSpace, records: list[Candidate]) -> list[Candidate]:
    """The records, best predicted utility first (the measurement breaks ties)."""
    if len(records) < 2:
        return list(records)
    mu, _ = fitted(space, records).predict(np.stack([features(space, r.decisions) for r in records]))
    order = sorted(range(len(records)), key=lambda i: (-mu[i], -target(records[i])))
    return [records[i] for i in order]
