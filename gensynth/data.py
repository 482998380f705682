"""Dataset specs -> in-memory, normalised train/val/test tensors, with located errors for bad data."""

from __future__ import annotations

import functools
import gzip
import pickle
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from compiler.diagnostics import NetError
from gensynth.objectives import TASK_WORDS

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
KNOWN_SPECS = ("fashion-mnist", "fashion-mnist:DIR", "idx:DIR", "cifar10:DIR", "npz:FILE",
               "fashion-seg[:DIR]", "fashion-det[:DIR]", "masks:DIR", "coco:FILE.json")
# The task each kind of spec holds (everything else is classification).
KIND_TASK = {"fashion-seg": "segment", "fashion-det": "detect", "masks": "segment", "coco": "detect"}
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
NPZ_TEST_FRACTION = 0.1
# Test-side subsets use fixed seeds, independent of split_seed, so test reports stay comparable.
_TEST_SEED = 0x7E57
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAME = re.compile(r"(?P<pre>.*?)(?P<split>train|t10k|test)[-_.](?P<kind>images|labels)"
                       r"[-_.]idx(?P<nd>\d)[-_.]ubyte(?P<gz>\.gz)?")


@dataclass(frozen=True, repr=False)
class Dataset:
    """A classification dataset in memory: float32 N,C,H,W images normalised by train statistics."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: tuple[str, ...] = field(default=())
    task: str = "classify"  # classify | segment | detect: what the targets are (see gensynth.objectives)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
                f"test={len(self.test_y)}, input_shape={self.input_shape}, classes={self.num_classes})")


def load_dataset(spec: str, *, val_fraction: float = 0.1, split_seed: int = 0,
                 limit_train: int | None = None, limit_test: int | None = None, task: str | None = None) -> Dataset:
    """Load a dataset by spec (see KNOWN_SPECS), cached in-process; its task comes from the spec.

    A `task` given by the user must agree with the spec's (a clear error instead of a confusing loss).

    The validation split is carved from the training set with `split_seed`; `limit_train` caps the
    pool that train+val are carved from (a deterministic subset), `limit_test` the test set.
    The returned tensors are shared between callers of the cache: treat them as read-only.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise NetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for opt, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and value < 1:
            raise NetError(f"{opt} must be a positive number of images, got {value}")
    kind, path = _parse_spec(spec)
    own = KIND_TASK.get(kind, "classify")
    if task is not None and task != own:
        raise NetError(f"--task {task} does not fit dataset {spec!r}, which holds {TASK_WORDS[own]} targets",
                       notes=[f"use --task {own}, or leave --task out"])
    return _load_cached(spec, kind, path, float(val_fraction), int(split_seed), limit_train, limit_test)


