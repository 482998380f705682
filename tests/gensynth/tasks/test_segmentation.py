"""Segmentation metrics and loss against cases worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional

from compiler.diagnostics import NetError
from gensynth.tasks.segmentation import confusion_matrix, mean_iou, pixel_accuracy, segmentation_loss

# One 2x3 image, 3 classes, the last pixel ignored. Labelled pixels (true, predicted):
# (0,0) (0,1) (1,1) (1,1) (2,1): rows of the confusion are [1,1,0], [0,2,0], [0,1,0].
TARGET = torch.tensor([[[0, 0, 1], [1, 2, 255]]], dtype=torch.uint8)
PRED = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
CONFUSION = [[1, 1, 0], [0, 2, 0], [0, 1, 0]]


def one_hot_logits(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits [N, C, H, W] whose argmax is `pred`."""
    return functional.one_hot(pred, num_classes).permute(0, 3, 1, 2).float() * 5.0


def test_confusion_by_hand():
    conf = confusion_matrix(PRED, TARGET, 3)
    assert conf.dtype == torch.int64
    assert conf.tolist() == CONFUSION


def test_confusion_from_logits_matches_predictions():
    conf = confusion_matrix(one_hot_logits(PRED, 3), TARGET.long(), 3)
    assert conf.tolist() == CONFUSION


def test_miou_and_accuracy_by_hand():
    conf = confusion_matrix(PRED, TARGET, 3)
    # IoU: class 0 = 1 / (2 + 1 - 1), class 1 = 2 / (2 + 4 - 2), class 2 = 0 / (1 + 0 - 0).
    assert mean_iou(conf) == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert pixel_accuracy(conf) == pytest.approx(3 / 5)


def test_class_absent_from_target_and_prediction_is_left_out():
    conf = confusion_matrix(PRED, TARGET, 4)
    assert conf[3].sum() == 0 and conf[:, 3].sum() == 0
    assert mean_iou(conf) == pytest.approx(1 / 3)


def test_perfect_prediction():
    target = torch.tensor([[[0, 1], [2, 255]]])
    conf = confusion_matrix(target.clamp(max=2), target, 3)
    assert mean_iou(conf) == 1.0 and pixel_accuracy(conf) == 1.0


def test_batches_add_up():
    a = confusion_matrix(PRED, TARGET, 3)
    both = confusion_matrix(torch.cat([PRED, PRED]), torch.cat([TARGET, TARGET]), 3)
    assert torch.equal(both, 2 * a)


def test_all_ignore_gives_zero_matrix_and_metrics_raise():
    target = torch.full((1, 2, 3), 255, dtype=torch.uint8)
    conf = confusion_matrix(PRED, target, 3)
    assert conf.sum() == 0
    with pytest.raises(NetError, match="no labelled pixels"):
        mean_iou(conf)
    with pytest.raises(NetError, match="no labelled pixels"):
        pixel_accuracy(conf)


def test_bad_labels_and_shapes_raise():
    with pytest.raises(NetError, match="outside 0..2"):
        confusion_matrix(PRED, torch.tensor([[[0, 3, 1], [1, 2, 255]]]), 3)
    with pytest.raises(NetError, match="outside 0..2"):
        confusion_matrix(torch.tensor([[[0, 1, 1], [1, 1, -1]]]), TARGET, 3)
    with pytest.raises(NetError, match="does not match"):
        confusion_matrix(PRED, TARGET[:, :1], 3)
    with pytest.raises(NetError, match="channels"):
        confusion_matrix(one_hot_logits(PRED, 4), TARGET, 3)
    with pytest.raises(NetError, match="integer"):
        confusion_matrix(PRED, TARGET.float(), 3)


def test_loss_uniform_logits_is_log_classes():
    logits = torch.zeros(1, 3, 2, 3)
    assert float(segmentation_loss(logits, TARGET)) == pytest.approx(math.log(3))


def test_loss_ignores_ignored_pixels_and_matches_cross_entropy():
    logits = torch.randn(1, 3, 2, 3, generator=torch.Generator().manual_seed(0))
    loss = segmentation_loss(logits, TARGET)
    expected = functional.cross_entropy(logits, TARGET.long(), ignore_index=255)
    assert float(loss) == pytest.approx(float(expected))
    changed = logits.clone()
    changed[0, :, 1, 2] = torch.tensor([100.0, -100.0, 0.0])   # the ignored pixel
    assert float(segmentation_loss(changed, TARGET)) == pytest.approx(float(loss))


def test_loss_all_ignore_is_zero_with_zero_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 4, 4), 255, dtype=torch.uint8))
    loss.backward()
    assert loss.detach().item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_loss_bad_input_raises():
    with pytest.raises(NetError, match="outside"):
        segmentation_loss(torch.zeros(1, 3, 2, 3), torch.tensor([[[0, 0, 1], [1, 7, 255]]]))
    with pytest.raises(NetError, match=r"\[N, C, H, W\]"):
        segmentation_loss(torch.zeros(3, 2, 3), TARGET)
