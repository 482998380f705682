"""The `netdsl show` and `netdsl check` commands, called as netdsl.cli.main.main([...])."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl import __version__
from netdsl.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
LENET = str(ROOT / "examples" / "lenet5.net")
RESNET = str(ROOT / "examples" / "resnet18.net")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal width; keep rows on one line


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_tree(capsys):
    code, out, err = run(capsys, "show", RESNET)
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0] == "ResNet18"
    # blocks are branches labelled with their block name; layers show their call and shape
    assert any(re.search(r"layer1\b", line) for line in lines)
    assert any(re.search(r"\b0 \(basic\)", line) for line in lines)
    assert any(re.search(r"conv1\s+conv\(64, k=7, stride=2, padding=3, bias=false\)\s+\[64, 112, 112\]", line)
               for line in lines)
    assert any(re.search(r"fc\s+linear\(1000\)\s+\[1000\]", line) for line in lines)
    assert "inputs image [3, 224, 224]" in out and "outputs logits [1000]" in out


def test_show_flat(capsys):
    code, out, _ = run(capsys, "show", RESNET, "--flat")
    assert code == 0
    assert re.search(r"layer1\.0\.conv1\s*│\s*conv\s*│\s*64, k=3, padding=1, bias=false\s*│\s*maxpool\s*│\s*\[64, 56, 56\]", out)
    assert re.search(r"layer1\.0\.add\s*│\s*add\s*│\s*│\s*layer1\.0\.bn2, maxpool", out)


def test_show_json(capsys):
    code, out, _ = run(capsys, "show", LENET, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "LeNet5" and data["inputs"] == ["image"] and data["outputs"] == {"logits": "f7"}
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["c1"]["op"] == "conv" and nodes["c1"]["shape"] == [6, 28, 28] and nodes["c1"]["inputs"] == ["image"]
    assert nodes["c1"]["attrs"] == {"out": 6, "k": 5, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}
    assert nodes["f7"]["shape"] == [10]
    assert ["c1", "relu"] in data["edges"] and len(data["edges"]) == len(data["nodes"]) - 1
    assert nodes["c1"]["span"][:2] == [LENET, 9]


def test_show_dot_to_file_and_stdout(capsys, tmp_path):
    target = tmp_path / "lenet.dot"
    code, out, _ = run(capsys, "show", RESNET, "--dot", str(target))
    assert code == 0 and "ResNet18" in out  # the tree is still shown
    dot = target.read_text()
    assert dot.startswith('digraph "ResNet18" {') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    assert '"layer1.0.conv1" -> "layer1.0.bn1";' in dot
    assert "subgraph cluster_" in dot and 'label="layer2.0"' in dot
    assert '"fc" -> "output:logits";' in dot
    code, out, _ = run(capsys, "show", LENET, "--dot", "-")
    assert code == 0 and out.startswith('digraph "LeNet5" {') and "LeNet5: " not in out


def test_show_with_parameters_and_network(capsys, tmp_path):
    code, out, _ = run(capsys, "show", LENET, "--param", "classes=7", "--json")
    assert code == 0 and json.loads(out)["nodes"][-1]["shape"] == [7]
    two = tmp_path / "two.net"
    two.write_text("network A { input x: [1, 4, 4]\n output o = x -> relu }\n"
                   "network B { input x: [1, 4, 4]\n output o = x -> sigmoid }\n")
    code, out, _ = run(capsys, "show", str(two), "--network", "A", "--json")
    assert code == 0 and json.loads(out)["name"] == "A"


def test_check_ok(capsys):
    code, out, err = run(capsys, "check", LENET)
    assert code == 0 and not err
    assert out.startswith(f"ok {LENET}: network LeNet5") and "logits [10]" in out
    code, out, _ = run(capsys, "check", LENET, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["network"] == "LeNet5"
    assert data["layers"] == 13 and data["outputs"] == {"logits": [10]}


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.net")), ids=lambda p: p.name)
def test_check_every_example(capsys, path):
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0 and out.startswith("ok ")


def test_errors_exit_2_with_a_located_message_and_no_traceback(capsys, tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network N {\n    input x: [1, 8, 8]\n    output y = x -> cnov(4, k=3)\n}\n")
    for command in ("check", "show"):
        code, out, err = run(capsys, command, str(bad))
        assert code == 2 and not out
        assert err.splitlines() == [
            f"{bad}:3:21: error: unknown op or block 'cnov'",
            "      output y = x -> cnov(4, k=3)",
            "                      ^^^^",
            "  note: did you mean 'conv' or 'dwconv'?",
        ]
        assert "Traceback" not in err


def test_usage_errors_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "check", str(tmp_path / "missing.net"))
    assert code == 2 and "error: cannot read" in err and "Traceback" not in err
    code, _, err = run(capsys, "show")
    assert code == 2 and "the following arguments are required: file" in err
    code, _, err = run(capsys, "show", LENET, "--param", "classes")
    assert code == 2 and "--param expects NAME=VALUE" in err
    code, _, err = run(capsys, "show", LENET, "--param", "classes=x")
    assert code == 2 and "'linear' parameter 'out' must be a positive integer, got the str 'x'" in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err
    code, out, _ = run(capsys)
    assert code == 2 and "usage: netdsl" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"netdsl {__version__}"


def test_show_does_not_import_torch():
    code = ("import sys; from netdsl.cli.main import main; rc = main(['show', 'examples/resnet18.net']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
