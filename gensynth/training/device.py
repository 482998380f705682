"""Where and in what precision a model runs: device names, train/eval flags, autocast, data placement."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from compiler.diagnostics import NetError
from compiler.memory import available_memory


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; an unavailable or unknown device is a NetError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NetError(f"unknown device {name!r}; choose auto, cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NetError("device cuda requested but CUDA is not available",
                           notes=["use device auto or cpu"])
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise NetError(f"device {name} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type != "cpu":
        raise NetError(f"unsupported device {name!r}; choose auto, cpu or cuda")
    return device


def device_memory(device: torch.device) -> tuple[int | None, str]:
    """Free bytes on the device (None when unknown) and the words for it: a GPU's own memory or this machine's."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"memory free on {device}"
    return available_memory(), "memory"


@contextlib.contextmanager
def training_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Set train/eval mode for the block, then restore every submodule's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the device, or None for full precision."""
    if device.type != "cuda":
        if setting in ("bf16", "fp16"):
            raise NetError(f"amp {setting} needs a CUDA device; this run is on {device}",
                           notes=["use amp auto or off on CPU"])
        return None
    if setting == "off":
        return None
    if setting == "bf16" or (setting == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    """An autocast context, or a free no-op when running in full precision."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def place_data(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Put data on the device when it comfortably fits; otherwise keep it pinned on the host."""
    if device.type == "cpu":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    if t.numel() * t.element_size() < free // 4:
        return t.to(device)
    return t.pin_memory()


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter or buffer lives (cpu for a stateless model)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")
