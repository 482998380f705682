"""Re-estimating BatchNorm statistics: exact averages, weights untouched, stale statistics repaired."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gensynth.training.recalibrate import recalibrate_batchnorm
from gensynth.training.train import TrainConfig, evaluate, train
from tests.gensynth.training.test_train import FAST, quadrant_dataset, tiny_net


def test_running_statistics_become_the_average_of_the_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    x = torch.randn(96, 1, 8, 8) * 2 + 1
    seen: dict[int, list[torch.Tensor]] = {1: [], 4: []}
    hooks = [model[i].register_forward_hook(lambda m, inp, out, i=i: seen[i].append(inp[0].detach()))
             for i in seen]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    model.eval()
    assert recalibrate_batchnorm(model, x, torch.device("cpu"), batch_size=32) == 2
    for h in hooks:
        h.remove()
    for i, inputs in seen.items():
        batch_means = torch.stack([t.mean((0, 2, 3)) for t in inputs])
        torch.testing.assert_close(model[i].running_mean, batch_means.mean(0))
        batch_vars = torch.stack([t.var((0, 2, 3), unbiased=True) for t in inputs])  # PyTorch keeps unbiased
        torch.testing.assert_close(model[i].running_var, batch_vars.mean(0))
        assert model[i].momentum == 0.1
    assert not model.training  # the mode it came in
    for k, v in weights.items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_stale_statistics_are_repaired() -> None:
    ds = quadrant_dataset(n_train=512)
    model = tiny_net(0)
    train(model, dataclasses.replace(ds, test_x=ds.test_x[:0], test_y=ds.test_y[:0]),
          TrainConfig(epochs=5, lr=0.05, **FAST))
    good = evaluate(model, ds.val_x, ds.val_y, device="cpu").accuracy
    bn = model[1]
    bn.running_mean.fill_(3.0)
    bn.running_var.fill_(0.05)
    stale = evaluate(model, ds.val_x, ds.val_y, device="cpu").accuracy
    recalibrate_batchnorm(model, ds.train_x, torch.device("cpu"))
    repaired = evaluate(model, ds.val_x, ds.val_y, device="cpu").accuracy
    assert good > 0.9
    assert stale < good - 0.2
    assert repaired >= good - 0.03


def test_a_network_without_batchnorm_is_left_alone() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    assert recalibrate_batchnorm(model, torch.randn(10, 1, 8, 8), torch.device("cpu")) == 0
