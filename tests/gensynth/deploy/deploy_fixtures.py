"""A small slice of the real Fashion-MNIST as an npz dataset (8-bit pixels, class names), and a trained run on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gensynth.data import FASHION_CLASSES, FASHION_FILES, FASHION_MNIST_DIR, read_idx

ROOT = Path(__file__).resolve().parents[3]
FASHION_CNN = str(ROOT / "examples" / "fashion_cnn.net")


def write_fashion_slice(path: Path, train: int = 1200, test: int = 1000) -> str:
    """The first `train` training and `test` test images, uint8 N,H,W, as npz:PATH."""
    arrays = [read_idx(Path(FASHION_MNIST_DIR) / f) for f in FASHION_FILES]
    np.savez(path, x=arrays[0][:train], y=arrays[1][:train].astype(np.int64), x_test=arrays[2][:test],
             y_test=arrays[3][:test].astype(np.int64), class_names=np.array(FASHION_CLASSES))
    return f"npz:{path}"


def raw_test_pixels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test images as a deployer has them: float32 [N, 1, 28, 28] in [0, 1], and the labels."""
    with np.load(path) as z:
        return (z["x_test"][:, None].astype(np.float32) / 255.0), z["y_test"]
