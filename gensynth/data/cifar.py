"""CIFAR-10 in its python-pickle batches (cifar10:DIR), unpickled without running code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError
from gensynth.data.arrays import SplitArrays, check_pair

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and plain containers: CIFAR files run no code."""

    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python-pickle CIFAR batch: {b'data': uint8 (N, 3072), b'labels': [...]} -> N,3,32,32."""
    if not path.is_file():
        raise NetError(f"missing CIFAR-10 file: {path}")
    try:
        with path.open("rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise NetError(f"{path}: corrupt CIFAR-10 batch ({exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise NetError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise NetError(f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    return check_pair(path.name, data.reshape(-1, 3, 32, 32), labels)


def read_cifar10(path: Path) -> SplitArrays:
    """Read data_batch_1..5 and test_batch from a cifar-10-batches-py directory."""
    if not path.is_dir():
        raise NetError(f"CIFAR-10 directory not found: {path}",
                       notes=["cifar10:DIR wants the extracted cifar-10-batches-py directory"])
    missing = [n for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
               if not (path / n).is_file()]
    if missing:
        raise NetError(f"missing CIFAR-10 files in {path}: " + ", ".join(missing))
    parts = [_read_cifar_batch(path / f"data_batch_{i}") for i in range(1, 6)]
    tx, ty = _read_cifar_batch(path / "test_batch")
    names = CIFAR10_CLASSES
    if (path / "batches.meta").is_file():
        try:
            with (path / "batches.meta").open("rb") as fh:
                meta = _ArrayUnpickler(fh, encoding="bytes").load()
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"])
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NetError(f"{path / 'batches.meta'}: corrupt CIFAR-10 meta file ({exc})") from None
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return SplitArrays(x, y, tx, ty, names)
