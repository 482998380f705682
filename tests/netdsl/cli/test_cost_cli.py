"""`netdsl cost` and the cost columns of `netdsl show`: figures, options, bad input (exit 2), and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.cost import network_cost
from netdsl.cli.cost import human
from netdsl.cli.main import main
from netdsl.loader import load_network
from tests.netdsl.cli.test_json_schemas import validate

ROOT = Path(__file__).resolve().parents[3]

SMALL = """
block unit(c) {
  conv(c, 3, padding=1, bias=false) -> bn -> relu
}
network small {
  input image: [3, 16, 16]
  unit(8) as stem
  unit(16) as body
  output logits = gap -> linear(10)
}
"""
TWO_INPUTS = """
network pair {
  input a: [3, 8, 8]
  input b: [3, 8, 8]
  output y = add(a, b) -> conv(4, 1)
}
"""


@pytest.fixture
def small(tmp_path) -> str:
    path = tmp_path / "small.net"
    path.write_text(SMALL)
    return str(path)


def run_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_table_and_totals(small, capsys):
    assert main(["cost", small]) == 0
    out = capsys.readouterr().out
    report = network_cost(load_network(small))
    assert "small" in out and "stem.conv" in out and "total" in out
    assert human(report.macs, "MACs") in out and "peak" in out


def test_json_matches_the_library(small, capsys):
    data = run_json(capsys, "cost", small, "--json")
    report = network_cost(load_network(small))
    assert data["totals"]["macs"] == report.macs and data["totals"]["params"] == report.params
    assert data["totals"]["peak_activation_bytes"] == report.peak_activation_elements * 4
    assert [n["name"] for n in data["nodes"]] == list(report.program.names)
    assert data["inputs"] == {"image": [1, 3, 16, 16]}


def test_depth_groups_by_block(small, capsys):
    data = run_json(capsys, "cost", small, "--json", "--depth", "1")
    blocks = {b["name"]: b for b in data["blocks"]}
    assert set(blocks) == {"image", "stem", "body", "gap", "linear"}
    assert blocks["stem"]["op"] == "unit" and blocks["stem"]["layers"] == 3
    assert sum(b["macs"] for b in blocks.values()) == data["totals"]["macs"]
    assert main(["cost", small, "--depth", "1"]) == 0
    assert "unit" in capsys.readouterr().out


def test_input_size_batch_and_dtype(small, capsys):
    base = run_json(capsys, "cost", small, "--json")["totals"]
    half = run_json(capsys, "cost", small, "--json", "--input", "1x3x8x8")["totals"]
    assert half["params"] == base["params"] and half["macs"] < base["macs"]
    batch = run_json(capsys, "cost", small, "--json", "--input", "image=4x3x16x16", "--dtype-bytes", "2")["totals"]
    assert batch["macs"] == 4 * base["macs"] and batch["params"] == base["params"]
    assert batch["peak_activation_bytes"] == 4 * base["peak_activation_bytes"] // 2


@pytest.mark.parametrize("spec, message", [
    ("1x3x16", "expected NxCxHxW"),
    ("3x16x16x2x2", "expected NxCxHxW"),
    ("1x3x0x16", "must be positive"),
    ("1x3x-4x16", "must be positive"),
    ("axbxc", "expected NxCxHxW"),
    ("other=1x3x16x16", "no input 'other'"),
])
def test_bad_input_sizes_exit_2(small, capsys, spec, message):
    assert main(["cost", small, "--input", spec]) == 2
    assert message in capsys.readouterr().err


def test_several_inputs_need_names(tmp_path, capsys):
    path = tmp_path / "pair.net"
    path.write_text(TWO_INPUTS)
    assert main(["cost", str(path), "--input", "1x3x4x4"]) == 2
    assert "name one" in capsys.readouterr().err
    data = run_json(capsys, "cost", str(path), "--json", "--input", "a=1x3x4x4", "--input", "b=1x3x4x4")
    assert data["totals"]["macs"] == 4 * 16 * 3
    assert main(["cost", str(path), "--input", "a=1x3x4x4", "--input", "b=2x3x4x4"]) == 2
    assert "same batch size" in capsys.readouterr().err


def test_overflow_and_unknown_op_exit_2(tmp_path, capsys):
    huge = tmp_path / "huge.net"
    huge.write_text("network huge {\n input x: [100000000]\n output y = linear(100000000000)\n}")
    assert main(["cost", str(huge)]) == 2
    assert "overflows 64-bit integers" in capsys.readouterr().err
    odd = tmp_path / "odd.net"
    odd.write_text("network odd {\n input x: [3, 8, 8]\n output y = frobnicate(3)\n}")
    assert main(["cost", str(odd)]) == 2
    assert "frobnicate" in capsys.readouterr().err
    assert main(["cost", str(odd.with_name("missing.net"))]) == 2


def test_show_has_cost_columns(small, capsys):
    assert main(["show", small, "--flat"]) == 0
    out = capsys.readouterr().out
    assert "MACs" in out and "params" in out
    data = run_json(capsys, "show", small, "--json")
    report = network_cost(load_network(small))
    assert sum(n["macs"] for n in data["nodes"]) == report.macs
    assert {n["name"]: n["params"] for n in data["nodes"]}["stem.bn"] == 16
    assert main(["show", small]) == 0
    assert "MACs" in capsys.readouterr().out


def test_cost_show_check_never_import_torch(small):
    code = (f"import sys\nfrom netdsl.cli.main import main\n"
            f"for cmd in ('cost', 'show', 'check'):\n    assert main([cmd, {small!r}]) == 0\n"
            f"assert main(['show', {small!r}, '--flat']) == 0\n"
            "print('TORCH' if 'torch' in sys.modules else 'CLEAN')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip().endswith("CLEAN")


def test_cost_arguments_of_any_size_are_messages(small, capsys):
    assert main(["cost", small, "--input", "1x3x32x" + "9" * 5000]) == 2
    assert "sizes of at most 12 digits" in capsys.readouterr().err
    assert main(["cost", small, "--input", "999999999999x3x32x32"]) == 0  # a huge batch is still counted
    assert "e+" in capsys.readouterr().out
    assert main(["cost", small, "--dtype-bytes", "10" + "0" * 30]) == 2
    assert "--dtype-bytes must be 1 to 16" in capsys.readouterr().err


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_cost_latency_measures_on_the_runtime_asked_for(small, capsys, runtime):
    data = run_json(capsys, "cost", small, "--json", "--latency", "--runtime", runtime, "--threads", "1")
    validate("cost", data)
    lat = data["latency"]
    assert lat["runtime"] == runtime and lat["threads"] == 1 and lat["runs"] >= 12
    assert 0 < lat["fast"] <= lat["median"] <= lat["slow"] and lat["low"] <= lat["median"] <= lat["high"]
    assert main(["cost", small, "--latency", "--input", "2x3x16x16"]) == 0
    out = capsys.readouterr().out
    assert "latency (batch 2, this machine)" in out and all(len(line) <= 80 for line in out.splitlines())


def test_cost_latency_refuses_bad_threads(small, capsys):
    assert main(["cost", small, "--latency", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
