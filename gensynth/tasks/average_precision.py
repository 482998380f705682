"""COCO-style mean average precision for boxes, vectorised over images (numpy; matches pycocotools).

Detections per image are [n, 6] rows (x0, y0, x1, y1, score, class), ground truth [m, 5] rows
(class, x0, y0, x1, y1); both in pixels with exclusive x1/y1, so a box is x1 - x0 wide, which is what
pycocotools' [x, y, w, h] boxes mean. Ground-truth rows with class < 0 are padding. There are no area
ranges and no crowd boxes: every ground-truth box counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.diagnostics import NetError

# pycocotools' exact floats (its linspace gives 0.8999999999999999, not 0.9, and IoU 0.9 passes it).
COCO_IOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
_CHUNK = 1 << 22                       # at most this many (group, detection, gt, threshold) cells at once


def _rows(batch: Sequence[Any], columns: int, what: str, num_classes: int, class_column: int) -> list[np.ndarray]:
    """Each image's rows as float64 [r, columns] (tensors are copied to the CPU), checked."""
    out = []
    for i, rows in enumerate(batch):
        if hasattr(rows, "detach"):
            rows = rows.detach().cpu().numpy()
        rows = np.asarray(rows, dtype=np.float64)
        if rows.size == 0:
            rows = rows.reshape(0, columns)
        if rows.ndim != 2 or rows.shape[1] != columns:
            raise NetError(f"{what} for image {i} has shape {list(rows.shape)}, expected [n, {columns}]")
        cls = rows[:, class_column]
        if what == "ground truth":
            rows, cls = rows[cls >= 0], cls[cls >= 0]
        if ((cls < 0) | (cls >= num_classes) | (cls != np.floor(cls))).any():
            bad = cls[(cls < 0) | (cls >= num_classes) | (cls != np.floor(cls))][0]
            raise NetError(f"{what} for image {i} has class {bad:g}, outside 0..{num_classes - 1}")
        box = rows[:, [1, 2, 3, 4]] if what == "ground truth" else rows[:, :4]
        if ((box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1])).any():
            raise NetError(f"{what} for image {i} has a box with x1 < x0 or y1 < y0",
                           notes=["boxes are (x0, y0, x1, y1) with exclusive x1, y1"])
        out.append(rows)
    return out


def _flatten(rows: list[np.ndarray], columns: int) -> tuple[np.ndarray, np.ndarray]:
    """All images' rows stacked, and each row's image index."""
    counts = [len(r) for r in rows]
    stacked = np.concatenate(rows) if rows else np.zeros((0, columns))
    return stacked, np.repeat(np.arange(len(rows)), counts)


