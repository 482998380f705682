"""Training-time augmentation of image batches."""

from __future__ import annotations

import torch
from torch.nn import functional

from compiler.diagnostics import NetError


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Per-image random crop from a zero-padded copy plus a random horizontal flip, as one gather."""
    if x.ndim != 4:
        raise NetError(f"augment needs (N, C, H, W) images, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    dev, wp = x.device, w + 2 * pad
    flat = functional.pad(x, (pad, pad, pad, pad)).reshape(b, c, (h + 2 * pad) * wp)
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    flip = torch.rand((b, 1), generator=generator, device=dev) < 0.5
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = dy + ar_h
    cols = dx + torch.where(flip, (w - 1) - ar_w, ar_w)
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return flat.gather(2, index).reshape(b, c, h, w)
