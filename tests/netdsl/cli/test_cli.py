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
    assert lines[0] == "ResNet18" and re.match(r"layer\s+call\s+shape\s+params\s+MACs$", lines[1])
    # blocks are branches with their block (and subtotals); layers show their call, shape and costs
    assert any(re.search(r"^├─ layer1\s+2 × basic\s+\[64, 56, 56\]\s+148 k\s+462 M$", line) for line in lines)
    assert any(re.search(r"^│ ├─ 0\s+basic_down\s+\[128, 28, 28\]", line) for line in lines)
    assert any(re.search(r"conv1\s+conv\(64, k=7, stride=2, padding=3, bias=false\)\s+\[64, 112, 112\]\s+9.41 k\s+118 M",
                         line) for line in lines)
    # an op reading more than the row above names its operands, relative to its block as @ resolves them
    assert any(re.search(r"add\s+add\(@bn2, @maxpool\)", line) for line in lines)
    assert any(re.search(r"└─ fc\s+linear\(1000\)\s+\[1000\]", line) for line in lines)
    assert "inputs image [3, 224, 224]" in out and "outputs logits [1000]" in out


def test_show_depth_collapses_blocks_with_subtotals(capsys):
    code, out, _ = run(capsys, "show", str(ROOT / "examples" / "resnet50.net"), "--depth", "1")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) < 20  # resnet50 has 176 layers; at depth 1, its stages are one row each
    layer3 = next(line for line in lines if "layer3" in line)
    assert re.search(r"layer3 …\s+bottleneck_down \+ 5 × bottleneck\s+\[1024, 14, 14\]\s+7.1 M\s+1.46 G", layer3)
    code, out, _ = run(capsys, "show", str(ROOT / "examples" / "resnet50.net"), "--depth", "2")
    assert sum("…" in line for line in out.splitlines()) == 16  # every bottleneck collapsed
    code, _, err = run(capsys, "show", RESNET, "--depth", "0")
    assert code == 2 and "--depth must be at least 1" in err


def test_show_flat(capsys):
    code, out, _ = run(capsys, "show", RESNET, "--flat")
    assert code == 0
    assert re.search(r"^layer1\.0\.conv1\s+conv\(64, k=3, padding=1, bias=false\)\s+\[64, 56, 56\]\s+36.9 k\s+116 M$",
                     out, re.M)
    assert re.search(r"^layer1\.0\.add\s+add\(@layer1\.0\.bn2, @maxpool\)\s+\[64, 56, 56\]$", out, re.M)


def test_show_shows_the_operands_of_skips(capsys):
    """The U-Net's decoder concatenates an encoder's output: the tree says which."""
    code, out, _ = run(capsys, "show", str(ROOT / "examples" / "unet_small.net"))
    assert code == 0
    concat = [line for line in out.splitlines() if re.search(r"─ concat(_\d+)?\s", line)]
    assert len(concat) == 2 and all("@" in line for line in concat)
    assert any("@double_conv_1" in line for line in concat)


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
    target = tmp_path / "resnet.dot"
    code, out, err = run(capsys, "show", RESNET, "--dot", str(target))
    assert code == 0 and not out  # the DOT file only: no tree on stdout
    assert f"wrote {target}" in err
    dot = target.read_text()
    assert dot.startswith('digraph "ResNet18" {') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    assert '"layer1.0.conv1" -> "layer1.0.bn1";' in dot
    assert '"fc" -> "output:logits";' in dot
    # labels break lines with DOT's \n, once escaped (not \\n), and carry shapes and costs
    assert 'label="conv1\\nconv(64, k=7, stride=2, padding=3, bias=false)\\n64x112x112\\n9.41 k params, 118 M MACs"' in dot
    assert "\\\\n" not in dot
    # blocks are nested clusters: layer2 holds layer2.0 (basic_down), which holds its downsample group
    layer2 = dot.index('label="layer2\\n')
    block = dot.index('label="layer2.0 (basic_down)\\n128x28x28\\n230 k params, 180 M MACs"')
    down = dot.index('label="layer2.0.downsample\\n')
    closing = dot.index("}", down)
    assert layer2 < block < down < closing and dot[layer2:closing].count("subgraph cluster_") == 2
    code, out, _ = run(capsys, "show", LENET, "--dot", "-")
    assert code == 0 and out.startswith('digraph "LeNet5" {') and "LeNet5: " not in out


def test_dot_renders_with_graphviz(tmp_path):
    """What a person does with the file: dot -Tsvg. Skipped only where Graphviz is not installed."""
    import shutil

    target = tmp_path / "unet.dot"
    assert main(["show", str(ROOT / "examples" / "unet_small.net"), "--dot", str(target)]) == 0
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    svg = tmp_path / "unet.svg"
    result = subprocess.run([dot, "-Tsvg", str(target), "-o", str(svg)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
    text = svg.read_text()
    assert text.count('class="cluster"') >= 10 and "double_conv_1 (double_conv)" in text
    assert "\\n" not in text  # every label line broken, none shown as a literal backslash-n


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
    assert out.startswith(f"ok {LENET}: network LeNet5, 12 layers") and "logits [10]" in out
    code, out, _ = run(capsys, "check", LENET, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["network"] == "LeNet5"
    assert data["layers"] == 12 and data["outputs"] == {"logits": [10]} and data["inputs"] == {"image": [1, 32, 32]}
    code, out, _ = run(capsys, "show", LENET)
    assert "LeNet5: 12 layers" in out  # check and show agree


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
    # a usage error in a subcommand points at that subcommand's help, wherever argparse noticed it
    code, _, err = run(capsys, "show", LENET, "--bogus")
    assert code == 2 and "netdsl show: unrecognized arguments: --bogus" in err and "see `netdsl show --help`" in err
    code, _, err = run(capsys, "cost", LENET, "--depth", "x")
    assert code == 2 and "see `netdsl cost --help`" in err
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


def test_every_option_has_help_that_states_its_default(capsys):
    """`netdsl CMD --help` explains every option and what happens when it is left out."""
    import argparse

    from netdsl.cli.main import HelpFormatter, build_parser

    parser = build_parser()
    for name, sub in parser.commands.items():
        formatter = HelpFormatter(name)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"netdsl {name} {action.option_strings or action.dest}: no help text"
            flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            if action.option_strings and not action.required and not flag:
                text = formatter._get_help_string(action) % {"default": action.default}
                assert "default" in text, f"netdsl {name} {action.option_strings}: help does not say its default"
    with pytest.raises(SystemExit):
        main(["cost", "--help"])
    out = capsys.readouterr().out
    assert "--dtype-bytes B" in out and "(default 4)" in out and "one row per layer" in out
