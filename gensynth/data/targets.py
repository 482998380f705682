"""The targets a dataset holds for each task: the task names, their target tensors, the ignore label."""

from __future__ import annotations

import numpy as np
import torch

TASKS = ("classify", "segment", "detect")
TASK_WORDS = {"classify": "classification", "segment": "segmentation", "detect": "detection"}
# A mask pixel with this value is ignored by the loss and the metrics (masks hold at most 255 classes).
IGNORE_LABEL = 255
# Detection targets are float32 [N, K, 5] rows (class, x0, y0, x1, y1) in pixels; padding rows hold this.
BOX_PADDING = -1


def to_targets(a: np.ndarray, task: str = "classify") -> torch.Tensor:
    """Targets as a contiguous tensor: int64 labels, uint8 masks (255 = ignore) or float32 boxes."""
    dtype = {"classify": np.int64, "segment": np.uint8, "detect": np.float32}[task]
    return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))
