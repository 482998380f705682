"""Weights on disk: atomic safetensors checkpoints, and loading that never executes code and names every mismatch."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from compiler.diagnostics import NetError


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
    path = Path(path)
    if not path.is_file():
        raise NetError(f"weights file not found: {path}")
    with path.open("rb") as fh:
        head = fh.read(9)
    try:
        if path.suffix == ".safetensors" or head[8:9] == b"{":
            state = safetensors.torch.load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # both loaders raise assorted types for corrupt files
        raise NetError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NetError(f"{path}: not a state dict of tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = [f"{k}: the file has shape {tuple(state[k].shape)}, the model {tuple(v.shape)}"
                for k, v in own.items() if k in state and state[k].shape != v.shape]
    notes = [f"shape mismatch {p}" for p in problems]
    notes += [f"missing in the file: {k}" for k in missing] + [f"not in the model: {k}" for k in unexpected]
    if unexpected and all(k.startswith("module.") for k in unexpected):
        notes.append("the file's keys start with 'module.' (saved from DataParallel); strip that prefix")
    if notes:
        counts = [f"{n} {what}" for n, what in ((len(problems), "shape mismatch(es)"),
                                                (len(missing), "missing"), (len(unexpected), "unexpected"))
                  if n]
        raise NetError(f"weights in {path} do not fit the model: " + ", ".join(counts), notes=notes)
    model.load_state_dict(state, strict=True)
