"""Detection data users bring (coco:FILE.json): a COCO instances file over an image folder.

Returns uint8 images [N, C, H, W] and boxes float32 [N, K, 5] rows (class, x0, y0, x1, y1) in pixels, x1/y1
exclusive, padding rows gensynth.data.targets.BOX_PADDING.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError
from gensynth.data.arrays import SplitArrays, data_file
from gensynth.data.images import load_images
from gensynth.data.splits import carve_test_split
from gensynth.data.targets import BOX_PADDING


def read_coco(path: Path) -> SplitArrays:
    """coco:FILE.json -> SplitArrays; the test split is a sibling test/val file or carved."""
    path = Path(path)
    ref: list = []
    x, boxes, cats, notes = _read_coco_file(path, ref)
    sibling = next((s for word in ("test", "val") if "train" in path.name
                    and (s := path.with_name(path.name.replace("train", word))).is_file()), None)
    if sibling is not None:
        tx, tboxes, tcats, tnotes = _read_coco_file(sibling, ref)
        if tcats != cats:
            raise NetError(f"{sibling}: its categories differ from those of {path}",
                           notes=["the train and test files must list the same category ids and names"])
        notes += [f"test split from {sibling.name}, beside {path.name}"] + tnotes
    else:
        train, test, note = carve_test_split(len(x), path)
        x, tx = x[train], x[test]
        boxes, tboxes = [boxes[i] for i in train], [boxes[i] for i in test]
        notes.append(note)
    k = max([1, *(len(b) for b in boxes + tboxes)])
    return SplitArrays(x, _pad(boxes, k), tx, _pad(tboxes, k), tuple(name for _, name in cats), tuple(notes))


def _read_coco_file(path: Path, ref: list) -> tuple[np.ndarray, list[np.ndarray], list[tuple[int, str]], list[str]]:
    """One COCO instances file: images [N,C,H,W], per-image boxes [n,5], sorted (id, name) categories, notes."""
    data_file(path, "COCO annotation file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise NetError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise NetError(f"{path}: JSON nested too deeply to be a COCO annotation file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: an integer of over 4,300 digits
        raise NetError(f"cannot read COCO annotation file {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise NetError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise NetError(f"{path}: " + (f"{key!r} must be a list" if key in doc else f"missing key {key!r}"),
                           notes=["coco:FILE wants a COCO instances file: images [{id, file_name}], "
                                  "annotations [{image_id, category_id, bbox}], categories [{id, name}]"])
    cats: dict[int, str] = {}
    for i in range(len(doc["categories"])):
        cid = _field(path, doc, "categories", i, "id", (int,))
        if cid in cats:
            raise NetError(f"{path}: categories[{i}] repeats category id {cid}")
        cats[cid] = _field(path, doc, "categories", i, "name", (str,))
    if not cats:
        raise NetError(f"{path}: no categories")
    images, ids = _coco_images(path, doc, ref)
    boxes, notes = _coco_boxes(path, doc, images, ids, {cid: k for k, cid in enumerate(sorted(cats))})
    return images, boxes, sorted(cats.items()), notes


def _field(path: Path, doc: dict, what: str, i: int, key: str, kinds: tuple[type, ...]) -> object:
    """doc[what][i][key], checked to exist and to be one of `kinds` (bool never counts as int)."""
    record = doc[what][i]
    if not isinstance(record, dict) or key not in record:
        raise NetError(f"{path}: {what}[{i}] has no {key!r}")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise NetError(f"{path}: {what}[{i}].{key} has the wrong type: {value!r}")
    return value


def _coco_images(path: Path, doc: dict, ref: list) -> tuple[np.ndarray, dict]:
    """The listed image files (beside the JSON, else in its images/), and image id -> row."""
    files, ids = [], {}
    for i in range(len(doc["images"])):
        iid, name = _field(path, doc, "images", i, "id", (int, str)), _field(path, doc, "images", i, "file_name", (str,))
        if iid in ids:
            raise NetError(f"{path}: images[{i}] repeats image id {iid!r}")
        file = next((f for f in (path.parent / name, path.parent / "images" / name) if f.is_file()), None)
        if file is None:
            raise NetError(f"{path}: images[{i}] file {name!r} not found in {path.parent} or {path.parent / 'images'}")
        files.append(file)
        ids[iid] = len(ids)
    if not files:
        raise NetError(f"{path}: no images")
    images = load_images(files, ref, str(path))
    for i, (record, file) in enumerate(zip(doc["images"], files)):
        for key, size in (("width", images.shape[3]), ("height", images.shape[2])):
            if key in record and _field(path, doc, "images", i, key, (int,)) != size:
                raise NetError(f"{path}: images[{i}] says {key} {record[key]} but {file} is {size} pixels")
    return images, ids


def _coco_boxes(path: Path, doc: dict, images: np.ndarray, ids: dict, index: dict) -> tuple[list[np.ndarray], list[str]]:
    """Per-image [n, 5] boxes (class, x0, y0, x1, y1) clipped to the image, crowd and empty boxes skipped."""
    _, _, h, w = images.shape
    rows: list[list[list[float]]] = [[] for _ in images]
    crowd = clipped = empty = 0
    for i, record in enumerate(doc["annotations"]):
        iid = _field(path, doc, "annotations", i, "image_id", (int, str))
        cid = _field(path, doc, "annotations", i, "category_id", (int,))
        bbox = _field(path, doc, "annotations", i, "bbox", (list,))
        if iid not in ids:
            raise NetError(f"{path}: annotations[{i}] refers to unknown image id {iid!r}")
        if cid not in index:
            raise NetError(f"{path}: annotations[{i}] refers to unknown category id {cid}")
        if len(bbox) != 4 or not all(_coordinate(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise NetError(f"{path}: annotations[{i}].bbox must be [x, y, width, height] with width, "
                           f"height >= 0, got {bbox!r}")
        if record.get("iscrowd", 0):
            crowd += 1
            continue
        x, y, bw, bh = bbox
        box = [max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)]
        clipped += box != [x, y, x + bw, y + bh]
        if box[2] <= box[0] or box[3] <= box[1]:
            empty += 1
            continue
        rows[ids[iid]].append([float(index[cid]), *box])
    bare = sum(not r for r in rows)
    notes = [f"{path.name}: {text}" for count, text in (
        (crowd, f"skipped {crowd} crowd annotation(s) (iscrowd=1)"),
        (clipped, f"clipped {clipped} box(es) to the image bounds"),
        (empty, f"skipped {empty} box(es) of zero area"),
        (bare, f"{bare} image(s) have no boxes")) if count]
    return [np.asarray(r, dtype=np.float32).reshape(-1, 5) for r in rows], notes


def _coordinate(v: object) -> bool:
    """A pixel coordinate or size: a finite number of a sensible magnitude (JSON allows 400-digit integers)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return abs(v) < 2**53 if isinstance(v, int) else math.isfinite(v)


def _pad(boxes: list[np.ndarray], k: int) -> np.ndarray:
    """Per-image [n, 5] boxes as one float32 [N, k, 5] array, padding rows -1."""
    out = np.full((len(boxes), k, 5), BOX_PADDING, dtype=np.float32)
    for i, b in enumerate(boxes):
        out[i, :len(b)] = b
    return out