def clear_dataset_cache() -> None:
    """Forget every dataset loaded so far (frees memory; the next load reads the files again)."""
    _load_cached.cache_clear()


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Per-image random crop from a zero-padded copy plus a random horizontal flip, as one gather."""
    if x.ndim != 4:
        raise NetError(f"augment needs (N, C, H, W) images, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    dev, wp = x.device, w + 2 * pad
    flat = functional.pad(x, (pad, pad, pad, pad)).reshape(b, c, (h + 2 * pad) * wp)
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    flip = torch.rand((b, 1), generator=generator, device=dev) < 0.5
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = dy + ar_h
    cols = dx + torch.where(flip, (w - 1) - ar_w, ar_w)
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return flat.gather(2, index).reshape(b, c, h, w)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): big-endian header, magic 0x0000TTNN, dims, payload."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise NetError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})",
                       notes=["an IDX file starts with two zero bytes, a type code and a dimension count"])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise NetError(f"{path}: truncated IDX header ({len(raw)} bytes, needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise NetError(f"{path}: truncated IDX file: header says shape {dims} ({need} bytes) "
                       f"but only {have} bytes follow")
    if have > need:
        raise NetError(f"{path}: corrupt IDX file: {have - need} unexpected bytes after shape {dims}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    """File contents, transparently gunzipped (detected by the gzip magic, not the name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NetError(f"dataset file not found: {path}") from None
    except OSError as exc:
        raise NetError(f"cannot read dataset file {path}: {exc.strerror or exc}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise NetError(f"{path}: corrupt or truncated gzip data ({exc})",
                       notes=["re-download or reinstall the dataset file"]) from None


def _parse_spec(spec: str) -> tuple[str, Path]:
    """Split 'kind:PATH' into a kind and an absolute path (so the cache is cwd-independent)."""
    if spec in ("fashion-mnist", "fashion-seg", "fashion-det"):
        return spec, Path(FASHION_MNIST_DIR)
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("fashion-mnist", "idx", "cifar10", "npz", "fashion-seg", "fashion-det", "masks", "coco"):
        if not rest:
            raise NetError(f"dataset spec {spec!r} is missing its path after '{kind}:'")
        return kind, Path(rest).expanduser().resolve()
    raise NetError(f"unknown dataset spec {spec!r}", notes=["known specs: " + ", ".join(KNOWN_SPECS)])


@functools.lru_cache(maxsize=4)
def _load_cached(spec: str, kind: str, path: Path, val_fraction: float, split_seed: int,
                 limit_train: int | None, limit_test: int | None) -> Dataset:
    """Read the files once per (spec, options) and build the splits."""
    task = KIND_TASK.get(kind, "classify")
    if kind == "cifar10":
        x, y, tx, ty, names = _read_cifar10(path)
        notes: list[str] = []
    elif kind in ("fashion-seg", "fashion-det"):
        from gensynth.scenes import read_fashion_scenes

        x, y, tx, ty, names, notes = read_fashion_scenes(task, path)
        notes = list(notes)
    elif kind == "masks":
        from gensynth.image_folders import read_mask_folder

        x, y, tx, ty, names, notes = read_mask_folder(path)
        notes = list(notes)
    elif kind == "coco":
        from gensynth.image_folders import read_coco

        x, y, tx, ty, names, notes = read_coco(path)
        notes = list(notes)
    elif kind == "npz":
        x, y, tx, ty, names, notes = _read_npz(path)
    else:
        x, y, tx, ty = _read_idx_dir(path, fashion=kind == "fashion-mnist")
        names = FASHION_CLASSES if kind == "fashion-mnist" else None
        notes = []
    num_classes = len(names) if names else int(max(y.max(initial=0), ty.max(initial=0))) + 1
    if task == "classify":
        for split, labels in (("train", y), ("test", ty)):
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise NetError(f"{spec}: {split} labels must lie in 0..{num_classes - 1}, "
                               f"found {int(labels.min())}..{int(labels.max())}")
    names = tuple(names) if names else tuple(str(k) for k in range(num_classes))

    rng = np.random.default_rng(split_seed)
    pool = rng.permutation(len(y))
    if limit_train is not None and limit_train < len(pool):
        pool = pool[:limit_train]
        notes.append(f"train+val limited to {limit_train} of {len(y)} images")
    n_val = int(round(len(pool) * val_fraction))
    val_idx, train_idx = np.sort(pool[:n_val]), np.sort(pool[n_val:])
    if len(train_idx) == 0:
        raise NetError(f"{spec}: no training images left after carving the validation split")
    test_idx = np.arange(len(ty))
    if limit_test is not None and limit_test < len(ty):
        test_idx = np.sort(np.random.default_rng(_TEST_SEED).permutation(len(ty))[:limit_test])
        notes.append(f"test limited to {limit_test} of {len(ty)} images")

    train_x = _to_float(x[train_idx])
    dims = (0, 2, 3)
    mean = train_x.double().mean(dim=dims)
    std = train_x.double().std(dim=dims, unbiased=False)
    if bool((std == 0).any()):
        notes.append("some channels are constant in the training split; their std is taken as 1")
        std = torch.where(std == 0, torch.ones_like(std), std)
    m, s = mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)

    def norm(t: torch.Tensor) -> torch.Tensor:
        return t.sub_(m).div_(s)

    return Dataset(
        name=spec,
        train_x=norm(train_x), train_y=_to_targets(y[train_idx], task),
        val_x=norm(_to_float(x[val_idx])), val_y=_to_targets(y[val_idx], task),
        test_x=norm(_to_float(tx[test_idx])), test_y=_to_targets(ty[test_idx], task), task=task,
        num_classes=num_classes, input_shape=tuple(int(d) for d in x.shape[1:]),
        class_names=names, mean=tuple(mean.tolist()), std=tuple(std.tolist()), notes=tuple(notes))


def _to_float(a: np.ndarray) -> torch.Tensor:
    """Images as float32 with canonical NCHW strides; 8-bit pixels are scaled to [0, 1] first.

    Copying into a fresh tensor matters: numpy gives an inserted channel axis stride 0, which torch
    would read as channels-last and silently switch convolution layouts depending on how callers index.
    """
    t = torch.empty(a.shape, dtype=torch.float32).copy_(torch.from_numpy(np.ascontiguousarray(a)))
    return t.div_(255.0) if a.dtype == np.uint8 else t


