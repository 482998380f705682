"""CenterNet targets, loss and decoding (Zhou et al. 2019, "Objects as Points"), vectorised over the batch.

A detector's two outputs at one stride: `heatmap [N, C, h, w]` per-class centre logits and `boxes
[N, 4, h, w]` = (w, h, dx, dy), the box size in output cells (input pixels / stride) and the sub-cell
offset of the true centre from its integer cell. Ground truth is `[N, K, 5]` rows (class, x0, y0, x1, y1)
in input pixels with exclusive x1/y1; rows with class < 0 are padding. Detections are `[n, 6]` rows
(x0, y0, x1, y1, score, class) in input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional

from compiler.diagnostics import NetError

MIN_OVERLAP = 0.7                     # gaussian_radius: a box this far off still has IoU >= 0.7
SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0


@dataclass
class CenterTargets:
    """Dense targets for a batch, plus each object's cell and regression targets for the loss."""

    heatmap: torch.Tensor      # [N, C, h, w] float: a Gaussian peak of exactly 1 at each object's centre cell
    regression: torch.Tensor   # [N, 4, h, w] float: (w, h, dx, dy) at centre cells, 0 elsewhere
    mask: torch.Tensor         # [N, h, w] bool: the centre cells
    count: int                 # objects in the batch (padding and empty boxes left out)
    index: torch.Tensor        # [N, K] int64: each object's centre cell, y * w + x (0 for padding)
    valid: torch.Tensor        # [N, K] bool: the row is a real object with a non-empty box
    objects: torch.Tensor      # [N, K, 4] float: each object's (w, h, dx, dy)


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = MIN_OVERLAP) -> torch.Tensor:
    """CenterNet's gaussian_radius, verbatim: the smallest of its three corner-shift radii.

    It keeps the original code's arithmetic (each root divided by 2, not by 2a), so radii match CenterNet's.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def _check_gt(gt: torch.Tensor, num_classes: int) -> None:
    """Raise NetError unless gt is [N, K, 5] with classes below num_classes."""
    if gt.dim() != 3 or gt.shape[-1] != 5:
        raise NetError(f"detection ground truth must be [N, K, 5], got shape {list(gt.shape)}",
                       notes=["rows are (class, x0, y0, x1, y1) in input pixels; padding rows are all -1"])
    if gt.numel() and bool((gt[..., 0] >= num_classes).any()):
        found = int(gt[..., 0].max())
        raise NetError(f"detection ground truth has class {found}, but the detector has {num_classes} classes",
                       notes=[f"classes are 0..{num_classes - 1}; class < 0 marks a padding row"])


def encode_targets(gt: torch.Tensor, num_classes: int, out_hw: tuple[int, int], stride: int) -> CenterTargets:
    """CenterNet training targets for ground truth [N, K, 5] on an output grid out_hw at `stride`.

    Boxes are clipped to the input extent (h * stride, w * stride); empty ones are left out. The Gaussian
    radius is CenterNet's: gaussian_radius(ceil(box h), ceil(box w)) in output cells, truncated to an int,
    sigma = (2 r + 1) / 6, cut to the (2 r + 1)^2 window; overlapping Gaussians of a class take the max.
    Where two objects share a centre cell, the later one's row is in `regression` (the loss uses both).
    """
    _check_gt(gt, num_classes)
    h, w = out_hw
    n, k = gt.shape[:2]
    gt = gt.float()
    x0, x1 = (gt[..., 1] / stride).clamp(0, w), (gt[..., 3] / stride).clamp(0, w)
    y0, y1 = (gt[..., 2] / stride).clamp(0, h), (gt[..., 4] / stride).clamp(0, h)
    bw, bh = x1 - x0, y1 - y0
    valid = (gt[..., 0] >= 0) & (bw > 0) & (bh > 0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ix, iy = cx.floor().clamp(0, w - 1), cy.floor().clamp(0, h - 1)
    objects = torch.stack([bw, bh, cx - ix, cy - iy], dim=-1)
    index = torch.where(valid, iy.long() * w + ix.long(), 0)

    radius = gaussian_radius(bh.ceil(), bw.ceil()).floor().clamp(min=0)
    sigma = (2 * radius + 1) / 6
    ddx = torch.arange(w, device=gt.device, dtype=gt.dtype) - ix[..., None, None]          # [N, K, 1, w]
    ddy = torch.arange(h, device=gt.device, dtype=gt.dtype)[:, None] - iy[..., None, None]  # [N, K, h, 1]
    r = radius[..., None, None]
    inside = (ddx.abs() <= r) & (ddy.abs() <= r) & valid[..., None, None]
    gauss = torch.exp(-(ddx ** 2 + ddy ** 2) / (2 * sigma[..., None, None] ** 2))
    gauss = torch.where(inside, gauss, 0.0).reshape(n, k, h * w)
    cls = torch.where(valid, gt[..., 0].long(), 0)
    heatmap = torch.zeros(n, num_classes, h * w, device=gt.device)
    heatmap.scatter_reduce_(1, cls[..., None].expand(n, k, h * w), gauss, reduce="amax")

    order = torch.where(valid, torch.arange(k, device=gt.device).expand(n, k), -1)
    winner = torch.full((n, h * w), -1, dtype=torch.long, device=gt.device)
    winner.scatter_reduce_(1, index, order, reduce="amax")
    mask = winner >= 0
    rows = torch.cat([objects, objects.new_zeros(n, 1, 4)], dim=1)            # row k: zeros, for no object
    regression = rows.gather(1, torch.where(mask, winner, k)[..., None].expand(n, h * w, 4))
    return CenterTargets(heatmap=heatmap.reshape(n, num_classes, h, w),
                         regression=regression.permute(0, 2, 1).reshape(n, 4, h, w),
                         mask=mask.reshape(n, h, w), count=int(valid.sum()),
                         index=index, valid=valid, objects=objects)


def _check_outputs(heatmap_logits: torch.Tensor, box_out: torch.Tensor) -> None:
    """Raise NetError unless the heatmap is [N, C, h, w] and the box map [N, 4, h, w]."""
    if heatmap_logits.dim() != 4 or box_out.dim() != 4:
        raise NetError(f"detector outputs must be [N, C, h, w] and [N, 4, h, w], got shapes "
                       f"{list(heatmap_logits.shape)} and {list(box_out.shape)}")
    n, _, h, w = heatmap_logits.shape
    if tuple(box_out.shape) != (n, 4, h, w):
        raise NetError(f"box output of shape {list(box_out.shape)} does not fit a heatmap of shape "
                       f"{list(heatmap_logits.shape)}", notes=["boxes are (w, h, dx, dy): [N, 4, h, w]"])


def focal_loss(heatmap_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss (alpha 2, beta 4), summed, not yet normalised."""
    # No clamp on the logits (CenterNet clamps sigmoid to [1e-4, 1 - 1e-4]): a clamp zeroes the gradient of a
    # centre whose logit fell below it, and plain SGD then never brings it back. logsigmoid is stable as it is.
    x = heatmap_logits.float()
    p = torch.sigmoid(x)
    pos = target == 1
    pos_loss = functional.logsigmoid(x) * (1 - p) ** 2
    neg_loss = functional.logsigmoid(-x) * p ** 2 * (1 - target) ** 4
    return -torch.where(pos, pos_loss, neg_loss).sum()


