"""Probing: per-channel activation statistics and first-order Taylor importance of a network's modules.

A probe leaves no trace: hooks are removed, training flags, buffers and parameter .grad are
restored, even when the forward pass or the loss raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from compiler.diagnostics import NetError
from gensynth.tasks.objectives import select_output
from gensynth.training.device import model_device, training_mode

LossFn = Callable[..., torch.Tensor]


@dataclass
class ChannelStats:
    """Statistics of one module's output per channel (dim 1), over batch and spatial positions.

    importance is mean |a * dL/da| (first-order Taylor), or None when no loss was given.
    """

    shape: tuple[int, ...]
    mean_abs: np.ndarray
    variance: np.ndarray
    zero_fraction: np.ndarray
    importance: np.ndarray | None
    calls: int

    @property
    def channels(self) -> int:
        """Number of channels (the size of dim 1)."""
        return len(self.mean_abs)


class _Accumulator:
    """Running per-channel sums for one module, merged across calls (Chan's variance update)."""

    def __init__(self, name: str):
        self.name = name
        self.shape: tuple[int, ...] = ()
        self.calls = 0
        self.n = 0
        self.mean = self.m2 = self.abs_sum = self.zeros = self.importance = None
        self.grad_tracked = False

    def add(self, a: torch.Tensor) -> None:
        """Fold one output tensor (N, C, ...) into the per-channel statistics."""
        dims = [0, *range(2, a.ndim)]
        if self.calls and a.shape[1] != self.shape[1]:
            raise NetError(f"module {self.name!r} was called with {self.shape[1]} and then "
                           f"{a.shape[1]} output channels; probe it one call at a time")
        a64 = a.double()
        n_b = a.numel() // a.shape[1]
        mean_b = a64.mean(dims)
        m2_b = (a64 - mean_b.view(1, -1, *[1] * (a.ndim - 2))).square().sum(dims)
        abs_b, zeros_b = a64.abs().sum(dims), (a == 0).sum(dims).double()
        if self.calls == 0:
            self.shape, self.mean, self.m2, self.abs_sum, self.zeros = tuple(a.shape), mean_b, m2_b, abs_b, zeros_b
            self.importance = torch.zeros_like(mean_b)
        else:
            total = self.n + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / total)
            self.m2 = self.m2 + m2_b + delta.square() * (self.n * n_b / total)
            self.abs_sum, self.zeros = self.abs_sum + abs_b, self.zeros + zeros_b
        self.n += n_b
        self.calls += 1

    def add_grad(self, a: torch.Tensor, g: torch.Tensor) -> None:
        """Fold |a * dL/da| of one call into the importance sums."""
        dims = [0, *range(2, a.ndim)]
        self.importance += (a.double() * g.double()).abs().sum(dims)

    def result(self) -> ChannelStats:
        """Means over everything seen (a call whose output got no gradient counts as zero importance)."""
        def cpu(t: torch.Tensor) -> np.ndarray:
            return t.cpu().numpy().astype(np.float64)

        return ChannelStats(shape=self.shape, mean_abs=cpu(self.abs_sum / self.n),
                            variance=cpu((self.m2 / self.n).clamp_min(0)),
                            zero_fraction=cpu(self.zeros / self.n),
                            importance=cpu(self.importance / self.n) if self.grad_tracked else None,
                            calls=self.calls)


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    """Every module without children, by qualified name ('' if the model itself is a leaf)."""
    return {name: m for name, m in model.named_modules() if next(m.children(), None) is None}


def probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, loss_fn: LossFn | None = None,
          modules: dict[str, nn.Module] | None = None, *, train_mode: bool = False,
          output: str | None = None) -> dict[str, ChannelStats]:
    """Run the stimulus batch x and return per-channel output statistics of each probed module.

    modules defaults to every leaf module. With y (or loss_fn) the loss is backpropagated and each
    channel also gets its Taylor importance, mean over batch and positions of |a * dL/da|. The
    default loss is cross-entropy summed over the batch, so importance is a per-example mean that
    does not shrink with batch size; a custom loss_fn is called as loss_fn(output, y), or
    loss_fn(output) when y is None. The model runs in eval mode unless train_mode is True.
    Gradients are taken with torch.autograd.grad, so parameter .grad is never written; existing
    .grad values (and BN running statistics) are restored anyway, whatever the loss function does.
    """
    explicit = modules is not None
    targets = dict(modules) if explicit else _leaves(model)
    for name, m in targets.items():
        if not isinstance(m, nn.Module):
            raise NetError(f"probe target {name!r} is a {type(m).__name__}, not an nn.Module")
    if y is not None and len(y) != len(x):
        raise NetError(f"probe stimulus has {len(x)} inputs but {len(y)} labels")
    want_grad = y is not None or loss_fn is not None
    custom_loss = loss_fn is not None
    if want_grad and loss_fn is None:
        def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return functional.cross_entropy(out, target, reduction="sum")

    device = model_device(model)
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    accs = {name: _Accumulator(name) for name in targets}
    skipped: dict[str, str] = {}
    handles = []

    def make_hook(name: str) -> Callable:
        acc = accs[name]

        def hook(_module: nn.Module, _inputs: object, out: object) -> None:
            if not (isinstance(out, torch.Tensor) and out.is_floating_point() and out.ndim >= 2):
                skipped[name] = (type(out).__name__ if not isinstance(out, torch.Tensor)
                                 else f"a {out.dtype} tensor of shape {tuple(out.shape)}")
                return
            a = out.detach()
            acc.add(a)
            if want_grad and out.requires_grad:
                acc.grad_tracked = True
                kept = a.clone()  # later in-place ops (ReLU(inplace=True)) would overwrite `a`
                out.register_hook(lambda g: acc.add_grad(kept, g))

        return hook

    try:
        for p in params:
            p.grad = None
        for name, m in targets.items():
            handles.append(m.register_forward_hook(make_hook(name)))
        with training_mode(model, train_mode), torch.set_grad_enabled(want_grad):
            x_in = x.to(device)
            leaf = None
            if want_grad and x_in.is_floating_point():
                leaf = x_in.detach().clone().requires_grad_(True)
                x_in = leaf.clone()  # a non-leaf, so an in-place first op is allowed
            out = model(x_in)
            if want_grad:
                # A custom loss may want every named output; the default one needs a single logits tensor.
                pass_all = custom_loss and output is None and isinstance(out, Mapping) and len(out) > 1
                result = out if pass_all else select_output(out, output)
                loss = loss_fn(result) if y is None else loss_fn(result, y.to(device))
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise NetError("the probe's loss function must return a scalar tensor")
                inputs = ([leaf] if leaf is not None else []) + [p for p in params if p.requires_grad]
                if not loss.requires_grad or not inputs:
                    raise NetError("the probe's loss does not depend on the input or any trainable parameter")
                torch.autograd.grad(loss.reshape(()), inputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        for p, g in zip(params, saved_grads, strict=True):
            p.grad = g
        with torch.no_grad():
            for b, saved in saved_buffers:
                b.copy_(saved)
    if explicit:
        for name in targets:
            if name in skipped:
                raise NetError(f"probe target {name!r} returned {skipped[name]}; "
                               "only floating tensors with a channel dimension can be probed")
            if accs[name].calls == 0:
                raise NetError(f"probe target {name!r} was not called by the model's forward pass")
    return {name: acc.result() for name, acc in accs.items() if acc.calls}
