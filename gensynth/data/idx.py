"""IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST): idx:DIR and fashion-mnist[:DIR]."""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from compiler.diagnostics import NetError
from compiler.memory import check_allocation
from gensynth.data.arrays import SplitArrays, check_pair, data_file

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAME = re.compile(r"(?P<pre>.*?)(?P<split>train|t10k|test)[-_.](?P<kind>images|labels)"
                       r"[-_.]idx(?P<nd>\d)[-_.]ubyte(?P<gz>\.gz)?")


def read_idx_dataset(path: Path, fashion: bool) -> SplitArrays:
    """idx:DIR (or fashion-mnist[:DIR], which names its classes) as train and test arrays."""
    x, y, tx, ty = read_idx_dir(path, fashion)
    return SplitArrays(x, y, tx, ty, FASHION_CLASSES if fashion else None)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): big-endian header, magic 0x0000TTNN, dims, payload.

    The file is streamed: the header is checked (and its payload's size against the memory available) before
    the payload is read, so a corrupt header or a gzip bomb is refused instead of allocated."""
    path = data_file(Path(path), "dataset file")
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as f:
            return _read_idx_stream(f, path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise NetError(f"{path}: corrupt or truncated gzip data ({exc})",
                       notes=["re-download or reinstall the dataset file"]) from None
    except OSError as exc:
        raise NetError(f"cannot read dataset file {path}: {exc.strerror or exc}") from None


def _read_idx_stream(f: BinaryIO, path: Path) -> np.ndarray:
    magic = f.read(4)
    if len(magic) < 4 or magic[0:2] != b"\0\0" or magic[2] not in _IDX_DTYPES or magic[3] == 0:
        raise NetError(f"{path}: not an IDX file (bad magic number {magic.hex() or 'empty'})",
                       notes=["an IDX file starts with two zero bytes, a type code and a dimension count"])
    ndim = magic[3]
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise NetError(f"{path}: truncated IDX header ({4 + len(raw_dims)} bytes, needs {4 + 4 * ndim})")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    dtype = np.dtype(_IDX_DTYPES[magic[2]])
    if 0 in dims:
        raise NetError(f"{path}: the IDX header gives shape {dims}, which holds nothing")
    need = math.prod(dims) * dtype.itemsize
    check_allocation(need, f"{path}: its IDX header says shape {dims}, which")
    payload = f.read(need)
    if len(payload) < need:
        raise NetError(f"{path}: truncated IDX file: header says shape {dims} ({need} bytes) "
                       f"but only {len(payload)} bytes follow")
    extra = 0
    while chunk := f.read(1 << 20):
        extra += len(chunk)
        if extra > 1 << 26:
            break
    if extra:
        raise NetError(f"{path}: corrupt IDX file: {extra if extra <= 1 << 26 else 'more than 64 MB of'} "
                       f"unexpected bytes after shape {dims}")
    return np.frombuffer(payload, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_dir(path: Path, fashion: bool) -> tuple[np.ndarray, ...]:
    """Find and read the train/test images/labels IDX files in a directory (or DIR/PREFIX)."""
    # idx:DIR/PREFIX picks one set from a directory holding several (EMNIST's balanced, digits, ...).
    directory, prefix = (path, "") if path.is_dir() or fashion else (path.parent, path.name)
    if not directory.is_dir() or (prefix and not any(directory.glob(prefix + "*"))):
        what = "Fashion-MNIST" if fashion else "IDX dataset"
        notes = ([f"install it: sudo apt-get update && sudo apt-get install dataset-fashion-mnist "
                  f"(it provides {FASHION_MNIST_DIR})",
                  "or pass fashion-mnist:DIR or idx:DIR naming a directory with "
                  + ", ".join(FASHION_FILES)] if fashion else
                 ["idx:DIR needs a directory with train/t10k images/labels IDX files "
                  "(MNIST naming), or idx:DIR/PREFIX to pick one set, e.g. emnist-balanced"])
        raise NetError(f"{what} not found: {path} does not exist", notes=notes)
    groups: dict[str, dict[tuple[str, str], Path]] = {}
    for f in sorted(directory.iterdir()):
        m = _IDX_NAME.fullmatch(f.name.lower())
        if not m or not f.name.startswith(prefix) or not f.is_file():
            continue
        split = "train" if m["split"] == "train" else "test"
        slot = groups.setdefault(m["pre"], {})
        # Prefer the uncompressed copy when both exist: it loads faster.
        if (split, m["kind"]) not in slot or not m["gz"]:
            slot[(split, m["kind"])] = f
    if not groups:
        notes = ["expected " + ", ".join(FASHION_FILES) + " (gzipped or not)"]
        if fashion:
            notes.append("reinstall: sudo apt-get update && sudo apt-get install --reinstall dataset-fashion-mnist")
        raise NetError(f"no IDX files found in {directory}" + (f" starting with {prefix!r}" if prefix else ""),
                       notes=notes)
    if len(groups) > 1:
        raise NetError(f"{directory} holds several IDX datasets: " + ", ".join(repr(g) for g in groups),
                       notes=[f"pick one with idx:{directory}/PREFIX"])
    pre, files = next(iter(groups.items()))
    need = [("train", "images"), ("train", "labels"), ("test", "images"), ("test", "labels")]
    missing = [f"{pre}{'t10k' if s == 'test' else s}-{k}-idx{3 if k == 'images' else 1}-ubyte[.gz]"
               for s, k in need if (s, k) not in files]
    if missing:
        raise NetError(f"missing dataset files in {directory}: " + ", ".join(missing))
    out = []
    for split in ("train", "test"):
        img, lab = files[(split, "images")], files[(split, "labels")]
        x, y = read_idx(img), read_idx(lab)
        if y.ndim == 1 and x.ndim >= 1 and len(x) != len(y):
            raise NetError(f"{split} split: {img.name} has {len(x)} images but {lab.name} has {len(y)} labels")
        out += check_pair(f"{img.name}/{lab.name}", x, y)
    return tuple(out)
