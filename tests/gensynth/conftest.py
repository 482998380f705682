"""Fixtures every synthesis test module shares."""

import pytest

from tests.gensynth.synth_fixtures import write_npz


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    """A small npz classification set (one per test module), as an `npz:` data spec."""
    return write_npz(tmp_path_factory.mktemp("data") / "quadrants.npz")
