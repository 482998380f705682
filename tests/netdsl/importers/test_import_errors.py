"""Bad input to `netdsl import` (and binary files given to show/check/cost): a clear message, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from netdsl.cli.main import main

HERE = Path(__file__).resolve().parent
MODELS = HERE / "user_models.py"
ROOT = HERE.parents[2]

BAD_MODELS = '''
import torch
from torch import nn


class Tanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.act(self.conv(x)).flatten(1)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.mean() > 0:
            return y.flatten(1)
        return (-y).flatten(1)


def broken(width=4):
    return nn.Conv2d(1, width, 3, groups=3)
'''


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bad(tmp_path):
    path = tmp_path / "bad_models.py"
    path.write_text(BAD_MODELS)
    return path


def test_an_unsupported_op_names_the_op_the_module_the_source_line_and_what_is_supported(capsys, bad, tmp_path):
    code, _, err = run(capsys, "import", f"{bad}:Tanh", "--input", "1x8x8", "-o", tmp_path / "m.net")
    assert code == 2 and "Traceback" not in err
    line = BAD_MODELS.splitlines().index("        return self.act(self.conv(x)).flatten(1)") + 1
    assert "torch tanh" in err and "in act (Tanh)" in err and f"{bad}:{line}" in err
    assert "supported:" in err and "nn.Conv2d" in err
    assert not (tmp_path / "m.net").exists()


def test_data_dependent_control_flow_is_named(capsys, bad, tmp_path):
    code, _, err = run(capsys, "import", f"{bad}:Branchy", "--input", "1x8x8", "-o", tmp_path / "m.net")
    assert code == 2 and "Traceback" not in err
    line = BAD_MODELS.splitlines().index("        if y.mean() > 0:") + 1
    assert "control flow depends on tensor values" in err and f"bad_models.py:{line}: if y.mean() > 0:" in err
    assert "def forward" not in err  # torch.export's graph dumps stay hidden


def test_a_state_dict_that_does_not_fit_lists_the_keys(capsys, tmp_path):
    import tests.netdsl.importers.user_models as models

    state = models.FunctionalNet().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["conv2.bias"]
    state["fc2.weight"] = torch.zeros(3, 32)
    torch.save(state, tmp_path / "sd.pt")
    code, _, err = run(capsys, "import", f"{MODELS}:FunctionalNet", "--input", "1x28x28", "--state-dict",
                       tmp_path / "sd.pt", "-o", tmp_path / "m.net")
    assert code == 2 and "Traceback" not in err
    assert "missing in the file: conv2.bias" in err and "not in the model: extra.weight" in err
    assert "fc2.weight: the file has shape (3, 32), the model (10, 32)" in err


@pytest.mark.parametrize("argv, message", [
    (["{models}:NoSuch", "--input", "1x8x8"], "has no 'NoSuch'"),
    (["{models}:FunctionalNet"], "does not declare its input size"),
    (["{models}:FunctionalNet", "--input", "1x8"], "running the model on the example input failed"),
    (["{models}:FunctionalNet", "--input", "1x28x28", "--arg", "nope=3"], "unexpected keyword argument 'nope'"),
    (["{bad}:broken", "--input", "1x8x8"], "broken(...) raised ValueError"),
    (["{tmp}/missing.py:Net", "--input", "1x8x8"], "no such Python file"),
    (["{tmp}/missing.onnx"], "no such file"),
    (["{weights}"], "holds weights, not the architecture"),
    (["{scripted}"], "TorchScript archive, which netdsl does not import"),
    (["{net}"], "already a .net file"),
    (["{models}:FunctionalNet", "--input", "1x28x28", "--arg", "x"], "--arg expects KEY=VALUE"),
    (["{models}:FunctionalNet", "--input", "0x28"], "sizes must be positive"),
])
def test_bad_sources_and_arguments(capsys, tmp_path, bad, argv, message):
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(1, 2, 3)), str(tmp_path / "ts.pt"))
    names = {"models": MODELS, "bad": bad, "tmp": tmp_path, "weights": tmp_path / "w.safetensors",
             "scripted": tmp_path / "ts.pt", "net": ROOT / "examples" / "lenet5.net"}
    code, _, err = run(capsys, "import", *[a.format(**names) for a in argv], "-o", tmp_path / "m.net")
    assert code == 2 and "Traceback" not in err
    assert message in err


def test_existing_output_is_not_overwritten_without_force(capsys, tmp_path):
    (tmp_path / "m.net").write_text("# mine\n")
    code, _, err = run(capsys, "import", f"{MODELS}:FunctionalNet", "--input", "1x28x28", "-o", tmp_path / "m.net")
    assert code == 2 and "exists" in err and "--force" in err
    assert (tmp_path / "m.net").read_text() == "# mine\n"
    code, out, _ = run(capsys, "import", f"{MODELS}:FunctionalNet", "--input", "1x28x28", "-o", tmp_path / "m.net",
                       "--force")
    assert code == 0 and "same outputs" in out


def test_json_report(capsys, tmp_path):
    import json

    code, out, _ = run(capsys, "import", f"{MODELS}:FunctionalNet", "--input", "1x28x28", "-o", tmp_path / "m.net",
                       "--json")
    assert code == 0
    report = json.loads(out)
    assert report["network"] == "FunctionalNet" and report["kind"] == "pytorch" and report["params"] == 20_170
    assert report["max_abs_diff"] <= 1e-5 * report["output_scale"]
    assert Path(report["weights"]).exists()


@pytest.mark.parametrize("kind", ["onnx", "zip", "pickle", "safetensors"])
@pytest.mark.parametrize("command", ["show", "check", "cost"])
def test_binary_files_given_to_show_check_cost_say_which_command_reads_them(capsys, tmp_path, kind, command):
    path = tmp_path / f"model.{kind}"
    if kind == "onnx":
        pytest.importorskip("onnx")
        main(["export", str(ROOT / "examples" / "lenet5.net"), "--to", "onnx", "-o", str(path)])
    elif kind == "zip":
        torch.save({"w": torch.zeros(2)}, path)
    elif kind == "pickle":
        torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    else:
        safetensors.torch.save_file({"w": torch.zeros(2)}, str(path))
    capsys.readouterr()
    code, _, err = run(capsys, command, path)
    assert code == 2 and "Traceback" not in err
    assert "not a .net file" in err
    assert ("netdsl import" in err) or ("--weights" in err)


def test_import_help_lists_defaults():
    result = subprocess.run([sys.executable, "-m", "netdsl.cli.main", "import", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--state-dict" in result.stdout and "default: OUT.safetensors" in result.stdout
