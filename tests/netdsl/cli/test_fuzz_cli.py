"""A fuzzer over bytes: `check`, `show` and `cost` exit 0, or exit 2 with a located one-screen message, within
10 s of CPU, whatever the file holds (see fuzz_inputs.py; bench/fuzz.py runs the same at scale)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.netdsl.cli.fuzz_inputs import MUTATIONS, ODD_BYTES, run_command, seeds

SEEDS = seeds()
SMALL = [i for i, (name, _) in enumerate(SEEDS) if name in ("lenet5.net", "fashion_cnn.net", "unet_small.net",
                                                              "squeezenet1_1.net")]


def judge(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.net"
    path.write_bytes(data)
    outcome = run_command("check", path)
    outcomes = [outcome] + ([run_command(c, path) for c in ("show", "cost")] if outcome.verdict == "ok" else [])
    for o in outcomes:
        assert o.verdict in ("ok", "located"), f"netdsl {o.command}: {o.verdict}\n{o.stderr[:2000]}\ninput: {data[:300]!r}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SMALL), st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3),
       st.integers(0, 2**32 - 1))
def test_mutated_examples_exit_0_or_2_located(tmp_path, index, names, seed):
    rng = random.Random(seed)
    data = SEEDS[index][1]
    for name in names:
        data = MUTATIONS[name](data, rng, {"depth": [50, 250, 1000], "line": [100, 2000], "copies": [2, 10],
                                           "repeat": False})
    judge(tmp_path, data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(ODD_BYTES),
                          st.sampled_from([b"network N {", b"input x: [1, 4, 4]", b"output y = x", b"}", b"-> relu",
                                           b"conv(4, 3)", b"1e400", b"9" * 30, b"(" * 300, b"\n"])), max_size=20)
       .map(b"".join))
def test_arbitrary_bytes_exit_0_or_2_located(tmp_path, data):
    judge(tmp_path, data)


def test_a_syntax_error_after_a_long_word(tmp_path):
    """The campaign's three hangs after the rebase: a 50,000-character word (here in a comment) before a syntax
    error took 15 s of CPU (a regex for the word before the error backtracked at every character of it)."""
    word = "x" * 50_000
    for tail in ("\n} -> relu\n", " 512)\n}\n", "\n"):
        judge(tmp_path, f"network N {{\n input x: [1, 4, 4]  # {word}\n output y = x -> conv(4, k=1{tail}".encode())
