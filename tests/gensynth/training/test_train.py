"""Training loop, evaluation, checkpointing, interruption and weight loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from compiler.backend.weights import load_weights_file
from compiler.diagnostics import NetError
from gensynth.data import Dataset
from gensynth.training.augment import random_crop_flip
from gensynth.training.train import (
    EpochStats,
    TrainConfig,
    evaluate,
    resolve_device,
    train,
)

CLASSES = 4


def quadrant_dataset(n_train: int = 256, n_val: int = 64, n_test: int = 64, seed: int = 0) -> Dataset:
    """A learnable toy task: class k lights up quadrant k of an 8x8 image, plus noise."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, CLASSES, (n,), generator=g)
        x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
        for k in range(CLASSES):
            r, c = divmod(k, 2)
            x[y == k, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.5
        return x, y

    (tx, ty), (vx, vy), (sx, sy) = make(n_train), make(n_val), make(n_test)
    return Dataset(name="quadrants", train_x=tx, train_y=ty, val_x=vx, val_y=vy, test_x=sx, test_y=sy,
                   num_classes=CLASSES, input_shape=(1, 8, 8), class_names=tuple("abcd"),
                   mean=(0.0,), std=(1.0,))


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, CLASSES))


FAST = {"batch_size": 32, "device": "cpu"}


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_train_learns_checkpoints_and_reports_test(tmp_path: Path) -> None:
    ds, model = quadrant_dataset(), tiny_net()
    epochs: list[EpochStats] = []
    result = train(model, ds, TrainConfig(epochs=3, **FAST), out_dir=tmp_path / "run", on_epoch=epochs.append)
    assert [e.epoch for e in result.epochs] == [1, 2, 3] and epochs == result.epochs
    last = result.epochs[-1]
    assert last.val_acc > 0.9 and result.test.accuracy > 0.9 and last.train_loss < result.epochs[0].train_loss
    assert len(last.batch_losses) == 8 and last.images_per_s > 0 and last.lr == pytest.approx(0.0, abs=1e-12)
    assert result.device == "cpu" and result.amp == "off"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["finished"] and not metrics["interrupted"] and metrics["completed_epochs"] == 3
    assert metrics["val_acc"] == [e.val_acc for e in result.epochs]
    assert metrics["train_acc"] == [e.train_acc for e in result.epochs]
    assert metrics["test_accuracy"] == result.test.accuracy and metrics["device"] == "cpu"
    assert metrics["config"]["lr"] == 0.05 and metrics["config"]["weight_decay"] == 5e-4
    assert len(metrics["loss_curve"]["train_batch_loss"]) == 24 and metrics["wall_s"] > 0
    assert np.array(metrics["test_confusion"]).sum() == 64
    fresh = tiny_net(seed=5)
    load_weights_file(fresh, tmp_path / "run" / "weights.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert not list((tmp_path / "run").glob(".*tmp")), "temporary files must not be left behind"


def test_training_is_deterministic_given_the_seed() -> None:
    ds = quadrant_dataset()
    runs = []
    for seed in (7, 7, 8):
        model = tiny_net()
        result = train(model, ds, TrainConfig(epochs=2, seed=seed, augment=True, **FAST))
        runs.append((state(model), [e.batch_losses for e in result.epochs]))
    (a, la), (b, lb), (c, lc) = runs
    assert la == lb and all(torch.equal(a[k], b[k]) for k in a)
    assert la != lc


def test_interrupt_keeps_last_completed_epoch(tmp_path: Path) -> None:
    ds, model = quadrant_dataset(), tiny_net()
    after_epoch_1: dict[str, torch.Tensor] = {}

    def on_epoch(stats: EpochStats) -> None:
        if stats.epoch == 1:
            after_epoch_1.update(state(model))

    def on_batch(epoch: int, batch: int, num_batches: int, *_: float) -> None:
        if epoch == 2 and batch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, ds, TrainConfig(epochs=3, progress_interval=0.0, **FAST), out_dir=tmp_path,
              on_epoch=on_epoch, on_batch=on_batch)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["completed_epochs"] == 1 and not metrics["finished"]
    assert metrics["test_accuracy"] is None and len(metrics["val_acc"]) == 1
    saved = safetensors.torch.load_file(str(tmp_path / "weights.safetensors"))
    assert saved.keys() == after_epoch_1.keys()
    assert all(torch.equal(saved[k], after_epoch_1[k]) for k in saved)
    assert not torch.equal(model[0].weight.detach(), after_epoch_1["0.weight"]), "epoch 2 had started"
    fresh = tiny_net(seed=1)
    load_weights_file(fresh, tmp_path / "weights.safetensors")
    assert torch.equal(fresh[0].weight, after_epoch_1["0.weight"])


