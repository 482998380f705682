"""Segmentation data users bring (masks:DIR): PNG images and single-channel masks of class indices.

Returns uint8 images [N, C, H, W] (C = 1 grey or 3 RGB, every image the same size and mode) and uint8 masks
[N, H, W] of class indices (gensynth.data.targets.IGNORE_LABEL = ignore).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError
from gensynth.data.arrays import SplitArrays
from gensynth.data.images import load_images, open_image
from gensynth.data.splits import carve_test_split
from gensynth.data.targets import IGNORE_LABEL

MASK_LAYOUT = ("masks:DIR wants DIR/images/*.png and DIR/masks/*.png paired by file name, or DIR/train/ "
               "and DIR/test/ each holding images/ and masks/; DIR/classes.txt (one name a line) is optional")


def read_mask_folder(path: Path) -> SplitArrays:
    """masks:DIR -> SplitArrays; a fixed 10% test split unless DIR has train/ and test/."""
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
        train, test, note = carve_test_split(len(x), path)
        x, y, tx, ty = x[train], y[train], x[test], y[test]
        files, tfiles = [files[i] for i in train], [files[i] for i in test]
        notes.append(note)
    names = _class_names(path / "classes.txt")
    for masks, mask_files in ((y, files), (ty, tfiles)):
        tops = np.where(masks == IGNORE_LABEL, 0, masks).reshape(len(masks), -1).max(axis=1)
        if names is not None and (tops >= len(names)).any():
            i = int(np.argmax(tops >= len(names)))
            raise NetError(f"{mask_files[i]}: mask holds class index {tops[i]}, but {path / 'classes.txt'} "
                           f"names only {len(names)} classes (0..{len(names) - 1}; 255 = ignore)")
    if names is None:
        top = int(max(np.where(m == IGNORE_LABEL, 0, m).max(initial=0) for m in (y, ty)))
        names = tuple(str(k) for k in range(top + 1))
        notes.append(f"no classes.txt in {path}: classes named 0..{top} by the largest mask index")
    values = np.union1d(np.unique(y), np.unique(ty))
    if IGNORE_LABEL in values and set(values.tolist()) <= {0, IGNORE_LABEL}:
        notes.append("the masks hold only 0 and 255, and 255 means ignore: if 255 marks the foreground, "
                     "save the masks with 1 instead")
    return SplitArrays(x, y, tx, ty, names, tuple(notes))


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
    x = load_images(list(images.values()), ref, str(directory / "images"))
    y = [_load_mask(masks[s], images[s], x.shape[2:]) for s in images]
    return x, np.stack(y), [masks[s] for s in images]


def _load_mask(file: Path, image_file: Path, size: tuple[int, ...]) -> np.ndarray:
    """One single-channel mask of class indices as uint8 [H, W], the size of its image."""
    img = open_image(file)
    if img.mode not in ("L", "P", "1"):
        raise NetError(f"{file}: masks must hold class indices, but this mask is a {img.mode} image",
                       notes=["save each mask as a single-channel PNG (8-bit grey L or palette P) whose "
                              "pixel values are class indices, 255 = ignore"])
    m = np.asarray(img, dtype=np.uint8)
    if m.shape != size:
        raise NetError(f"{file}: mask is {m.shape[1]}x{m.shape[0]} but its image {image_file} is {size[1]}x{size[0]}")
    return m


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
    if len(lines) > IGNORE_LABEL:
        raise NetError(f"{file}: {len(lines)} class names, but masks hold at most 255 classes (255 = ignore)")
    return tuple(lines)
