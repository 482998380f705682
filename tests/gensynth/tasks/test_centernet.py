"""CenterNet targets, loss and decoding: round trips, CenterNet's own formulas, edge cases, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compiler.diagnostics import NetError
from gensynth.tasks.centernet import centernet_loss, decode, encode_targets, focal_loss, gaussian_radius

STRIDE, HW, CLASSES = 4, (16, 16), 3
PAD = [-1.0] * 5
# Two images: three objects (distinct centre cells), and one object plus padding.
GT = torch.tensor([
    [[0, 4.0, 6.0, 20.0, 30.0], [2, 33.5, 10.0, 60.0, 21.0], [0, 40.0, 40.0, 49.0, 63.0]],
    [[1, 0.0, 0.0, 64.0, 64.0], PAD, PAD],
])


def centernet_radius(det_size, min_overlap=0.7):
    """CenterNet's gaussian_radius (src/lib/utils/image.py), copied as the reference."""
    height, width = det_size
    a1, b1 = 1, (height + width)
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def centernet_neg_loss(pred_logits, gt):
    """CenterNet's _neg_loss on clamped sigmoids (src/lib/models/losses.py), as the reference."""
    pred = torch.clamp(pred_logits.sigmoid(), min=1e-4, max=1 - 1e-4)
    pos_inds, neg_inds = gt.eq(1).float(), gt.lt(1).float()
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos_inds).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * torch.pow(1 - gt, 4) * neg_inds).sum()
    return -(pos_loss + neg_loss)


def perfect_outputs(gt: torch.Tensor, peak_logit: float | None = None):
    """Heatmap logits and box map a perfect detector would output for gt."""
    t = encode_targets(gt, CLASSES, HW, STRIDE)
    if peak_logit is None:
        logits = torch.logit(t.heatmap, eps=1e-6)
    else:
        logits = torch.where(t.heatmap == 1, peak_logit, -peak_logit)
    return logits, t.regression


def test_gaussian_radius_is_centernets():
    sizes = [(1, 1), (2, 3), (4, 4), (5.0, 12.0), (16, 16), (3, 40)]
    ours = gaussian_radius(torch.tensor([s[0] for s in sizes], dtype=torch.float64),
                           torch.tensor([s[1] for s in sizes], dtype=torch.float64))
    assert ours.tolist() == pytest.approx([centernet_radius(s) for s in sizes], abs=1e-12)


def test_encode_peaks_regression_and_mask():
    t = encode_targets(GT, CLASSES, HW, STRIDE)
    assert t.heatmap.shape == (2, CLASSES, 16, 16) and t.regression.shape == (2, 4, 16, 16)
    assert t.mask.shape == (2, 16, 16) and t.count == 4
    # Object 1 of image 0: centre (46.75, 15.5) px = (11.6875, 3.875) cells -> cell (x 11, y 3).
    assert t.heatmap[0, 2, 3, 11] == 1.0 and t.mask[0, 3, 11]
    assert t.regression[0, :, 3, 11].tolist() == pytest.approx([26.5 / 4, 11 / 4, 0.6875, 0.875])
    # Exactly one peak of 1 per object, in its class's channel; nothing for padding.
    assert (t.heatmap == 1).sum() == 4 and t.mask.sum() == 4
    assert (t.heatmap[1, [0, 2]] == 0).all()
    assert t.heatmap[1, 1, 8, 8] == 1.0
    assert (t.regression[~t.mask[:, None].expand(-1, 4, -1, -1)] == 0).all()


def test_encode_gaussian_shape_matches_centernet():
    gt = torch.tensor([[[0, 8.0, 8.0, 40.0, 28.0]]])          # 8 x 5 cells, centre (6, 4.5) cells
    t = encode_targets(gt, 1, HW, STRIDE)
    r = max(0, int(centernet_radius((5, 8))))
    sigma = (2 * r + 1) / 6
    ys, xs = np.mgrid[0:16, 0:16]
    expected = np.exp(-((xs - 6) ** 2 + (ys - 4) ** 2) / (2 * sigma ** 2))
    expected[(abs(xs - 6) > r) | (abs(ys - 4) > r)] = 0
    assert t.heatmap[0, 0].numpy() == pytest.approx(expected.astype(np.float32), abs=1e-6)


def test_overlapping_gaussians_take_the_max_per_class():
    a, b = [0, 8.0, 8.0, 32.0, 32.0], [0, 16.0, 8.0, 40.0, 32.0]
    both = encode_targets(torch.tensor([[a, b]]), 2, HW, STRIDE).heatmap
    one = encode_targets(torch.tensor([[a]]), 2, HW, STRIDE).heatmap
    two = encode_targets(torch.tensor([[b]]), 2, HW, STRIDE).heatmap
    assert torch.equal(both, torch.maximum(one, two))
    other = encode_targets(torch.tensor([[a, [1] + b[1:]]]), 2, HW, STRIDE).heatmap
    assert torch.equal(other[:, 0], one[:, 0]) and torch.equal(other[:, 1], two[:, 0])


def test_encode_clips_and_drops_empty_boxes():
    gt = torch.tensor([[[0, -10.0, -10.0, 8.0, 8.0], [1, 70.0, 10.0, 90.0, 20.0], [0, 5.0, 5.0, 5.0, 9.0]]])
    t = encode_targets(gt, 2, HW, STRIDE)
    assert t.count == 1 and t.valid.tolist() == [[True, False, False]]
    assert t.objects[0, 0].tolist() == pytest.approx([2.0, 2.0, 0.0, 0.0])


