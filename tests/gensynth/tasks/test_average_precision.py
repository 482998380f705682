"""Mean average precision against pycocotools on random scenes, and against cases worked out by hand."""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import pytest
import torch

from compiler.diagnostics import NetError
from gensynth.tasks.average_precision import COCO_IOU_THRESHOLDS, mean_average_precision

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def coco_stats(detections, ground_truth, num_classes):
    """pycocotools' (AP@[.5:.95], AP@.5) for the same scenes, built in memory."""
    def xywh(x0, y0, x1, y1):
        return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]

    anns = [{"id": len_ + 1, "image_id": i + 1, "category_id": int(row[0]), "bbox": xywh(*row[1:]),
             "area": float((row[3] - row[1]) * (row[4] - row[2])), "iscrowd": 0}
            for len_, (i, row) in enumerate((i, r) for i, g in enumerate(ground_truth) for r in g if r[0] >= 0)]
    results = [{"image_id": i + 1, "category_id": int(d[5]), "bbox": xywh(*d[:4]), "score": float(d[4])}
               for i, image in enumerate(detections) for d in image]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i + 1} for i in range(len(ground_truth))], "annotations": anns,
                      "categories": [{"id": c} for c in range(num_classes)]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[0], evaluator.stats[1]


def random_scene(seed: int, images: int = 40, classes: int = 4, grid: bool = False, crowded: int = -1):
    """Ground truth and detections: jittered copies of true boxes (some with the wrong class) and clutter.

    grid puts coordinates on quarter pixels (exact IoU ties) and scores on tenths (score ties);
    crowded names an image that gets 150 detections of one class, beyond maxDets.
    """
    rng = np.random.default_rng(seed)
    detections, ground_truth = [], []
    for i in range(images):
        m = rng.integers(0, 6)
        xy = rng.uniform(0, 48, (m, 2))
        wh = rng.uniform(2, 24, (m, 2))
        gt = np.c_[rng.integers(0, classes - 1, m), xy, xy + wh]         # the last class has no ground truth
        dets = []
        for row in gt:
            for _ in range(rng.integers(0, 3)):
                box = row[1:] + rng.normal(0, 0.08, 4) * np.r_[wh.mean(), wh.mean(), wh.mean(), wh.mean()]
                cls = row[0] if rng.random() < 0.85 else rng.integers(0, classes)
                dets.append([*box, rng.random(), cls])
        for _ in range(rng.integers(0, 8 if i != crowded else 150)):
            x, y = rng.uniform(0, 56, 2)
            dets.append([x, y, x + rng.uniform(1, 20), y + rng.uniform(1, 20), rng.random() * 0.7,
                         0 if i == crowded else rng.integers(0, classes)])
        dets = np.array(dets, dtype=np.float64).reshape(-1, 6)
        dets[:, [2, 3]] = np.maximum(dets[:, [2, 3]], dets[:, [0, 1]])
        if grid:
            gt[:, 1:] = np.round(gt[:, 1:] * 4) / 4
            dets[:, :4] = np.round(dets[:, :4] * 4) / 4
            dets[:, 4] = np.round(dets[:, 4], 1)
        pad = np.full((int(rng.integers(0, 3)), 5), -1.0)                  # padding rows, as in batches
        ground_truth.append(np.r_[gt, pad])
        detections.append(dets)
    return detections, ground_truth


@pytest.mark.parametrize("seed,grid,crowded", [(0, False, -1), (1, False, -1), (2, True, -1), (3, True, -1),
                                               (4, False, 5), (5, True, 7), (6, False, -1), (7, True, -1)])
def test_matches_pycocotools(seed, grid, crowded):
    detections, ground_truth = random_scene(seed, grid=grid, crowded=crowded)
    ours = mean_average_precision(detections, ground_truth, 4)
    coco_map, coco_map50 = coco_stats(detections, ground_truth, 4)
    assert ours["map50"] == pytest.approx(coco_map50, abs=1e-6)
    assert ours["map"] == pytest.approx(coco_map, abs=1e-6)
    assert ours["per_class_ap50"][3] == -1.0 and ours["per_class_ap"][3] == -1.0


def test_one_perfect_detection():
    result = mean_average_precision([np.array([[0, 0, 10, 10, 0.9, 1]])], [np.array([[1, 0, 0, 10, 10]])], 2)
    assert [result["map50"], result["map"]] == pytest.approx([1.0, 1.0])
    assert result["per_class_ap50"] == pytest.approx([-1.0, 1.0]) and result["per_class_ap"] == pytest.approx([-1, 1])


def test_false_positive_ranked_above_true_positive():
    gt = [np.array([[0, 0, 0, 10, 10]])]
    fp_first = [np.array([[20, 20, 30, 30, 0.9, 0], [0, 0, 10, 10, 0.8, 0]])]
    # Ranked: FP then TP; precision [0, 1/2] becomes [1/2, 1/2] after interpolation: AP 1/2 at every IoU.
    assert mean_average_precision(fp_first, gt, 1)["map50"] == pytest.approx(0.5)
    assert mean_average_precision(fp_first, gt, 1)["map"] == pytest.approx(0.5)
    tp_first = [np.array([[20, 20, 30, 30, 0.7, 0], [0, 0, 10, 10, 0.8, 0]])]
    assert mean_average_precision(tp_first, gt, 1)["map"] == pytest.approx(1.0)


