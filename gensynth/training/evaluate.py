"""Scoring a trained network on held-out data: the task's loss and metrics, in eval mode without grads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compiler.diagnostics import NetError
from gensynth.data.normalized import batches_of
from gensynth.tasks.metrics import primary_metric
from gensynth.tasks.objectives import Objective, select_output
from gensynth.training.device import amp_dtype, autocast, model_device, resolve_device, training_mode


@dataclass
class EvalResult:
    """Mean loss, the task's metrics and (classification, segmentation) a KxK confusion matrix, rows = truth."""

    loss: float
    metrics: dict[str, float]
    confusion: np.ndarray | None
    count: int
    task: str = "classify"

    @property
    def accuracy(self) -> float | None:
        """Classification accuracy (None for other tasks)."""
        return self.metrics.get("acc")

    @property
    def score(self) -> float:
        """The task's primary metric: accuracy, mean IoU or mAP@0.5."""
        return self.metrics[primary_metric(self.task)]

    def per_class_iou(self) -> np.ndarray:
        """Segmentation: IoU per class (NaN for a class neither in the targets nor predicted)."""
        from gensynth.tasks.segmentation import iou_per_class

        return iou_per_class(torch.from_numpy(self.confusion)).numpy()

    def per_class_accuracy(self) -> np.ndarray:
        """Recall per true class (NaN for a class with no examples)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / totals


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             device: torch.device | str | None = None, *, amp: str = "off", output: str | None = None,
             num_classes: int | None = None, objective: Objective | None = None) -> EvalResult:
    """Loss and metrics of the model on (x, y); without an objective, classification with K from the logits.

    device None runs where the model is; a given device moves the model there first.
    """
    if len(x) == 0 or len(x) != len(y):
        raise NetError(f"cannot evaluate on {len(x)} images with {len(y)} targets")
    if device is None:
        device = model_device(model)
    else:
        device = resolve_device(str(device))
        model.to(device)
    dtype = amp_dtype(amp, device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    scorer = None
    with training_mode(model, False), torch.inference_mode():
        spans = [slice(start, start + batch_size) for start in range(0, len(x), batch_size)]
        for span, xb in zip(spans, batches_of(x, spans)):  # image folders: decoded ahead by DataLoader workers
            xb = xb.to(device, non_blocking=True)
            yb = y[span].to(device, non_blocking=True)
            with autocast(dtype, device):
                out = model(xb)
            out = {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()
            if objective is None:
                k = num_classes or select_output(out, output).shape[-1]
                objective = Objective("classify", k, tuple(x.shape[-2:]), output=output)
            if scorer is None:
                objective.check(out)
                scorer = objective.scorer()
            scorer.add(out, yb)
            loss_sum += objective.loss(out, yb).double() * len(yb)
    metrics, confusion = scorer.result()
    return EvalResult(loss=loss_sum.item() / len(y), metrics=metrics, confusion=confusion, count=len(y),
                      task=objective.task)