def test_batch_callback_arguments() -> None:
    calls: list[tuple] = []
    train(tiny_net(), quadrant_dataset(n_train=100), TrainConfig(epochs=2, progress_interval=0.0, **FAST),
          on_batch=lambda *args: calls.append(args))
    # 100 images at batch 32: 3 full batches and a tail of 4.
    assert [(c[0], c[1], c[2]) for c in calls] == [(e, b, 4) for e in (1, 2) for b in (1, 2, 3, 4)]
    for _, _, _, loss, acc, ips in calls:
        assert loss > 0 and 0.0 <= acc <= 1.0 and ips > 0
    few: list[tuple] = []
    train(tiny_net(), quadrant_dataset(n_train=100), TrainConfig(epochs=1, progress_interval=1e9, **FAST),
          on_batch=lambda *args: few.append(args))
    assert [c[1] for c in few] == [1, 4], "throttled: only the first and last batch of an epoch"


class ViewNet(nn.Module):
    """Flattens with .view(), which fails on a channels-last tensor: training must fall back to NCHW."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


def test_channels_last_is_an_internal_layout_choice() -> None:
    ds = quadrant_dataset()
    runs = {}
    for flag in (True, False):
        model = tiny_net()
        runs[flag] = train(model, ds, TrainConfig(epochs=1, channels_last=flag, **FAST)).epochs[0].batch_losses
        assert model[0].weight.is_contiguous() and model[4].weight.stride() == (54, 9, 3, 1), "layout handed back"
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-4)
    view_net = ViewNet()
    with pytest.raises(RuntimeError, match="view"):
        view_net.to(memory_format=torch.channels_last)(ds.train_x[:2].contiguous(memory_format=torch.channels_last))
    view_net.to(memory_format=torch.contiguous_format)
    assert train(view_net, ds, TrainConfig(epochs=1, **FAST)).test.count == 64


def test_single_image_tail_batch_is_dropped_for_batchnorm() -> None:
    result = train(tiny_net(), quadrant_dataset(n_train=65), TrainConfig(epochs=1, **FAST))
    assert len(result.epochs[0].batch_losses) == 2


def test_adamw_no_schedule_label_smoothing_and_no_val_split() -> None:
    ds = quadrant_dataset()
    ds = Dataset(**{**ds.__dict__, "val_x": ds.val_x[:0], "val_y": ds.val_y[:0]})
    cfg = TrainConfig(epochs=4, optimizer="adamw", schedule="none", label_smoothing=0.1, **FAST)
    result = train(tiny_net(), ds, cfg)
    assert result.epochs[-1].val_acc is None and result.epochs[-1].lr == 2e-3
    assert result.test.accuracy > 0.5


class DictNet(nn.Module):
    """A model with named outputs, as lowered multi-output networks return."""

    def __init__(self, heads: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.heads = nn.ModuleDict({f"h{i}": nn.Linear(16, CLASSES) for i in range(heads)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.body(x)
        return {name: head(z) for name, head in self.heads.items()}


def test_dict_outputs() -> None:
    ds = quadrant_dataset()
    assert train(DictNet(1), ds, TrainConfig(epochs=1, **FAST)).test.count == 64
    with pytest.raises(NetError, match=r"returns 2 outputs \(h0, h1\)"):
        train(DictNet(2), ds, TrainConfig(epochs=1, **FAST))
    assert train(DictNet(2), ds, TrainConfig(epochs=1, output="h1", **FAST)).test is not None
    with pytest.raises(NetError, match="no output named 'h7'; it has: h0, h1"):
        train(DictNet(2), ds, TrainConfig(epochs=1, output="h7", **FAST))


def test_wrong_class_count_is_a_net_error() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 7))
    with pytest.raises(NetError, match=r"output has shape \(32, 7\) but classifying 4 classes needs \(batch, 4\)"):
        train(model, quadrant_dataset(), TrainConfig(epochs=1, **FAST))


def test_divergence_is_reported_and_keeps_earlier_metrics(tmp_path: Path) -> None:
    class Nan(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x.flatten(1)) * float("nan")

    with pytest.raises(NetError, match="training diverged in epoch 1"):
        train(Nan(), quadrant_dataset(), TrainConfig(epochs=1, **FAST), out_dir=tmp_path)
    assert not (tmp_path / "weights.safetensors").exists()


class Oracle(nn.Module):
    """Predicts the class written in pixel (0, 0): known predictions for exact evaluation checks."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), CLASSES).float() * 10 * self.scale