def test_half_recall():
    # One true positive for two objects: precision 1 at recall points 0, 0.01, .., 0.5 (51 of 101), then 0.
    gt = [np.array([[0, 0, 0, 10, 10], [0, 20, 20, 30, 30]])]
    dets = [np.array([[0, 0, 10, 10, 0.5, 0]])]
    assert mean_average_precision(dets, gt, 1)["map"] == pytest.approx(51 / 101)


def test_iou_thresholds():
    # IoU 60 / 100 = 0.6: a hit at thresholds 0.5, 0.55, 0.6, a miss above.
    result = mean_average_precision([np.array([[0, 0, 10, 6, 0.9, 0]])], [np.array([[0, 0, 0, 10, 10]])], 1)
    assert result["map50"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(np.mean(0.6 >= np.array(COCO_IOU_THRESHOLDS)))
    assert result["map"] == pytest.approx(0.3)
    only = mean_average_precision([np.array([[0, 0, 10, 6, 0.9, 0]])], [np.array([[0, 0, 0, 10, 10]])], 1,
                                  iou_thresholds=[0.7])
    assert only["map50"] == pytest.approx(1.0) and only["map"] == 0.0


def test_each_ground_truth_matches_once():
    gt = [np.array([[0, 0, 0, 10, 10]])]
    dets = [np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0]])]     # a duplicate is a false positive
    result = mean_average_precision(dets, gt, 1)
    assert result["map"] == pytest.approx(1.0)      # the duplicate ranks below the hit, so precision at full recall is 1
    dets = [np.array([[0, 0, 10, 10, 0.8, 0], [0, 0, 10, 10, 0.9, 0]])]
    assert mean_average_precision(dets, gt, 1)["map"] == pytest.approx(1.0)


def test_no_detections_and_no_ground_truth():
    gt = [np.array([[0, 0, 0, 10, 10]]), np.zeros((0, 5))]
    result = mean_average_precision([np.zeros((0, 6)), np.zeros((0, 6))], gt, 2)
    assert result == {"map50": 0.0, "map": 0.0, "per_class_ap50": [0.0, -1.0], "per_class_ap": [0.0, -1.0]}
    none = mean_average_precision([np.array([[0, 0, 5, 5, 0.9, 0]])], [np.full((2, 5), -1.0)], 2)
    assert none["map50"] == -1.0 and none["map"] == -1.0
    assert mean_average_precision([], [], 3)["map"] == -1.0


def test_accepts_tensors_from_decode_and_padded_batches():
    gt = torch.tensor([[[0, 0, 0, 10, 10], [-1, -1, -1, -1, -1]], [[1, 4, 4, 20, 20], [0, 30, 30, 40, 50]]])
    dets = [torch.tensor([[0, 0, 10, 10, 0.9, 0]]), torch.tensor([[4, 4, 20, 20, 0.8, 1], [30, 30, 40, 50, 0.7, 0]])]
    result = mean_average_precision(dets, list(gt), 2)
    assert result["map"] == pytest.approx(1.0) and result["per_class_ap50"] == pytest.approx([1.0, 1.0])


def test_bad_input_raises():
    gt = [np.array([[0, 0, 0, 10, 10]])]
    with pytest.raises(NetError, match="ground truth for 1"):
        mean_average_precision([np.zeros((0, 6))] * 2, gt, 1)
    with pytest.raises(NetError, match="class 3"):
        mean_average_precision([np.array([[0, 0, 5, 5, 0.9, 3]])], gt, 2)
    with pytest.raises(NetError, match=r"expected \[n, 6\]"):
        mean_average_precision([np.zeros((2, 5))], gt, 1)
    with pytest.raises(NetError, match="x1 < x0"):
        mean_average_precision([np.zeros((0, 6))], [np.array([[0, 10, 0, 5, 10]])], 1)
    with pytest.raises(NetError, match="thresholds"):
        mean_average_precision([np.zeros((0, 6))], gt, 1, iou_thresholds=[1.5])


def test_fast_enough_for_a_validation_set():
    rng = np.random.default_rng(0)
    gt, dets = [], []
    for _ in range(2000):
        xy = rng.uniform(0, 40, (3, 2))
        gt.append(np.c_[rng.integers(0, 10, 3), xy, xy + rng.uniform(4, 24, (3, 2))])
        xy = rng.uniform(0, 40, (20, 2))
        dets.append(np.c_[xy, xy + rng.uniform(4, 24, (20, 2)), rng.random(20), rng.integers(0, 10, 20)])
    start = time.perf_counter()
    mean_average_precision(dets, gt, 10)
    assert time.perf_counter() - start < 2.0


def test_ties_in_iou_go_to_the_last_ground_truth_as_in_pycocotools():
    # The wide detection has IoU exactly 0.5 with both objects; taking the second leaves the first for the
    # narrow detection, so at IoU 0.5 both hit (AP 1). Above 0.5 only the narrow one hits, ranked second.
    gt = [np.array([[0, 0, 0, 10, 10], [0, 10, 0, 20, 10]])]
    dets = [np.array([[0, 0, 20, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0]])]
    result = mean_average_precision(dets, gt, 1)
    assert result["map50"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx((1.0 + 9 * 51 * 0.5 / 101) / 10)
    coco_map, coco_map50 = coco_stats(dets, gt, 1)
    assert (result["map"], result["map50"]) == pytest.approx((coco_map, coco_map50), abs=1e-12)
