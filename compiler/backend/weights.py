"""Weights on disk: saved atomically as safetensors; read from safetensors or a torch state dict without running
code, with every mismatch named. One implementation for export (compiler) and training, eval and synthesis."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch

from compiler.backend.atomic import atomic_write
from compiler.backend.metadata import ModelMetadata
from compiler.diagnostics import NetError


def _is_safetensors(path: Path) -> bool:
    """Safetensors files start with an 8-byte header length followed by a JSON header."""
    with path.open("rb") as f:
        head = f.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"
                                             and int.from_bytes(head[:8], "little") < path.stat().st_size)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch state dict (weights_only: no code runs); unwraps {"state_dict"}."""
    path = Path(path)
    if not path.is_file():
        raise NetError(f"weights file not found: {path}")
    try:
        if _is_safetensors(path):
            state = safetensors.torch.load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (both loaders raise assorted types for corrupt or unsafe files)
        raise NetError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})".splitlines()[0],
                       notes=["weights are a .safetensors file or a state dict saved with torch.save"]) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise NetError(f"{path}: not a state dict of tensors (a mapping of names to tensors)")
    return dict(state)


def check_state_dict(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                     source: str = "the weights") -> list[str]:
    """Check a state dict against a module's own (shapes and dtypes only: `own` may live on the meta device).

    A NetError counts and names every shape mismatch, missing and unexpected key, every tensor of bool or integer
    values where the model has floats, and every tensor holding NaN or infinities. Floats of another precision
    are converted when loaded: the returned notes say which, so that nothing is converted silently."""
    _check_keys_and_shapes(own, state, source)
    integral = [k for k, v in own.items() if v.is_floating_point() and not state[k].is_floating_point()]
    if integral:
        raise NetError(f"weights in {source} hold {state[integral[0]].dtype} values where the model has floats "
                       f"({len(integral)} tensor(s))", notes=[f"{k}: {state[k].dtype}" for k in integral])
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise NetError(f"weights in {source} hold NaN or infinite values ({len(bad)} tensor(s))",
                       notes=[f"{k}: {int((~torch.isfinite(state[k])).sum())} of {state[k].numel()} values"
                              for k in bad])
    converted: dict[str, int] = {}
    for k, v in own.items():
        if v.is_floating_point() and state[k].dtype != v.dtype:
            pair = f"{str(state[k].dtype).removeprefix('torch.')} to {str(v.dtype).removeprefix('torch.')}"
            converted[pair] = converted.get(pair, 0) + 1
    return [f"weights in {source}: {n} tensor(s) converted from {pair}" for pair, n in sorted(converted.items())]


def _check_keys_and_shapes(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str) -> None:
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
                                                (len(missing), "missing"), (len(unexpected), "unexpected")) if n]
        raise NetError(f"weights in {source} do not fit the model: " + ", ".join(counts), notes=notes)


def load_state_dict_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor],
                           source: str = "the weights") -> list[str]:
    """Load a state dict strictly after check_state_dict; returns its notes (floats of another precision)."""
    notes = check_state_dict(module.state_dict(), state, source)
    module.load_state_dict(state, strict=True)
    return notes


def load_weights_file(module: torch.nn.Module, path: str | Path) -> list[str]:
    """Load a weights file (safetensors or a torch state dict) into the module, naming every mismatch; returns
    notes on what was converted."""
    return load_state_dict_strict(module, read_weights(path), str(path))


def check_weights_file(module: torch.nn.Module, path: str | Path) -> list[str]:
    """check_state_dict for a file, without loading it into the module (which may live on the meta device)."""
    return check_state_dict(module.state_dict(), read_weights(path), str(path))


def save_weights(module: torch.nn.Module, path: str | Path, metadata: ModelMetadata | None = None) -> None:
    """Atomically save the state dict as safetensors (contiguous CPU copies, so tied weights work), with the
    metadata that says how to use them (compiler.backend.metadata) in the file's header."""
    state = {k: v.detach().to("cpu", copy=True).contiguous()
             for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    strings = {"format": "pt", **(metadata.to_strings() if metadata is not None else {})}
    atomic_write(path, safetensors.torch.save(state, metadata=strings))  # bytes: the file gets the usual umask


def read_metadata(path: str | Path) -> ModelMetadata | None:
    """The metadata a weights file carries; None for a torch state dict or safetensors written without it."""
    path = Path(path)
    if not path.is_file():
        raise NetError(f"weights file not found: {path}")
    if not _is_safetensors(path):
        return None
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            strings = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 (safetensors raises assorted types for a damaged header)
        raise NetError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    return ModelMetadata.from_strings(strings, str(path))