def test_evaluate_confusion_rows_are_true_classes() -> None:
    y = torch.tensor([0, 0, 1, 2, 3, 3, 3])
    pred = torch.tensor([0, 1, 1, 2, 3, 0, 3])
    x = pred.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    model = Oracle().train()
    res = evaluate(model, x, y, batch_size=3)
    assert model.training, "evaluate restores the training flag"
    expected = np.zeros((4, 4), np.int64)
    for t, p in zip(y.tolist(), pred.tolist(), strict=True):
        expected[t, p] += 1
    assert res.confusion.dtype == np.int64 and (res.confusion == expected).all()
    assert res.accuracy == pytest.approx(5 / 7) and res.count == 7
    logits = nn.functional.one_hot(pred, CLASSES).float() * 10
    assert res.loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    np.testing.assert_allclose(res.per_class_accuracy(), [0.5, 1.0, 1.0, 2 / 3])
    with pytest.raises(NetError, match=r"labels must lie in 0\.\.3"):
        evaluate(model, x, y + 1)


def test_random_crop_flip_matches_a_per_image_reference() -> None:
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 5, (2, 1), generator=g), torch.randint(0, 5, (2, 1), generator=g)
    flip = torch.rand((2, 1), generator=g) < 0.5
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        crop = padded[i, :, dy[i, 0]:dy[i, 0] + 5, dx[i, 0]:dx[i, 0] + 6]
        assert torch.equal(out[i], crop.flip(-1) if flip[i, 0] else crop)
    assert out.shape == x.shape
    same = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    assert all(torch.equal(same[i], x[i]) or torch.equal(same[i], x[i].flip(-1)) for i in range(2))