def _rank_in_group(keys: np.ndarray) -> np.ndarray:
    """For sorted keys, each element's position within its run of equal keys."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [..., D, 4] against b [..., M, 4] (x0, y0, x1, y1), as [..., D, M]; 0 if disjoint."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
             - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def _match(ious: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """COCO's greedy matching in each group: [G, D, M] IoUs (-1 = no box) -> matched flags [G, D, T].

    Detections go best-first; each takes the unmatched ground truth of highest IoU >= the threshold,
    the last such one on ties, as pycocotools' loop does.
    """
    g, d, m = ious.shape
    taken = np.zeros((g, m, len(thresholds)), dtype=bool)
    matched = np.zeros((g, d, len(thresholds)), dtype=bool)
    for j in range(d):
        iou = ious[:, j, :, None]
        candidate = (iou >= thresholds) & ~taken
        best = m - 1 - np.argmax(np.where(candidate, iou, -np.inf)[:, ::-1], axis=1)
        found = candidate.any(axis=1)
        gi, ti = np.nonzero(found)
        taken[gi, best[gi, ti], ti] = True
        matched[:, j] = found
    return matched


def _average_precision(hits: np.ndarray, num_gt: int) -> np.ndarray:
    """AP per threshold from best-first hit flags [n, T]: 101-point interpolated precision, as COCO."""
    if len(hits) == 0:
        return np.zeros(hits.shape[1])
    tp = np.cumsum(hits, axis=0).astype(float)
    fp = np.cumsum(~hits, axis=0).astype(float)
    recall = tp / num_gt
    precision = np.maximum.accumulate((tp / (tp + fp + np.spacing(1)))[::-1], axis=0)[::-1]
    ap = np.empty(hits.shape[1])
    for t in range(hits.shape[1]):
        at = np.searchsorted(recall[:, t], RECALL_POINTS, side="left")
        ap[t] = np.where(at < len(hits), precision[np.minimum(at, len(hits) - 1), t], 0.0).mean()
    return ap


def _hits(det: np.ndarray, det_key: np.ndarray, gt: np.ndarray, gt_key: np.ndarray,
          thresholds: np.ndarray) -> np.ndarray:
    """Which detections match a ground truth, [n, T]; rows come sorted by (image, class) key, best first.

    Only groups with both detections and ground truth need IoUs; they are padded to [G, D, M] boxes and
    matched a chunk of groups at a time, so memory stays bounded however many images there are.
    """
    hits = np.zeros((len(det), len(thresholds)), dtype=bool)
    groups = np.intersect1d(det_key, gt_key)
    if len(groups) == 0:
        return hits
    d_in, g_in = np.isin(det_key, groups), np.isin(gt_key, groups)
    d_group, g_group = np.searchsorted(groups, det_key[d_in]), np.searchsorted(groups, gt_key[g_in])
    d_rank, g_rank = _rank_in_group(det_key)[d_in], _rank_in_group(gt_key)[g_in]
    depth, width = d_rank.max() + 1, g_rank.max() + 1
    det_boxes, det_real = np.zeros((len(groups), depth, 4)), np.zeros((len(groups), depth, 1), dtype=bool)
    det_boxes[d_group, d_rank], det_real[d_group, d_rank] = det[d_in, :4], True
    gt_boxes, gt_real = np.zeros((len(groups), width, 4)), np.zeros((len(groups), 1, width), dtype=bool)
    gt_boxes[g_group, g_rank], gt_real[g_group, 0, g_rank] = gt[g_in, 1:], True
    flags = np.zeros((len(groups), depth, len(thresholds)), dtype=bool)
    step = max(1, _CHUNK // (depth * width * len(thresholds)))
    for lo in range(0, len(groups), step):
        chunk = slice(lo, lo + step)
        ious = np.where(det_real[chunk] & gt_real[chunk], _iou(det_boxes[chunk], gt_boxes[chunk]), -1.0)
        flags[chunk] = _match(ious, thresholds)
    hits[d_in] = flags[d_group, d_rank]
    return hits


def mean_average_precision(detections: Sequence[Any], ground_truth: Sequence[Any], num_classes: int,
                           iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
                           max_detections: int = 100) -> dict[str, Any]:
    """COCO box AP: {"map50", "map" (mean over iou_thresholds), "per_class_ap50", "per_class_ap"}.

    As pycocotools' bbox evaluation (area "all", maxDets max_detections): per image and class the
    best-scored max_detections are kept, matched greedily, and ranked across images by score (stably);
    AP is 101-point interpolated precision. Classes without ground truth get -1 and are left out of
    the means; with no ground truth at all, map50 and map are -1 as well.
    """
    if len(detections) != len(ground_truth):
        raise NetError(f"detections for {len(detections)} images but ground truth for {len(ground_truth)}")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or len(thresholds) == 0 or ((thresholds < 0) | (thresholds > 1)).any():
        raise NetError(f"IoU thresholds must be a non-empty list in [0, 1], got {list(iou_thresholds)}")
    if max_detections < 1 or num_classes < 1:
        raise NetError(f"max_detections and num_classes must be >= 1, got {max_detections}, {num_classes}")
    all_thresholds = np.minimum(np.r_[0.5, thresholds], 1 - 1e-10)   # column 0 is for map50
    det, det_image = _flatten(_rows(detections, 6, "detections", num_classes, 5), 6)
    gt, gt_image = _flatten(_rows(ground_truth, 5, "ground truth", num_classes, 0), 5)

    # Detections by (image, class) group, best score first (stable), cut to max_detections per group.
    det_key = det_image * num_classes + det[:, 5].astype(np.int64)
    order = np.lexsort((np.arange(len(det)), -det[:, 4], det_key))
    det, det_key = det[order], det_key[order]
    keep = _rank_in_group(det_key) < max_detections
    det, det_key = det[keep], det_key[keep]
    gt_key = gt_image * num_classes + gt[:, 0].astype(np.int64)
    order = np.argsort(gt_key, kind="stable")
    gt, gt_key = gt[order], gt_key[order]

    hits = _hits(det, det_key, gt, gt_key, all_thresholds)

    # Per class: rank all its detections by score (stable in image order), accumulate, interpolate.
    ap = -np.ones((num_classes, len(all_thresholds)))
    det_class, gt_class = det_key % num_classes, gt_key % num_classes
    for c in range(num_classes):
        num_gt = int((gt_class == c).sum())
        if num_gt:
            mine = np.flatnonzero(det_class == c)
            mine = mine[np.argsort(-det[mine, 4], kind="stable")]
            ap[c] = _average_precision(hits[mine], num_gt)
    present = ap[:, 0] >= 0
    return {"map50": float(ap[present, 0].mean()) if present.any() else -1.0,
            "map": float(ap[present, 1:].mean()) if present.any() else -1.0,
            "per_class_ap50": ap[:, 0].tolist(),
            "per_class_ap": np.where(present, ap[:, 1:].mean(axis=1), -1.0).tolist()}
