"""Re-estimate BatchNorm statistics of a network whose weights changed, before scoring it.

A pruned or briefly fine-tuned network's running means and variances describe the prototype (or the last few
batches of a moving average), not the network as it now is; evaluated with them, its accuracy says more
about stale statistics than about the architecture. EagleEye (Li et al., ECCV 2020, "adaptive BN") shows
that recomputing them on a few training batches makes candidate scores rank networks much as their fully
trained accuracy does. Weights are untouched: only the BN buffers change.
"""

from __future__ import annotations

import torch
from torch import nn

from gensynth.training.device import autocast, training_mode


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 128,
                          amp: torch.dtype | None = None) -> int:
    """Set every BatchNorm's running statistics to the exact average over x's batches; returns the BN count."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or len(x) < 2:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
    with training_mode(model, True):
        for i in range(0, len(x) - 1, batch_size):  # a trailing batch of one image has no variance: skip it
            chunk = x[i:i + batch_size]
            if len(chunk) < 2:
                break
            with autocast(amp, device):
                model(chunk.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return len(norms)
