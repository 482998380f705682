"""The fixed test split carved from data that has none: test reports stay comparable across runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError

TEST_FRACTION = 0.1
# Test-side subsets use fixed seeds, independent of the run's split seed.
TEST_SEED = 0x7E57


def test_split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices of the fixed test split of n items (at least one test item)."""
    perm = np.random.default_rng(TEST_SEED).permutation(n)
    n_test = max(1, int(round(n * TEST_FRACTION)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def carve_test_split(n: int, source: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The fixed test split of a folder's n images: sorted train and test indices and a note saying so."""
    if n < 2:
        raise NetError(f"{source}: only {n} image; at least 2 are needed to carve a test split")
    train, test = test_split_indices(n)
    return (train, test, f"no separate test split for {source}: carved a fixed test split of {len(test)} of {n} "
                         f"images ({TEST_FRACTION:.0%})")
