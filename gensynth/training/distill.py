"""Knowledge distillation: a pruned or generated network learns the trained prototype's soft outputs too.

Hinton et al. (2015): the loss is (1 - a) * cross-entropy on the labels + a * T^2 * KL(teacher_T || student_T),
where x_T = softmax(logits / T). The prototype's responses to the training images are computed once (they
do not change while the student trains), so distilling costs one forward pass of the teacher, not one per step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from gensynth.tasks.objectives import select_output
from gensynth.training.device import autocast, training_mode


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: torch.Tensor, device: torch.device, output: str | None = None,
                   batch_size: int = 512, amp: torch.dtype | None = None) -> torch.Tensor:
    """The teacher's logits for every image of x (float32, on x's device), in eval mode."""
    chunks = []
    with training_mode(teacher, False):
        for i in range(0, len(x), batch_size):
            with autocast(amp, device):
                out = select_output(teacher(x[i:i + batch_size].to(device)), output)
            chunks.append(out.float().to(x.device))
    return torch.cat(chunks) if chunks else x.new_zeros((0,))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    t = temperature
    return functional.kl_div(functional.log_softmax(student.float() / t, dim=1),
                             functional.log_softmax(teacher.float() / t, dim=1),
                             reduction="batchmean", log_target=True) * (t * t)
