"""A user's own trained PyTorch model, imported with its state dict, is the prototype synthesis starts from."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gensynth.data import load_dataset
from netdsl.cli.main import main
from tests.gensynth.synth_fixtures import write_npz

USER_MODEL = '''
import torch
from torch import nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    def __init__(self, classes=4, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
'''


def test_import_a_trained_model_and_synthesise_from_its_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    spec = write_npz(tmp_path / "stripes.npz")
    (tmp_path / "small_cnn.py").write_text(USER_MODEL)
    namespace: dict = {}
    exec(compile(USER_MODEL, "small_cnn.py", "exec"), namespace)  # noqa: S102 (the test's own model)
    model = namespace["SmallCNN"]()
    data = load_dataset(spec)  # the same normalised images netdsl trains and scores on
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for i in range(0, len(data.train_y), 32):  # one epoch, in plain PyTorch
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.train_x[i:i + 32]), data.train_y[i:i + 32]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(data.val_x).argmax(1) == data.val_y).float().mean().item()
        test_accuracy = (model(data.test_x).argmax(1) == data.test_y).float().mean().item()
    torch.save(model.state_dict(), tmp_path / "trained.pth")

    assert main(["import", f"{tmp_path / 'small_cnn.py'}:SmallCNN", "--state-dict", str(tmp_path / "trained.pth"),
                 "--input", "1x12x12", "-o", str(tmp_path / "small.net")]) == 0
    assert "same outputs" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "small.net"), "--weights", str(tmp_path / "small.safetensors"), "--data", spec,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["acc"] == pytest.approx(test_accuracy, abs=1e-6)
    assert main(["train", str(tmp_path / "small.net"), "--weights", str(tmp_path / "small.safetensors"), "--data",
                 spec, "--epochs", "1", "--out", str(tmp_path / "tuned"), "--json"]) == 0  # fine-tunes the import
    capsys.readouterr()
    assert main(["synth", str(tmp_path / "small.net"), "--weights", str(tmp_path / "small.safetensors"),
                 "--data", spec, "--req", "acc>=0.3", "--req", "macs<=1M", "--cycles", "1", "--per-cycle", "1",
                 "--images", "64", "--finalists", "1", "--final-epochs", "1", "--device", "cpu",
                 "--out", str(tmp_path / "run"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prototype"]["val_acc"] == accuracy  # synthesis starts from exactly the user's trained model
    assert result["fermi_nets"] and (tmp_path / "run" / "report.md").exists()
    assert (tmp_path / "run" / "classes.txt").read_text().split() == ["0", "1", "2", "3"]
