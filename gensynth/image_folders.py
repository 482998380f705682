"""Segmentation and detection data users bring: masks:DIR (PNG image/mask folders) and coco:FILE.json.

Both readers return (x, y, tx, ty, class_names, notes) with uint8 images [N, C, H, W] (C = 1 grey or
3 RGB, every image the same size and mode); masks are uint8 [N, H, W] class indices (255 = ignore),
boxes float32 [N, K, 5] rows (class, x0, y0, x1, y1) in pixels, x1/y1 exclusive, padding rows -1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from compiler.diagnostics import NetError
from gensynth.data import _TEST_SEED, NPZ_TEST_FRACTION

IGNORE = 255
MASK_LAYOUT = ("masks:DIR wants DIR/images/*.png and DIR/masks/*.png paired by file name, or DIR/train/ "
               "and DIR/test/ each holding images/ and masks/; DIR/classes.txt (one name a line) is optional")


def read_mask_folder(path: Path) -> tuple:
    """masks:DIR -> (x, y, tx, ty, class_names, notes); a fixed 10% test split unless DIR has train/ and test/."""
    path = Path(path)
    if not path.is_dir():
        raise NetError(f"mask dataset not found: {path} is not a directory", notes=[MASK_LAYOUT])
    ref: list = []
    notes: list[str] = []
    splits = [path / "train", path / "test"]
    if any(d.is_dir() for d in splits):
        if not all(d.is_dir() for d in splits):
            have, lack = (splits[0], splits[1]) if splits[0].is_dir() else (splits[1], splits[0])
            raise NetError(f"{path} has {have.name}/ but no {lack.name}/", notes=[MASK_LAYOUT])
        (x, y, files), (tx, ty, tfiles) = (_read_pairs(d, ref) for d in splits)
        notes.append(f"train and test splits from {splits[0]} and {splits[1]}")
    else:
        x, y, files = _read_pairs(path, ref)
        train, test, note = _carve(len(x), path)
        x, y, tx, ty = x[train], y[train], x[test], y[test]
        files, tfiles = [files[i] for i in train], [files[i] for i in test]
        notes.append(note)
    names = _class_names(path / "classes.txt")
    for masks, mask_files in ((y, files), (ty, tfiles)):
        tops = np.where(masks == IGNORE, 0, masks).reshape(len(masks), -1).max(axis=1)
        if names is not None and (tops >= len(names)).any():
            i = int(np.argmax(tops >= len(names)))
            raise NetError(f"{mask_files[i]}: mask holds class index {tops[i]}, but {path / 'classes.txt'} "
                           f"names only {len(names)} classes (0..{len(names) - 1}; 255 = ignore)")
    if names is None:
        top = int(max(np.where(m == IGNORE, 0, m).max(initial=0) for m in (y, ty)))
        names = tuple(str(k) for k in range(top + 1))
        notes.append(f"no classes.txt in {path}: classes named 0..{top} by the largest mask index")
    values = np.union1d(np.unique(y), np.unique(ty))
    if IGNORE in values and set(values.tolist()) <= {0, IGNORE}:
        notes.append("the masks hold only 0 and 255, and 255 means ignore: if 255 marks the foreground, "
                     "save the masks with 1 instead")
    return x, y, tx, ty, names, notes


def read_coco(path: Path) -> tuple:
    """coco:FILE.json -> (x, y, tx, ty, class_names, notes); the test split is a sibling test/val file or carved."""
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
        train, test, note = _carve(len(x), path)
        x, tx = x[train], x[test]
        boxes, tboxes = [boxes[i] for i in train], [boxes[i] for i in test]
        notes.append(note)
    k = max([1, *(len(b) for b in boxes + tboxes)])
    return x, _pad(boxes, k), tx, _pad(tboxes, k), tuple(name for _, name in cats), notes


def _read_pairs(directory: Path, ref: list) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """DIR/images/*.png and DIR/masks/*.png paired by stem, as uint8 [N,C,H,W], [N,H,W] and the mask files."""
    found = []
    for sub in ("images", "masks"):
        folder = directory / sub
        if not folder.is_dir():
            raise NetError(f"mask dataset folder not found: {folder}", notes=[MASK_LAYOUT])
        found.append({f.stem: f for f in sorted(folder.iterdir()) if f.suffix.lower() == ".png" and f.is_file()})
    images, masks = found
    if not images:
        raise NetError(f"no .png images in {directory / 'images'}", notes=[MASK_LAYOUT])
    lonely = [f"{images[s].name} (no mask)" for s in images if s not in masks]
    lonely += [f"{masks[s].name} (no image)" for s in masks if s not in images]
    if lonely:
        more = f" and {len(lonely) - 5} more" if len(lonely) > 5 else ""
        raise NetError(f"{directory}: images and masks do not pair up by file name: "
                       + ", ".join(lonely[:5]) + more,
                       notes=["each images/NAME.png needs a masks/NAME.png and vice versa"])
    x = [_load_image(images[s], ref) for s in images]
    y = [_load_mask(masks[s], images[s], img.shape[1:]) for s, img in zip(images, x)]
    return np.stack(x), np.stack(y), [masks[s] for s in images]


def _load_image(file: Path, ref: list) -> np.ndarray:
    """One grey or RGB picture as uint8 [C, H, W], checked against the first one loaded (kept in ref)."""
    img = _open(file)
    if img.mode in ("LA", "RGBA"):
        if np.asarray(img.getchannel("A")).min() < 255:
            raise NetError(f"{file}: the image has transparent pixels (mode {img.mode})",
                           notes=["images must be grey (L) or RGB; flatten the alpha channel first"])
        img = img.convert(img.mode[:-1])
    elif img.mode in ("1", "P"):
        img = img.convert("L" if img.mode == "1" else "RGB")
    elif img.mode not in ("L", "RGB"):
        raise NetError(f"{file}: unsupported image mode {img.mode}", notes=["images must be 8-bit grey (L) or RGB"])
    a = np.asarray(img, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if not ref:
        ref.append((file, a.shape))
    first, shape = ref[0]
    if a.shape != shape:
        raise NetError(f"{file}: image is {_describe(a.shape)} but {first} is {_describe(shape)}",
                       notes=["all images must have the same size and mode (grey or RGB)"])
    return np.ascontiguousarray(a)


def _load_mask(file: Path, image_file: Path, size: tuple[int, ...]) -> np.ndarray:
    """One single-channel mask of class indices as uint8 [H, W], the size of its image."""
    img = _open(file)
    if img.mode not in ("L", "P", "1"):
        raise NetError(f"{file}: masks must hold class indices, but this mask is a {img.mode} image",
                       notes=["save each mask as a single-channel PNG (8-bit grey L or palette P) whose "
                              "pixel values are class indices, 255 = ignore"])
    m = np.asarray(img, dtype=np.uint8)
    if m.shape != size:
        raise NetError(f"{file}: mask is {m.shape[1]}x{m.shape[0]} but its image {image_file} is {size[1]}x{size[0]}")
    return m


def _open(file: Path) -> Image.Image:
    """A fully read PIL image, or a NetError naming the file."""
    try:
        img = Image.open(file)
        img.load()
    except FileNotFoundError:
        raise NetError(f"image file not found: {file}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise NetError(f"{file}: not a readable image ({exc})") from None
    return img


def _describe(shape: tuple[int, ...]) -> str:
    """'WxH grey' or 'WxH RGB' for a [C, H, W] shape."""
    return f"{shape[2]}x{shape[1]} {'grey' if shape[0] == 1 else 'RGB'}"


def _carve(n: int, source: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The fixed test split (NPZ_TEST_FRACTION, seed _TEST_SEED): sorted train and test indices and a note."""
    if n < 2:
        raise NetError(f"{source}: only {n} image; at least 2 are needed to carve a test split")
    perm = np.random.default_rng(_TEST_SEED).permutation(n)
    n_test = max(1, int(round(n * NPZ_TEST_FRACTION)))
    return (np.sort(perm[n_test:]), np.sort(perm[:n_test]),
            f"no separate test split for {source}: carved a fixed test split of {n_test} of {n} images "
            f"({NPZ_TEST_FRACTION:.0%})")


def _class_names(file: Path) -> tuple[str, ...] | None:
    """Names from classes.txt (line k names class k), or None when there is no such file."""
    if not file.is_file():
        return None
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise NetError(f"{file}: cannot read class names ({exc})") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise NetError(f"{file}: no class names", notes=["write one class name a line; line k names class k"])
    for i, name in enumerate(lines):
        if not name:
            raise NetError(f"{file}:{i + 1}: empty class name (class {i})")
        if name in lines[:i]:
            raise NetError(f"{file}:{i + 1}: class name {name!r} repeats line {lines.index(name) + 1}")
    if len(lines) > IGNORE:
        raise NetError(f"{file}: {len(lines)} class names, but masks hold at most 255 classes (255 = ignore)")
    return tuple(lines)


def _read_coco_file(path: Path, ref: list) -> tuple[np.ndarray, list[np.ndarray], list[tuple[int, str]], list[str]]:
    """One COCO instances file: images [N,C,H,W], per-image boxes [n,5], sorted (id, name) categories, notes."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NetError(f"COCO annotation file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NetError(f"cannot read COCO annotation file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise NetError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
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
    images, ids = [], {}
    for i, record in enumerate(doc["images"]):
        iid, name = _field(path, doc, "images", i, "id", (int, str)), _field(path, doc, "images", i, "file_name", (str,))
        if iid in ids:
            raise NetError(f"{path}: images[{i}] repeats image id {iid!r}")
        file = next((f for f in (path.parent / name, path.parent / "images" / name) if f.is_file()), None)
        if file is None:
            raise NetError(f"{path}: images[{i}] file {name!r} not found in {path.parent} or {path.parent / 'images'}")
        images.append(_load_image(file, ref))
        ids[iid] = len(ids)
        for key, size in (("width", images[-1].shape[2]), ("height", images[-1].shape[1])):
            if key in record and _field(path, doc, "images", i, key, (int,)) != size:
                raise NetError(f"{path}: images[{i}] says {key} {record[key]} but {file} is {size} pixels")
    if not images:
        raise NetError(f"{path}: no images")
    return np.stack(images), ids


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
        if (len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
                or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0):
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


def _pad(boxes: list[np.ndarray], k: int) -> np.ndarray:
    """Per-image [n, 5] boxes as one float32 [N, k, 5] array, padding rows -1."""
    out = np.full((len(boxes), k, 5), -1, dtype=np.float32)
    for i, b in enumerate(boxes):
        out[i, :len(b)] = b
    return out
