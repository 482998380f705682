"""In-memory image arrays as every reader returns them, and the checks that all of them share."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError


@dataclass(frozen=True)
class SplitArrays:
    """What a reader returns: train and test images (uint8 or float, N,C,H,W) and targets, class names, notes;
    and a validation split where the data has its own (else load_dataset carves one from the training split)."""

    x: np.ndarray
    y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...] | None
    notes: tuple[str, ...] = ()
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None


def data_file(path: Path, what: str) -> Path:
    """`path` when it is a regular file; else a NetError saying what it is instead (missing, a directory, a
    device such as /dev/zero that would never end)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NetError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise NetError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise NetError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise NetError(f"{what} {path} is not a regular file (a device, pipe or socket)")
    return path


def check_pair(where: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one images/labels pair and bring images to N,C,H,W."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise NetError(f"{where}: images must have shape (N, H, W) or (N, C, H, W), got {x.shape}")
    if x.size == 0:
        raise NetError(f"{where}: holds no images (shape {x.shape})")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise NetError(f"{where}: images have shape {x.shape}, which looks channels-last",
                       notes=["store them as (N, C, H, W), e.g. x.transpose(0, 3, 1, 2)"])
    if y.ndim != 1:
        raise NetError(f"{where}: labels must be one-dimensional, got shape {y.shape}")
    if len(x) != len(y):
        raise NetError(f"{where}: {len(x)} images but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise NetError(f"{where}: labels must be integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise NetError(f"{where}: images must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise NetError(f"{where}: images contain NaN or infinite values")
    return x, y
