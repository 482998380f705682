"""`netdsl profile`: writes a tagged latency model, never overwrites one silently, refuses bad options (exit 2)."""

from __future__ import annotations

import json

import pytest

from gensynth.latency.model import LatencyModel
from netdsl.cli.main import main
from tests.gensynth.synth_fixtures import TINY_NET
from tests.netdsl.cli.test_json_schemas import validate

QUICK = ["--samples", "4", "--fit-networks", "8", "--check-networks", "2", "--max-seconds", "0.2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("net") / "tiny.net"
    path.write_text(TINY_NET)
    return str(path)


def test_profile_writes_a_model_and_a_summary(tiny, tmp_path, capsys):
    out = tmp_path / "target.json"
    assert main(["profile", tiny, "-o", str(out), "--json", *QUICK]) == 0
    summary = json.loads(capsys.readouterr().out)
    validate("profile", summary)
    model = LatencyModel.load(out)
    assert summary["out"] == str(out) and summary["runtime"] == "torch" and summary["threads"] == 1
    assert summary["layer_kinds"] == len(model.units) and summary["accuracy"]["networks"] == 2
    assert model.prototype == "Tiny" and model.input_shape == [1, 12, 12]
    # a second run refuses to replace the file unless told to
    assert main(["profile", tiny, "-o", str(out), *QUICK]) == 2
    assert "exists" in capsys.readouterr().err


def test_profile_at_another_input_size_in_a_log(tiny, tmp_path, capsys):
    out = tmp_path / "big.json"
    assert main(["profile", tiny, "-o", str(out), "--input", "1x1x16x16", *QUICK]) == 0
    captured = capsys.readouterr()
    assert "held-out networks" in captured.out and "profiling: " in captured.err  # progress lines, not a bar
    assert LatencyModel.load(out).input_shape == [1, 16, 16]


@pytest.mark.parametrize("argv, message", [
    (["--runtime", "tvm"], "invalid choice: 'tvm'"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--input", "2x1x12x12"], "profiled at batch 1"),
    (["--samples", "2"], "--samples must be at least 4"),
    (["--max-seconds", "0"], "--max-seconds must be positive"),
    (["-o", "/nonexistent/dir/m.json"], "directory /nonexistent/dir does not"),
])
def test_bad_options_exit_2(tiny, capsys, argv, message):
    assert main(["profile", tiny, *argv]) == 2
    assert message in capsys.readouterr().err


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    text = capsys.readouterr().out
    assert "default 24" in text and "default: torch" in text and "--latency-model" in text
