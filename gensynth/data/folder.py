"""Image folders users bring (folder:DIR) for classification: DIR/<class>/*.jpg|png|bmp|webp.

DIR/train, DIR/val and DIR/test are used when present (each with the class folders); otherwise seeded, stratified
validation and test splits are carved. Every picture is decoded with Pillow, converted to the network's channels
(grey or RGB), resized so that it covers the network's input and centre-cropped to it. The decoded uint8 images are
kept in memory when they fit (decoded once, by DataLoader worker processes); otherwise each epoch decodes the
files again in the workers. Class names are the folder names, sorted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compiler.diagnostics import NetError
from gensynth.data.arrays import SplitArrays
from gensynth.data.normalized import FileSource
from gensynth.data.splits import TEST_FRACTION, TEST_SEED

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
LAYOUT = ("folder:DIR wants DIR/<class>/<image> (jpg, png, bmp or webp), or DIR/train/<class>/..., with "
          "DIR/val/ and DIR/test/ optional")
VAL_FRACTION = 0.1
VAL_SEED = 0x5A1
CACHE_FRACTION = 0.5  # decoded images are kept in memory when they take at most this share of the free memory
SMALL = 256  # fewer images than this are decoded in this process (starting workers would take longer)


@dataclass(frozen=True)
class FolderSplit:
    """One split's files and labels."""

    files: tuple[Path, ...]
    labels: np.ndarray


def _images_in(folder: Path) -> tuple[list[Path], int]:
    """The picture files of a class folder (sorted) and how many other files it holds."""
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    pictures = [f for f in files if f.suffix.lower() in EXTENSIONS]
    return pictures, len(files) - len(pictures)


def _class_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_split(root: Path, classes: list[str] | None, notes: list[str]) -> tuple[list[str], FolderSplit]:
    folders = _class_folders(root)
    if not folders:
        raise NetError(f"{root}: no class folders", notes=[LAYOUT])
    names = [d.name for d in folders]
    if classes is not None:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise NetError(f"{root}: class folder(s) {', '.join(unknown)} are not in the training split",
                           notes=[f"training classes: {', '.join(classes)}"])
    else:
        classes = names
    files, labels = [], []
    ignored = sum(1 for f in root.iterdir() if f.is_file())  # files beside the class folders
    for d in folders:
        pictures, others = _images_in(d)
        ignored += others
        if not pictures:
            raise NetError(f"{d}: empty class folder (no jpg, png, bmp or webp images)", notes=[LAYOUT])
        files += pictures
        labels += [classes.index(d.name)] * len(pictures)
    if ignored:
        notes.append(f"{root}: ignored {ignored} file(s) that are not jpg, png, bmp or webp images")
    return classes, FolderSplit(tuple(files), np.asarray(labels, dtype=np.int64))