def centernet_loss(heatmap_logits: torch.Tensor, box_out: torch.Tensor, gt: torch.Tensor,
                   stride: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Focal loss on the heatmap + 0.1 * L1 size + 1 * L1 offset at centre cells, each over max(1, objects).

    The L1 terms sum both components of each object (the paper's |S_hat - s|). Returns the total and
    its parts as floats: {"heatmap", "size", "offset", "total"}.
    """
    _check_outputs(heatmap_logits, box_out)
    n, c, h, w = heatmap_logits.shape
    if gt.shape[:1] != (n,):
        raise NetError(f"ground truth for {gt.shape[0] if gt.dim() else 0} images, detector outputs for {n}")
    t = encode_targets(gt.to(heatmap_logits.device), c, (h, w), stride)
    num = max(1, t.count)
    heat = focal_loss(heatmap_logits, t.heatmap) / num
    pred = box_out.float().flatten(2).gather(2, t.index[:, None, :].expand(n, 4, -1)).permute(0, 2, 1)
    diff = torch.where(t.valid[..., None], (pred - t.objects).abs(), 0.0)
    size = diff[..., :2].sum() / num
    offset = diff[..., 2:].sum() / num
    total = heat + SIZE_WEIGHT * size + OFFSET_WEIGHT * offset
    values = torch.stack([heat, size, offset, total]).detach().tolist()
    return total, dict(zip(("heatmap", "size", "offset", "total"), values))


def decode(heatmap_logits: torch.Tensor, box_out: torch.Tensor, stride: int, top_k: int = 20) -> list[torch.Tensor]:
    """Detections per image, best first (decode_detections), after checking the two outputs fit together."""
    _check_outputs(heatmap_logits, box_out)
    return decode_detections(heatmap_logits, box_out, stride, top_k)


# decode_detections uses torch alone: its source is also the decoder written into exported PyTorch source.
@torch.no_grad()
def decode_detections(heatmap_logits: torch.Tensor, box_out: torch.Tensor, stride: int,
                      top_k: int = 20) -> list[torch.Tensor]:
    """Detections [min(top_k, C*h*w), 6] per image, best first: (x0, y0, x1, y1, score, class) in input pixels.

    Peaks are cells equal to their 3x3 max-pooled neighbourhood; the top-k over classes x cells are kept
    (non-peaks score 0, so an image with few peaks fills up with score-0 rows: filter by score to show
    them). Boxes are (cell + offset) * stride +- size * stride / 2, negative sizes read as 0, clipped to
    the input extent (h * stride, w * stride).
    """
    n, c, h, w = heatmap_logits.shape
    heat = torch.sigmoid(heatmap_logits.float())
    heat = torch.where(torch.nn.functional.max_pool2d(heat, 3, stride=1, padding=1) == heat, heat, 0.0)
    scores, flat = heat.flatten(1).topk(min(top_k, c * h * w), dim=1)
    cls, cell = flat // (h * w), flat % (h * w)
    box = box_out.float().flatten(2).gather(2, cell[:, None, :].expand(n, 4, -1))
    size = box[:, :2].clamp(min=0) * stride / 2
    cx = ((cell % w).float() + box[:, 2]) * stride
    cy = ((cell // w).float() + box[:, 3]) * stride
    x0, x1 = (cx - size[:, 0]).clamp(0, w * stride), (cx + size[:, 0]).clamp(0, w * stride)
    y0, y1 = (cy - size[:, 1]).clamp(0, h * stride), (cy + size[:, 1]).clamp(0, h * stride)
    return list(torch.stack([x0, y0, x1, y1, scores, cls.float()], dim=-1).unbind(0))