def _to_targets(a: np.ndarray, task: str = "classify") -> torch.Tensor:
    """Targets as a contiguous tensor: int64 labels, uint8 masks (255 = ignore) or float32 boxes."""
    dtype = {"classify": np.int64, "segment": np.uint8, "detect": np.float32}[task]
    return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))


def _check_pair(where: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one images/labels pair and bring images to N,C,H,W."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise NetError(f"{where}: images must have shape (N, H, W) or (N, C, H, W), got {x.shape}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise NetError(f"{where}: images have shape {x.shape}, which looks channels-last",
                       notes=["store them as (N, C, H, W), e.g. x.transpose(0, 3, 1, 2)"])
    if y.ndim != 1:
        raise NetError(f"{where}: labels must be one-dimensional, got shape {y.shape}")
    if len(x) != len(y):
        raise NetError(f"{where}: {len(x)} images but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise NetError(f"{where}: labels must be integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise NetError(f"{where}: images must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise NetError(f"{where}: images contain NaN or infinite values")
    return x, y


def _read_idx_dir(path: Path, fashion: bool) -> tuple[np.ndarray, ...]:
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
        out += _check_pair(f"{img.name}/{lab.name}", x, y)
    return tuple(out)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and plain containers: CIFAR files run no code."""

    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python-pickle CIFAR batch: {b'data': uint8 (N, 3072), b'labels': [...]} -> N,3,32,32."""
    if not path.is_file():
        raise NetError(f"missing CIFAR-10 file: {path}")
    try:
        with path.open("rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise NetError(f"{path}: corrupt CIFAR-10 batch ({exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise NetError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise NetError(f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    return _check_pair(path.name, data.reshape(-1, 3, 32, 32), labels)


def _read_cifar10(path: Path) -> tuple:
    """Read data_batch_1..5 and test_batch from a cifar-10-batches-py directory."""
    if not path.is_dir():
        raise NetError(f"CIFAR-10 directory not found: {path}",
                       notes=["cifar10:DIR wants the extracted cifar-10-batches-py directory"])
    missing = [n for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
               if not (path / n).is_file()]
    if missing:
        raise NetError(f"missing CIFAR-10 files in {path}: " + ", ".join(missing))
    parts = [_read_cifar_batch(path / f"data_batch_{i}") for i in range(1, 6)]
    tx, ty = _read_cifar_batch(path / "test_batch")
    names = CIFAR10_CLASSES
    if (path / "batches.meta").is_file():
        try:
            with (path / "batches.meta").open("rb") as fh:
                meta = _ArrayUnpickler(fh, encoding="bytes").load()
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"])
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NetError(f"{path / 'batches.meta'}: corrupt CIFAR-10 meta file ({exc})") from None
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y, tx, ty, names


def _read_npz(path: Path) -> tuple:
    """Arrays x, y (and x_test, y_test, class_names if present) from an .npz file."""
    if not path.is_file():
        raise NetError(f"npz dataset not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zlib.error, EOFError) as exc:
        raise NetError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise NetError(f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(arrays) or 'none'}",
                       notes=["an npz dataset needs x (N,C,H,W or N,H,W) and y (N,); "
                              "x_test/y_test are optional"])
    x, y = _check_pair(f"{path.name}: x/y", arrays["x"], arrays["y"])
    notes: list[str] = []
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise NetError(f"{path}: has only one of x_test / y_test; give both or neither")
    if "x_test" in arrays:
        tx, ty = _check_pair(f"{path.name}: x_test/y_test", arrays["x_test"], arrays["y_test"])
        if tx.shape[1:] != x.shape[1:]:
            raise NetError(f"{path}: x_test images are {tx.shape[1:]} but x images are {x.shape[1:]}")
    else:
        perm = np.random.default_rng(_TEST_SEED).permutation(len(y))
        n_test = max(1, int(round(len(y) * NPZ_TEST_FRACTION)))
        test, rest = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        x, y, tx, ty = x[rest], y[rest], x[test], y[test]
        notes.append(f"no x_test/y_test in {path.name}: carved a fixed test split of {n_test} images "
                     f"({NPZ_TEST_FRACTION:.0%}) from x/y")
    names = None
    if "class_names" in arrays:
        names = tuple(str(n) for n in arrays["class_names"].tolist())
        top = int(max(y.max(initial=0), ty.max(initial=0)))
        if len(names) <= top:
            raise NetError(f"{path}: {len(names)} class_names but labels go up to {top}")
    return x, y, tx, ty, names, notes