def stratified(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (rest, carved) indices: `fraction` of each class (rounded, at least one where a class has two)."""
    rng = np.random.default_rng(seed)
    carved = []
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        take = min(len(members) - 1, max(1, int(round(len(members) * fraction)))) if len(members) > 1 else 0
        carved += members[:take].tolist()
    carved = np.sort(np.asarray(carved, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), carved), carved


def _take(split: FolderSplit, idx: np.ndarray) -> FolderSplit:
    return FolderSplit(tuple(split.files[i] for i in idx), split.labels[idx])


def scan_folder(root: Path) -> tuple[list[str], FolderSplit, FolderSplit, FolderSplit, list[str]]:
    """(class names, train, val, test, notes) for folder:DIR, checked before anything is decoded."""
    root = Path(root)
    if not root.is_dir():
        raise NetError(f"image folder not found: {root} is not a directory", notes=[LAYOUT])
    notes: list[str] = []
    subsets = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
    if "train" in subsets:
        classes, train = _read_split(subsets["train"], None, notes)
        given = {name: _read_split(subsets[name], classes, notes)[1] for name in ("val", "test") if name in subsets}
        notes.append(f"splits from {', '.join(str(p) for p in subsets.values())}")
    elif subsets:
        raise NetError(f"{root} has {'/, '.join(subsets)}/ but no train/", notes=[LAYOUT])
    else:
        classes, train = _read_split(root, None, notes)
        given = {}
    if len(classes) < 2:
        raise NetError(f"{root}: only one class ({classes[0]}); classification needs at least two class folders",
                       notes=[LAYOUT])
    for name, fraction, seed in (("test", TEST_FRACTION, TEST_SEED), ("val", VAL_FRACTION, VAL_SEED)):
        if name not in given:
            rest, carved = stratified(train.labels, fraction, seed)
            given[name], train = _take(train, carved), _take(train, rest)
            notes.append(f"no {name}/ in {root}: carved a stratified {name} split of {len(carved)} images "
                         f"({fraction:.0%} of each class, fixed seed)")
    return classes, train, given["val"], given["test"], notes


def decode(file: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """One picture as uint8 [C, H, W]: C grey or RGB, resized to cover H x W, centre-cropped (NetError if unreadable)."""
    channels, height, width = shape
    try:
        with Image.open(file) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            scale = max(height / img.height, width / img.width)
            size = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
            if size != img.size:
                img = img.resize(size, Image.Resampling.BILINEAR)
            left, top = (size[0] - width) // 2, (size[1] - height) // 2
            img = img.crop((left, top, left + width, top + height))
            a = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise NetError(f"image file not found: {file}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise NetError(f"{file}: not a readable image ({exc})") from None
    return np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))


class _Decoder:
    """decode() of a split's files; picklable, so DataLoader workers can run it. Errors come back as text."""

    def __init__(self, files: tuple[Path, ...], shape: tuple[int, int, int]):
        self.files, self.shape = files, tuple(shape)

    def __call__(self, i: int) -> np.ndarray:
        return decode(self.files[i], self.shape)


class _Safe(torch.utils.data.Dataset):
    def __init__(self, decoder: _Decoder):
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.decoder.files)

    def __getitem__(self, i: int):
        try:
            return self.decoder(i), None
        except NetError as err:
            return None, err.message


def _collate(items):
    return items


def workers() -> int:
    """DataLoader worker processes for decoding: one per core, at most eight."""
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def decode_all(files: tuple[Path, ...], shape: tuple[int, int, int], num_workers: int | None = None) -> np.ndarray:
    """Every file decoded into one uint8 [N, C, H, W] array, by DataLoader worker processes."""
    out = np.empty((len(files), *shape), dtype=np.uint8)
    n = workers() if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(_Safe(_Decoder(files, shape)), batch_size=64, collate_fn=_collate,
                                         num_workers=n if len(files) >= SMALL else 0)
    i = 0
    for batch in loader:
        for image, error in batch:
            if error is not None:
                raise NetError(error)
            out[i] = image
            i += 1
    return out


def free_memory() -> int:
    """Bytes of memory available now (Linux); a generous guess elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def read_folder(path: Path, input_shape: tuple[int, int, int]) -> SplitArrays:
    """folder:DIR at the network's input shape: uint8 arrays in memory, or FileSources when they would not fit."""
    if input_shape is None or len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise NetError(f"folder:{path} is decoded to the network's input, which must be [1 or 3, H, W]; "
                       f"got {list(input_shape) if input_shape else 'none'}")
    shape = tuple(int(s) for s in input_shape)
    classes, train, val, test, notes = scan_folder(path)
    total = (len(train.files) + len(val.files) + len(test.files)) * int(np.prod(shape))
    mode = "grey" if shape[0] == 1 else "RGB"
    if total <= CACHE_FRACTION * free_memory():
        arrays = [decode_all(s.files, shape) for s in (train, val, test)]
        notes.append(f"decoded {sum(len(a) for a in arrays)} images to {mode} {shape[2]}x{shape[1]} "
                     f"({total / 1e6:.0f} MB in memory)")
    else:
        arrays = [FileSource(len(s.files), shape, _Decoder(s.files, shape), workers()) for s in (train, val, test)]
        notes.append(f"{total / 1e9:.1f} GB of decoded images would not fit in memory: each epoch decodes the files "
                     f"again ({workers()} worker processes)")
    return SplitArrays(arrays[0], train.labels, arrays[2], test.labels, tuple(classes), tuple(notes),
                       val_x=arrays[1], val_y=val.labels)
