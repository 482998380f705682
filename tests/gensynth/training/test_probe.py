"""Probing: activation statistics, Taylor importance, and that a probe leaves the model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compiler.diagnostics import NetError
from gensynth.training.probe import probe

DEAD = 2  # the channel of the first conv that is forced to be exactly zero


def small_net(seed: int = 0) -> nn.Sequential:
    """conv-bn-relu-conv-relu-gap-linear with conv channel DEAD zeroed (weights and bias)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(inplace=True),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    with torch.no_grad():
        net[0].weight[DEAD] = 0
        net[0].bias[DEAD] = 0
        net[1].running_mean.copy_(torch.randn(4) * 0.1)
        net[1].running_mean[DEAD] = 0
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].bias.copy_(torch.randn(4) * 0.1)
        net[1].bias[DEAD] = 0
    return net


def stimulus(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 2, 7, 7, generator=g), torch.randint(0, 3, (n,), generator=g)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


def reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation and dL/da of model[index] computed by hand (eval mode, summed cross-entropy)."""
    model.eval()
    h = x
    for i, layer in enumerate(model):
        h = layer(h if i != 4 else h.clone())  # keep the probed activation out of the in-place ReLU
        if i == index:
            act = h
            act.retain_grad()
    nn.functional.cross_entropy(h, y, reduction="sum").backward()
    grad = act.grad
    model.zero_grad(set_to_none=True)
    return act.detach(), grad


def test_statistics_and_importance_match_a_hand_computation() -> None:
    model, (x, y) = small_net(), stimulus()
    stats = probe(model, x, y)
    assert list(stats) == ["0", "1", "2", "3", "4", "5", "6", "7"]  # every leaf, by qualified name
    for index in (0, 1, 3):
        a, g = reference(small_net(), x, y, index)
        s = stats[str(index)]
        dims = (0, 2, 3)
        assert s.shape == tuple(a.shape) and s.channels == a.shape[1] and s.calls == 1
        np.testing.assert_allclose(s.mean_abs, a.abs().mean(dims).numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s.variance, a.var(dims, unbiased=False).numpy(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(s.zero_fraction, (a == 0).double().mean(dims).numpy())
        np.testing.assert_allclose(s.importance, (a * g).abs().mean(dims).numpy(), rtol=1e-4, atol=1e-9)
        assert s.mean_abs.dtype == np.float64 and s.importance.dtype == np.float64
    linear = stats["7"]  # (N, C) outputs: statistics over the batch only
    assert linear.shape == (6, 3) and linear.channels == 3


def test_dead_channel_has_zero_importance_and_is_all_zeros() -> None:
    stats = probe(small_net(), *stimulus())
    for name in ("0", "1", "2"):
        s = stats[name]
        assert s.zero_fraction[DEAD] == 1.0 and s.mean_abs[DEAD] == 0.0 and s.variance[DEAD] == 0.0
        assert s.importance[DEAD] == 0.0
        alive = np.delete(s.importance, DEAD)
        assert (alive > 0).all(), name
    assert stats["0"].zero_fraction[np.arange(4) != DEAD].max() < 0.1
    assert stats["2"].zero_fraction[np.arange(4) != DEAD].min() > 0.1  # after ReLU


def test_inplace_relu_does_not_corrupt_the_previous_module() -> None:
    stats = probe(small_net(), *stimulus())
    conv, relu = stats["3"], stats["4"]  # the ReLU(inplace=True) overwrites the conv's output tensor
    assert conv.zero_fraction.max() < 0.1 < relu.zero_fraction.min()
    np.testing.assert_allclose(conv.importance, relu.importance, rtol=1e-6)  # |a g| is the same either side


def test_without_labels_there_is_no_importance_and_no_autograd() -> None:
    model = small_net()
    stats = probe(model, stimulus()[0])
    assert all(s.importance is None for s in stats.values())
    assert stats["0"].zero_fraction[DEAD] == 1.0


def test_model_is_left_exactly_as_it_was() -> None:
    model, (x, y) = small_net(), stimulus()
    model.train()
    model[5].eval()  # mixed flags must come back per module
    flags = [m.training for m in model.modules()]
    preset = torch.full_like(model[3].weight, 0.25)
    model[3].weight.grad = preset.clone()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    for train_mode in (False, True):
        probe(model, x, y, train_mode=train_mode)
        assert no_hooks(model)
        assert [m.training for m in model.modules()] == flags
        assert torch.equal(model[3].weight.grad, preset), "existing grads are neither changed nor accumulated"
        assert all(p.grad is None for n, p in model.named_parameters() if n != "3.weight")
        assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers()), "BN running stats restored"
        assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_eval_mode_by_default_and_train_mode_on_request() -> None:
    model, (x, y) = small_net(), stimulus()
    evaluated = probe(model, x, y)["1"]
    trained = probe(model, x, y, train_mode=True)["1"]
    # In train mode BN normalises with batch statistics: per-channel mean 0, variance ~1 (weight 1).
    alive = np.arange(4) != DEAD
    assert np.allclose(trained.variance[alive], 1.0, atol=1e-3)
    assert not np.allclose(evaluated.variance[alive], 1.0, atol=1e-2)


def test_cleanup_happens_even_when_the_loss_raises() -> None:
    model, (x, y) = small_net(), stimulus()
    model.train()

    def broken(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        probe(model, x, y, loss_fn=broken)
    assert no_hooks(model) and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_loss_that_calls_backward_itself_leaves_no_grads() -> None:
    model, (x, y) = small_net(), stimulus()

    def eager(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(out, target)
        loss.backward(retain_graph=True)
        return loss

    stats = probe(model, x, y, loss_fn=eager)
    assert stats["0"].importance is not None
    assert all(p.grad is None for p in model.parameters())


def test_explicit_modules_and_their_errors() -> None:
    model, (x, y) = small_net(), stimulus()
    stats = probe(model, x, y, modules={"first": model[0], "head": model[7]})
    assert list(stats) == ["first", "head"] and stats["first"].zero_fraction[DEAD] == 1.0
    with pytest.raises(NetError, match="'stranger' was not called"):
        probe(model, x, modules={"stranger": nn.ReLU()})
    with pytest.raises(NetError, match="'bad' is a str"):
        probe(model, x, modules={"bad": "conv"})
    assert no_hooks(model)


def test_shared_module_called_twice_pools_both_calls() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.act = nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.conv(self.act(x))).mean((2, 3))

    model = Twice()
    x = torch.randn(4, 3, 5, 5) * 3
    s = probe(model, x, torch.tensor([0, 1, 2, 0]))["act"]
    both = torch.cat([torch.tanh(x), torch.tanh(model.conv(torch.tanh(x)))]).detach()
    assert s.calls == 2 and s.shape == (4, 3, 5, 5)
    np.testing.assert_allclose(s.variance, both.var((0, 2, 3), unbiased=False).numpy(), rtol=1e-5)
    np.testing.assert_allclose(s.mean_abs, both.abs().mean((0, 2, 3)).numpy(), rtol=1e-5)


def test_dict_outputs_and_inplace_first_layer() -> None:
    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.ReLU(inplace=True)  # in-place straight on the input
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            z = self.act(x)
            return {"a": self.a(z), "b": self.b(z)}

    model, x = Heads(), torch.randn(8, 4)
    y = torch.randint(0, 3, (8,))
    x_before = x.clone()
    with pytest.raises(NetError, match="returns 2 outputs"):
        probe(model, x, y)
    stats = probe(model, x, y, output="a")
    assert stats["b"].importance.tolist() == [0.0, 0.0], "an output the loss ignores has zero importance"
    assert (stats["a"].importance > 0).all() and (stats["act"].importance >= 0).all()
    assert torch.equal(x, x_before), "the caller's stimulus is not modified"
    custom = probe(model, x, y, loss_fn=lambda out, t: nn.functional.cross_entropy(out["b"], t % 2))
    assert (custom["b"].importance > 0).all() and custom["a"].importance.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(NetError, match="inputs but 3 labels"):
        probe(model, x, y[:3])
