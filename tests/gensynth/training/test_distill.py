"""Knowledge distillation: the loss, the teacher's cached responses, and a student that learns them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from compiler.diagnostics import NetError
from gensynth.training.distill import distillation_loss, teacher_logits
from gensynth.training.train import TrainConfig, train
from tests.gensynth.training.test_train import CLASSES, FAST, quadrant_dataset, tiny_net


def test_loss_is_zero_at_the_teacher_and_its_gradient_points_to_it() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(16, 5)
    assert distillation_loss(teacher.clone(), teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(16, 5, requires_grad=True)
    before = distillation_loss(student, teacher, 4.0)
    assert before.item() > 0
    before.backward()
    with torch.no_grad():
        stepped = student - 5.0 * student.grad
    assert distillation_loss(stepped, teacher, 4.0).item() < before.item()


def test_temperature_squared_keeps_the_gradient_scale() -> None:
    """Hinton's T^2 factor: at high T the gradient tends to ((s - t) - mean(s - t)) / (classes * N), whatever T is."""
    torch.manual_seed(1)
    n, c = 8, 4
    teacher = torch.randn(n, c)
    student0 = torch.randn(n, c)
    diff = student0 - teacher
    limit = (diff - diff.mean(1, keepdim=True)) / (c * n)
    for t in (20.0, 80.0):
        student = student0.clone().requires_grad_(True)
        distillation_loss(student, teacher, t).backward()
        torch.testing.assert_close(student.grad, limit, rtol=0.1, atol=2e-3)


def test_teacher_logits_are_the_eval_mode_forward_in_batches() -> None:
    teacher = tiny_net(3)
    teacher.train()
    x = quadrant_dataset().train_x[:70]
    got = teacher_logits(teacher, x, torch.device("cpu"), batch_size=16)
    teacher.eval()
    with torch.no_grad():
        want = teacher(x)
    assert got.shape == (70, CLASSES)
    torch.testing.assert_close(got, want)


def test_a_student_distilled_alone_learns_the_teachers_answers_not_the_labels() -> None:
    ds = quadrant_dataset(n_train=512)
    teacher = tiny_net(1)
    train(teacher, dataclasses.replace(ds, test_x=ds.test_x[:0], test_y=ds.test_y[:0]),
          TrainConfig(epochs=6, lr=0.05, **FAST))
    # the labels the student sees are shuffled: only the teacher's outputs carry the task
    shuffled = dataclasses.replace(ds, train_y=ds.train_y[torch.randperm(len(ds.train_y),
                                                                          generator=torch.Generator().manual_seed(0))])
    agree = {}
    for weight in (0.0, 1.0):
        student = tiny_net(2)
        train(student, shuffled, TrainConfig(epochs=6, lr=0.05, distill=weight, distill_temperature=2.0, **FAST),
              teacher=teacher)
        student.eval()
        teacher.eval()
        with torch.no_grad():
            agree[weight] = (student(ds.test_x).argmax(1) == teacher(ds.test_x).argmax(1)).float().mean().item()
    assert agree[1.0] > 0.9
    assert agree[1.0] > agree[0.0] + 0.3


def test_distillation_needs_a_teacher_a_classifier_and_a_weight_in_range() -> None:
    ds = quadrant_dataset(n_train=64)
    with pytest.raises(NetError, match="needs a teacher"):
        train(tiny_net(), ds, TrainConfig(epochs=1, distill=0.5, **FAST))
    for weight in (-0.1, 1.5):
        with pytest.raises(NetError, match="distill must be in"):
            train(tiny_net(), ds, TrainConfig(epochs=1, distill=weight, **FAST), teacher=tiny_net())
    with pytest.raises(NetError, match="distill_temperature"):
        train(tiny_net(), ds, TrainConfig(epochs=1, distill=0.5, distill_temperature=0, **FAST), teacher=tiny_net())


def test_augmented_training_asks_the_teacher_per_batch() -> None:
    """With random crops the cached responses would be for other images; the teacher is asked each step."""
    calls = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net(4)

        def forward(self, x):
            calls.append(len(x))
            return self.net(x)

    ds = quadrant_dataset(n_train=96)
    train(tiny_net(), ds, TrainConfig(epochs=1, distill=0.5, augment=True, **FAST), teacher=Counting())
    assert calls == [32, 32, 32]
    calls.clear()
    train(tiny_net(), ds, TrainConfig(epochs=2, distill=0.5, **FAST), teacher=Counting())
    assert calls == [96]  # once, in chunks of up to 512, for every epoch
