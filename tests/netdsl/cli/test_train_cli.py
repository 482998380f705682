import json

from netdsl.cli.main import main
from tests.gensynth.synth_fixtures import TINY_NET, write_npz


def test_train_then_eval_on_the_command_line(tmp_path, capsys):
    data = write_npz(tmp_path / "d.npz")
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    out = tmp_path / "run"
    assert main(["train", str(net), "--data", data, "--epochs", "2", "--batch-size", "32", "--device", "cpu",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 2 and 0 <= summary["test_acc"] <= 1
    for name in ("weights.safetensors", "metrics.json", "model.net", "canonical.net"):
        assert (out / name).exists(), name
    assert main(["eval", str(net), "--weights", str(out / "weights.safetensors"), "--data", data, "--device", "cpu",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    confusion = result["confusion"]
    assert len(confusion) == 4 and all(len(row) == 4 for row in confusion)
    assert sum(map(sum, confusion)) == result["count"]
    assert abs(result["metrics"]["acc"] - summary["test_acc"]) < 1e-9  # the same weights on the same test split


def test_training_input_errors_exit_2(tmp_path, capsys):
    data = write_npz(tmp_path / "d.npz")
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET.replace("classes=4", "classes=10"))
    assert main(["train", str(net), "--data", data, "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    assert "10 output classes" in capsys.readouterr().err
    assert main(["train", str(net), "--data", "mnist-ish", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "fashion-mnist" in err and "npz:" in err and "Traceback" not in err
    assert main(["train", str(net), "--data", f"idx:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "r")]) == 2
    assert "nowhere" in capsys.readouterr().err
    net.write_text(TINY_NET)
    assert main(["eval", str(net), "--weights", str(tmp_path / "missing.safetensors"), "--data", data]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_a_network_that_cannot_fit_in_memory_is_refused_before_allocating(tmp_path, capsys):
    """About 36 TB of weights: refused at the layer, with the estimate, before torch allocates anything."""
    data = write_npz(tmp_path / "d.npz")
    net = tmp_path / "huge.net"
    net.write_text(TINY_NET.replace("conv(24, k=3", "conv(1000000, k=1, bias=false) -> conv(1000000, k=3"))
    for argv in (["train", str(net), "--data", data, "--out", str(tmp_path / "r")],
                 ["eval", str(net), "--weights", str(tmp_path / "w.safetensors"), "--data", data]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{net}:6:") and "needs at least" in err and "9,000,000,000,000 parameters" in err
    assert not (tmp_path / "r").exists()


def test_train_never_replaces_a_run_silently(tmp_path, capsys, monkeypatch):
    data = write_npz(tmp_path / "d.npz")
    folder = tmp_path / "proj"
    folder.mkdir()
    net = folder / "model.net"
    net.write_text(TINY_NET)
    quick = ["--data", data, "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--json"]
    assert main(["train", str(net), *quick, "--out", str(folder)]) == 0  # the source is model.net already
    weights = (folder / "weights.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(net), *quick, "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "already holds a training run (weights.safetensors, metrics.json)" in err and "--force" in err
    assert (folder / "weights.safetensors").read_bytes() == weights
    assert main(["train", str(net), *quick, "--out", str(folder), "--force", "--seed", "1"]) == 0
    assert (folder / "weights.safetensors").read_bytes() != weights
    (tmp_path / "file").write_text("x")
    assert main(["train", str(net), *quick, "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # no --out: runs/Tiny, then runs/Tiny-2 beside it
    for expected in ("runs/Tiny", "runs/Tiny-2"):
        assert main(["train", str(net), *quick]) == 0
        assert json.loads(capsys.readouterr().out)["out"] == expected


def test_train_keeps_a_different_model_net_and_refuses_bad_seeds(tmp_path, capsys):
    data = write_npz(tmp_path / "d.npz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.net").write_text("# the user's own file\n")
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    assert main(["train", str(net), "--data", data, "--epochs", "1", "--out", str(out)]) == 2
    assert "is not a copy of" in capsys.readouterr().err
    assert (out / "model.net").read_text() == "# the user's own file\n"
    for bad in ("-1", "9" * 25):
        assert main(["train", str(net), "--seed", bad]) == 2
        assert "a seed is a whole number from 0 to" in capsys.readouterr().err


def test_train_takes_a_warmup_and_refuses_one_longer_than_the_run(tmp_path, capsys):
    data = write_npz(tmp_path / "d.npz")
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    quick = [str(net), "--data", data, "--epochs", "2", "--batch-size", "32", "--device", "cpu"]
    assert main(["train", *quick, "--warmup-epochs", "0.5", "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["warmup_epochs"] == 0.5
    capsys.readouterr()
    assert main(["train", *quick, "--warmup-epochs", "3", "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "warmup_epochs must be between 0 and epochs (2), got 3.0" in err and "Traceback" not in err