def save_state(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    torch.save(sd, path)
    return path


def test_load_weights_names_every_mismatch(tmp_path: Path) -> None:
    model = tiny_net()
    sd = state(model)
    load_weights_file(tiny_net(3), save_state(tmp_path / "ok.pt", sd))
    load_weights_file(tiny_net(3), save_state(tmp_path / "ckpt.pt", {"state_dict": sd, "epoch": 3}))
    bad = dict(sd)
    bad["0.weight"] = torch.zeros(6, 1, 5, 5)
    del bad["9.bias"]
    bad["extra.weight"] = torch.zeros(2)
    safetensors.torch.save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(NetError, match="1 shape mismatch.*1 missing.*1 unexpected") as err:
        load_weights_file(model, tmp_path / "bad.safetensors")
    notes = "\n".join(err.value.notes)
    assert "0.weight: the file has shape (6, 1, 5, 5), the model (6, 1, 3, 3)" in notes
    assert "missing in the file: 9.bias" in notes and "not in the model: extra.weight" in notes
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(NetError, match="cannot read weights"):
        load_weights_file(model, tmp_path / "junk.pt")
    with pytest.raises(NetError, match="weights file not found"):
        load_weights_file(model, tmp_path / "none.safetensors")
    torch.save({"a": 1}, tmp_path / "notstate.pt")
    with pytest.raises(NetError, match="not a state dict of tensors"):
        load_weights_file(model, tmp_path / "notstate.pt")


def test_resolve_device_and_config_errors() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(NetError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(NetError, match="amp bf16 needs a CUDA device"):
            train(tiny_net(), quadrant_dataset(), TrainConfig(amp="bf16", **FAST))
    with pytest.raises(NetError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    for bad, message in [({"optimizer": "adam"}, "choose sgd or adamw"), ({"epochs": 0}, "epochs must be >= 1"),
                         ({"schedule": "step"}, "choose cosine or none"), ({"lr": -1.0}, "lr must be positive"),
                         ({"clip_grad_norm": 0.0}, "clip_grad_norm must be positive")]:
        with pytest.raises(NetError, match=message):
            train(tiny_net(), quadrant_dataset(), TrainConfig(**{**FAST, **bad}))


def test_gradient_clipping_bounds_every_step() -> None:
    torch.manual_seed(0)
    model = tiny_net()
    before = [p.detach().clone() for p in model.parameters()]
    # one SGD step without weight decay: the parameters move by lr * (1 + momentum) * the clipped gradient
    train(model, quadrant_dataset(n_train=64), TrainConfig(epochs=1, batch_size=64, lr=1.0, weight_decay=0.0,
                                                          schedule="none", clip_grad_norm=1e-3, device="cpu"))
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < float(moved) <= 1e-3 * 1.9 + 1e-9


def test_the_default_batch_size_gives_a_small_split_enough_steps_an_epoch():
    from gensynth.training.train import default_batch_size

    assert [default_batch_size(n) for n in (60000, 18000, 12000, 3600, 100)] == [128, 128, 64, 32, 16]
    result = train(tiny_net(), quadrant_dataset(n_train=100), TrainConfig(epochs=1, device="cpu"))
    assert len(result.epochs[0].batch_losses) == 7  # 100 images at batch 16 (six full batches and one of four)
    told = train(tiny_net(), quadrant_dataset(n_train=100), TrainConfig(epochs=1, batch_size=50, device="cpu"))
    assert len(told.epochs[0].batch_losses) == 2


def test_warmup_ramps_the_lr_linearly_then_follows_the_schedule():
    from gensynth.training.train import lr_schedule

    def rates(**config) -> list[float]:
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = lr_schedule(opt, TrainConfig(epochs=4, **config), steps_per_epoch=10)
        out = []
        for _ in range(40):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None:
                sched.step()
        return out

    cosine = rates(warmup_epochs=0.0)
    warm = rates(warmup_epochs=1.0)
    assert np.allclose(warm[:10], [0.1 * (k + 1) / 10 * c / 0.1 for k, c in enumerate(cosine[:10])])
    assert warm[10:] == cosine[10:]
    flat = rates(warmup_epochs=0.5, schedule="none")
    assert np.allclose(flat[:5], [0.02, 0.04, 0.06, 0.08, 0.1]) and flat[5:] == [0.1] * 35
    assert lr_schedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
                       TrainConfig(epochs=4, warmup_epochs=0.0, schedule="none"), 10) is None


def test_a_warmup_longer_than_the_run_is_refused():
    with pytest.raises(NetError, match="warmup_epochs must be between 0 and epochs"):
        TrainConfig(epochs=2, warmup_epochs=3.0).validate()
