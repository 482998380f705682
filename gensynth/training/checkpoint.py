"""Weights on disk: atomic safetensors checkpoints; loading is compiler.backend.weights (never runs code, names mismatches)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from compiler.backend.weights import load_weights_file


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary sibling, then os.replace: readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Atomically save the state dict as safetensors (contiguous CPU copies, so tied weights work)."""
    state = {k: v.detach().to("cpu", copy=True).contiguous()
             for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    blob = safetensors.torch.save(state)  # bytes, so the file gets the usual umask permissions
    atomic_write(Path(path), lambda p: p.write_bytes(blob))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors or a torch state dict (weights_only) into the model, naming every mismatch."""
    load_weights_file(model, path)