def test_round_trip_decodes_ground_truth():
    logits, boxes = perfect_outputs(GT)
    dets = decode(logits, boxes, STRIDE, top_k=20)
    assert len(dets) == 2 and all(d.shape == (20, 6) for d in dets)
    for image, d in zip(GT, dets):
        objects = image[image[:, 0] >= 0]
        top = d[: len(objects)]
        assert top[:, 4].tolist() == pytest.approx([1.0] * len(objects), abs=1e-5)
        assert (d[len(objects):, 4] < 1e-3).all()
        got = sorted(top[:, [5, 0, 1, 2, 3]].tolist())
        want = sorted(objects.tolist())
        assert np.allclose(got, want, atol=1e-4)


def test_decode_clips_to_input_and_handles_small_top_k():
    logits = torch.full((1, 1, 4, 4), -10.0)
    logits[0, 0, 0, 0] = 10.0
    boxes = torch.zeros(1, 4, 4, 4)
    boxes[0, :, 0, 0] = torch.tensor([6.0, 3.0, 0.5, 0.5])      # 24 x 12 px around (2, 2)
    d = decode(logits, boxes, STRIDE, top_k=100)[0]
    assert d.shape == (16, 6)
    assert d[0, :4].tolist() == [0.0, 0.0, 14.0, 8.0] and d[0, 5] == 0
    assert (d[:, :4] >= 0).all() and (d[:, :4] <= 16).all()


def test_focal_loss_matches_centernet_reference():
    t = encode_targets(GT, CLASSES, HW, STRIDE)
    # Inside +-9 (sigmoid within [1e-4, 1 - 1e-4]) CenterNet's clamp does nothing, clamped or not.
    logits = (torch.randn(2, CLASSES, 16, 16, generator=torch.Generator().manual_seed(1)) * 4).clamp(-9, 9)
    assert float(focal_loss(logits, t.heatmap)) == pytest.approx(float(centernet_neg_loss(logits, t.heatmap)),
                                                                 rel=1e-5)


def test_loss_near_zero_for_perfect_outputs_and_larger_for_wrong_ones():
    logits, boxes = perfect_outputs(GT, peak_logit=20.0)
    total, parts = centernet_loss(logits, boxes, GT, STRIDE)
    assert parts["heatmap"] < 1e-5 and parts["size"] < 1e-6 and parts["offset"] < 1e-6
    assert parts["total"] == pytest.approx(float(total))
    wrong_total, wrong = centernet_loss(-logits, boxes + 1.0, GT, STRIDE)
    assert wrong["heatmap"] > 1.0 and wrong_total > 1.0
    # Every object's size and offset are off by 1 per component: 2 per object, over 4 objects.
    assert wrong["size"] == pytest.approx(2.0) and wrong["offset"] == pytest.approx(2.0)
    uniform, _ = centernet_loss(torch.zeros_like(logits), boxes, GT, STRIDE)
    assert float(total) < float(uniform) < float(wrong_total)


def test_loss_finite_without_objects_and_normalised_by_one():
    empty = torch.full((2, 3, 5), -1.0)
    logits = torch.zeros(2, CLASSES, 16, 16, requires_grad=True)
    boxes = torch.zeros(2, 4, 16, 16, requires_grad=True)
    total, parts = centernet_loss(logits, boxes, empty, STRIDE)
    assert math.isfinite(parts["total"]) and parts["size"] == 0 and parts["offset"] == 0
    # Every cell is a negative at p = 0.5: -log(0.5) * 0.25 each, summed over max(1, 0) = 1 object.
    assert parts["heatmap"] == pytest.approx(2 * CLASSES * 256 * math.log(2) * 0.25, rel=1e-5)
    total.backward()
    assert torch.isfinite(logits.grad).all() and (boxes.grad == 0).all()
    _, no_rows = centernet_loss(logits, boxes, torch.zeros(2, 0, 5), STRIDE)
    assert no_rows["total"] == pytest.approx(parts["total"])


def test_gradients_flow_to_both_outputs():
    logits = torch.randn(2, CLASSES, 16, 16, requires_grad=True)
    boxes = torch.randn(2, 4, 16, 16, requires_grad=True)
    total, _ = centernet_loss(logits, boxes, GT, STRIDE)
    total.backward()
    assert logits.grad.abs().sum() > 0
    t = encode_targets(GT, CLASSES, HW, STRIDE)
    grad_cells = boxes.grad.abs().sum(1) > 0
    assert torch.equal(grad_cells, t.mask)


def test_bad_input_raises():
    logits, boxes = torch.zeros(2, CLASSES, 16, 16), torch.zeros(2, 4, 16, 16)
    with pytest.raises(NetError, match="class 5"):
        centernet_loss(logits, boxes, torch.tensor([[[5, 0, 0, 8, 8.0]], [PAD]]), STRIDE)
    with pytest.raises(NetError, match=r"\[N, K, 5\]"):
        encode_targets(torch.zeros(2, 4), CLASSES, HW, STRIDE)
    with pytest.raises(NetError, match="does not fit"):
        decode(logits, torch.zeros(2, 4, 8, 8), STRIDE)
    with pytest.raises(NetError, match="images"):
        centernet_loss(logits, boxes, GT[:1], STRIDE)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_devices_and_dtypes(device):
    logits, boxes = perfect_outputs(GT, peak_logit=8.0)
    logits = logits.to(device).requires_grad_()
    total, _ = centernet_loss(logits, boxes.to(device), GT, STRIDE)   # gt on the CPU is moved
    assert total.device.type == device and total.dtype == torch.float32
    total.backward()
    dets = decode(logits.half(), boxes.to(device).half(), STRIDE, top_k=5)
    assert all(d.device.type == device and d.shape == (5, 6) and d.dtype == torch.float32 for d in dets)
    t = encode_targets(GT.to(device), CLASSES, HW, STRIDE)
    assert t.heatmap.device.type == device and t.index.dtype == torch.int64
