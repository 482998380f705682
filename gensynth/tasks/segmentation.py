"""Semantic-segmentation metrics and loss: confusion matrix, mean IoU, pixel accuracy, cross-entropy.

Conventions: logits are [N, C, H, W], targets are integer [N, H, W] (uint8 or int64) and the label
`ignore_index` (255) marks pixels that count nowhere, neither in the loss nor in the metrics.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from compiler.diagnostics import NetError
from gensynth.data.targets import IGNORE_LABEL


def _check_target(target: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """The labels as int64 after checking that each is a class or the ignore label (None: no such label)."""
    if target.dtype.is_floating_point or target.dtype == torch.bool or target.dtype.is_complex:
        raise NetError(f"segmentation targets must be integer class labels, not {target.dtype}",
                       notes=["use uint8 or int64 masks"])
    labels = target.long()
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        found = labels[bad].unique()[:5].tolist()
        notes = [] if ignore_index is None else [f"{ignore_index} marks pixels to ignore; other labels are classes"]
        raise NetError(f"segmentation labels {found} are outside 0..{num_classes - 1}", notes=notes)
    return labels


def _check_pair(pred_shape: torch.Size, target: torch.Tensor) -> None:
    """Raise unless predictions [N, H, W] and the target [N, H, W] have one shape."""
    if target.dim() != 3 or tuple(pred_shape) != tuple(target.shape):
        raise NetError(f"segmentation target of shape {list(target.shape)} does not match predictions "
                       f"of shape {list(pred_shape)}", notes=["targets are [N, H, W] class labels"])


def confusion_matrix(logits_or_pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_LABEL) -> torch.Tensor:
    """Pixel counts [C, C] int64 (row = true class, column = predicted), ignore pixels left out.

    Accepts logits [N, C, H, W] (their argmax over C is the prediction) or predicted labels [N, H, W];
    computed with one bincount on the tensors' device. Sum the matrices of several batches for a
    data set's metrics.
    """
    if logits_or_pred.dim() == 4:
        if logits_or_pred.shape[1] != num_classes:
            raise NetError(f"segmentation logits have {logits_or_pred.shape[1]} channels, expected "
                           f"{num_classes} classes", notes=["logits are [N, C, H, W]"])
        pred = logits_or_pred.argmax(dim=1)
    elif logits_or_pred.dim() == 3:
        pred = _check_target(logits_or_pred, num_classes, ignore_index=None)
    else:
        raise NetError(f"segmentation predictions must be logits [N, C, H, W] or labels [N, H, W], got "
                       f"shape {list(logits_or_pred.shape)}")
    _check_pair(pred.shape, target)
    labels = _check_target(target, num_classes, ignore_index).to(pred.device)
    keep = labels != ignore_index
    pairs = labels[keep] * num_classes + pred[keep]
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """The confusion matrix as float64, after checking it is square and counts some pixel."""
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise NetError(f"a confusion matrix is [C, C], got shape {list(confusion.shape)}")
    counts = confusion.double()
    if float(counts.sum()) <= 0:
        raise NetError("no labelled pixels: every target pixel is the ignore label",
                       notes=["segmentation metrics need at least one pixel with a class label"])
    return counts


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """TP / (TP + FP + FN) per class (float64), NaN for a class absent from both target and prediction."""
    counts = _check_confusion(confusion)
    tp = counts.diagonal()
    union = counts.sum(dim=0) + counts.sum(dim=1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean over classes of TP / (TP + FP + FN), over the classes that occur in the target or prediction.

    A class absent from both (union 0) has no defined IoU and is left out of the mean rather than
    counted as 0 or 1. A matrix with no pixels at all raises NetError.
    """
    return float(iou_per_class(confusion).nanmean())


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """The fraction of labelled pixels predicted correctly; a matrix with no pixels raises NetError."""
    counts = _check_confusion(confusion)
    return float(counts.diagonal().sum() / counts.sum())


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor,
                      ignore_index: int = IGNORE_LABEL) -> torch.Tensor:
    """Mean per-pixel cross-entropy over labelled pixels; 0 (with zero gradient) when all are ignored.

    The target is cast to int64; labels other than classes and `ignore_index` raise NetError.
    """
    if logits.dim() != 4:
        raise NetError(f"segmentation logits must be [N, C, H, W], got shape {list(logits.shape)}")
    _check_pair(logits.shape[:1] + logits.shape[2:], target)
    labels = _check_target(target, logits.shape[1], ignore_index).to(logits.device)
    total = functional.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total / (labels != ignore_index).sum().clamp(min=1)
