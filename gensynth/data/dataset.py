"""Dataset specs -> in-memory, normalised train/val/test tensors, with located errors for bad data.

Each kind of spec has one reader (READERS) returning SplitArrays; this module carves the validation split,
normalises by the training split's statistics and caches the result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from compiler.diagnostics import NetError
from gensynth.data.arrays import SplitArrays
from gensynth.data.cifar import read_cifar10
from gensynth.data.coco import read_coco
from gensynth.data.folder import read_folder
from gensynth.data.idx import FASHION_MNIST_DIR, read_idx_dataset
from gensynth.data.masks import read_mask_folder
from gensynth.data.normalized import FileSource, NormalizedImages
from gensynth.data.npz import read_npz
from gensynth.data.scenes import read_fashion_scenes
from gensynth.data.splits import TEST_SEED
from gensynth.data.targets import TASK_WORDS, to_targets

KNOWN_SPECS = ("fashion-mnist", "fashion-mnist:DIR", "idx:DIR", "cifar10:DIR", "npz:FILE", "folder:DIR",
               "fashion-seg[:DIR]", "fashion-det[:DIR]", "masks:DIR", "coco:FILE.json")
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; a label of 10**9 is a mistake, not a class
# The task each kind of spec holds (everything else is classification).
KIND_TASK = {"fashion-seg": "segment", "fashion-det": "detect", "masks": "segment", "coco": "detect"}
# One reader per kind of spec: path -> SplitArrays.
READERS: dict[str, Callable[[Path], SplitArrays]] = {
    "fashion-mnist": lambda path: read_idx_dataset(path, fashion=True),
    "idx": lambda path: read_idx_dataset(path, fashion=False),
    "cifar10": read_cifar10,
    "npz": read_npz,
    "fashion-seg": lambda path: read_fashion_scenes("segment", path),
    "fashion-det": lambda path: read_fashion_scenes("detect", path),
    "masks": read_mask_folder,
    "coco": read_coco,
    "folder": read_folder,
}
# Readers that decode to the network's input shape ((path, input_shape) -> SplitArrays); their images stay compact
# (uint8, or files read again each epoch) and are normalised batch by batch (gensynth.data.normalized).
SHAPED = frozenset({"folder"})
STATS_SAMPLE = 2000  # images whose pixels give the mean and std when the images are not in memory


@dataclass(frozen=True, repr=False)
class Dataset:
    """A dataset: float32 N,C,H,W images normalised by train statistics (in memory; or, for folder:DIR, compact
    NormalizedImages that index like tensors) and the targets of the data's task."""

    name: str
    train_x: torch.Tensor | NormalizedImages
    train_y: torch.Tensor
    val_x: torch.Tensor | NormalizedImages
    val_y: torch.Tensor
    test_x: torch.Tensor | NormalizedImages
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: tuple[str, ...] = field(default=())
    task: str = "classify"  # classify | segment | detect: what the targets are (see gensynth.tasks.objectives)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
                f"test={len(self.test_y)}, input_shape={self.input_shape}, classes={self.num_classes})")


def load_dataset(spec: str, *, val_fraction: float = 0.1, split_seed: int = 0,
                 limit_train: int | None = None, limit_test: int | None = None, task: str | None = None,
                 input_shape: tuple[int, ...] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> Dataset:
    """Load a dataset by spec (see KNOWN_SPECS), cached in-process; its task comes from the spec.

    A `task` given by the user must agree with the spec's (a clear error instead of a confusing loss).
    `input_shape` is the network's [C, H, W]: image folders are decoded to it (other specs ignore it).
    Images are normalised per channel by the training split's mean and std, or by the given `mean` and `std`
    (those a network's weights were trained with: gensynth.training.preprocessing; 0 and 1 give raw pixels).

    The validation split is carved from the training set with `split_seed`; `limit_train` caps the
    pool that train+val are carved from (a deterministic subset), `limit_test` the test set.
    The returned tensors are shared between callers of the cache: treat them as read-only.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise NetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for opt, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and value < 1:
            raise NetError(f"{opt} must be a positive number of images, got {value}")
    if (mean is None) != (std is None):
        raise NetError("a normalisation needs both a mean and a std per channel")
    if std is not None and any(not s > 0 for s in std):
        raise NetError(f"the normalisation's std must be positive per channel, got {list(std)}")
    normalization = (tuple(map(float, mean)), tuple(map(float, std))) if mean is not None else None
    kind, path = _parse_spec(spec)
    own = KIND_TASK.get(kind, "classify")
    if task is not None and task != own:
        raise NetError(f"--task {task} does not fit dataset {spec!r}, which holds {TASK_WORDS[own]} targets",
                       notes=[f"use --task {own}, or leave --task out"])
    shape = tuple(int(d) for d in input_shape) if kind in SHAPED and input_shape is not None else None
    if kind in SHAPED and shape is None:
        raise NetError(f"{spec}: images are decoded to the network's input size; give input_shape")
    return _load_cached(spec, kind, path, float(val_fraction), int(split_seed), limit_train, limit_test, shape,
                        normalization)


def clear_dataset_cache() -> None:
    """Forget every dataset loaded so far (frees memory; the next load reads the files again)."""
    _load_cached.cache_clear()


def _parse_spec(spec: str) -> tuple[str, Path]:
    """Split 'kind:PATH' into a kind and an absolute path (so the cache is cwd-independent)."""
    if spec in ("fashion-mnist", "fashion-seg", "fashion-det"):
        return spec, Path(FASHION_MNIST_DIR)
    kind, sep, rest = spec.partition(":")
    if sep and kind in READERS:
        if not rest:
            raise NetError(f"dataset spec {spec!r} is missing its path after '{kind}:'")
        try:
            return kind, Path(rest).expanduser().resolve()
        except RuntimeError as exc:  # ~user that does not exist, or a symlink loop
            raise NetError(f"dataset spec {spec!r}: cannot resolve the path ({exc})") from None
    raise NetError(f"unknown dataset spec {spec!r}", notes=["known specs: " + ", ".join(KNOWN_SPECS)])


@functools.lru_cache(maxsize=4)
def _load_cached(spec: str, kind: str, path: Path, val_fraction: float, split_seed: int,
                 limit_train: int | None, limit_test: int | None, input_shape: tuple | None = None,
                 normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> Dataset:
    """Read the files once per (spec, options) and build the splits."""
    task = KIND_TASK.get(kind, "classify")
    if kind in SHAPED:
        return _compact(spec, READERS[kind](path, input_shape), split_seed, limit_train, limit_test, normalization)
    arrays = READERS[kind](path)
    x, y, tx, ty, names, notes = arrays.x, arrays.y, arrays.test_x, arrays.test_y, arrays.class_names, list(arrays.notes)
    num_classes = len(names) if names else int(max(y.max(initial=0), ty.max(initial=0))) + 1
    if task == "classify" and num_classes > MAX_CLASSES:
        raise NetError(f"{spec}: labels go up to {num_classes - 1:,}, which would mean {num_classes:,} classes; "
                       f"netdsl trains classifiers of at most {MAX_CLASSES:,}",
                       notes=["labels are class indices 0..C-1"])
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
        test_idx = np.sort(np.random.default_rng(TEST_SEED).permutation(len(ty))[:limit_test])
        notes.append(f"test limited to {limit_test} of {len(ty)} images")

    train_x = to_float(x[train_idx])
    if normalization is not None:
        check_channels(spec, normalization, tuple(train_x.shape[1:]))
        mean, std = (torch.tensor(v, dtype=torch.float64) for v in normalization)
        notes.append("normalised with the given mean and std")
    else:
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
        train_x=norm(train_x), train_y=to_targets(y[train_idx], task),
        val_x=norm(to_float(x[val_idx])), val_y=to_targets(y[val_idx], task),
        test_x=norm(to_float(tx[test_idx])), test_y=to_targets(ty[test_idx], task), task=task,
        num_classes=num_classes, input_shape=tuple(int(d) for d in x.shape[1:]),
        class_names=names, mean=tuple(mean.tolist()), std=tuple(std.tolist()), notes=tuple(notes))


def _compact(spec: str, arrays: SplitArrays, split_seed: int, limit_train: int | None,
             limit_test: int | None, normalization: tuple | None = None) -> Dataset:
    """A classification dataset whose images stay compact (uint8 or files) with its own validation split."""
    notes = list(arrays.notes)
    names = tuple(arrays.class_names)
    splits = [(arrays.x, arrays.y), (arrays.val_x, arrays.val_y), (arrays.test_x, arrays.test_y)]
    picked = []
    for (x, y), limit, what, seed in zip(splits, (limit_train, None, limit_test), ("train", "val", "test"),
                                         (split_seed, 0, TEST_SEED)):
        idx = np.arange(len(y))
        if limit is not None and limit < len(y):
            idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:limit])
            notes.append(f"{what} limited to {limit} of {len(y)} images")
        store = x if isinstance(x, FileSource) else torch.from_numpy(x)
        picked.append((store, idx, torch.as_tensor(y[idx], dtype=torch.int64)))
    if len(picked[0][1]) == 0:
        raise NetError(f"{spec}: the training split is empty")
    if normalization is not None:
        check_channels(spec, normalization, tuple(picked[0][0].shape[-3:]))
        mean, std = normalization
        notes.append("normalised with the given mean and std")
    else:
        mean, std = _channel_stats(*picked[0][:2], notes)
    views = [NormalizedImages(store, mean, std).subset(idx) for store, idx, _ in picked]
    return Dataset(name=spec, train_x=views[0], train_y=picked[0][2], val_x=views[1], val_y=picked[1][2],
                   test_x=views[2], test_y=picked[2][2], num_classes=len(names),
                   input_shape=tuple(int(d) for d in views[0].shape[1:]), class_names=names, mean=mean, std=std,
                   notes=tuple(notes))


def _channel_stats(store, idx: np.ndarray, notes: list[str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of pixels / 255 over the training images (a sample, from files)."""
    if isinstance(store, FileSource) and len(idx) > STATS_SAMPLE:
        idx = np.sort(np.random.default_rng(0).permutation(idx)[:STATS_SAMPLE])
        notes.append(f"mean and std from a sample of {STATS_SAMPLE} training images")
    view = NormalizedImages(store, [0.0] * store.shape[-3], [1.0] * store.shape[-3]).subset(idx)
    total = total_sq = 0.0
    count = 0
    for batch in view.batches([idx_chunk for idx_chunk in np.array_split(np.arange(len(idx)), max(1, len(idx) // 512))]):
        b = batch.double()
        total = total + b.sum(dim=(0, 2, 3))
        total_sq = total_sq + (b * b).sum(dim=(0, 2, 3))
        count += b.shape[0] * b.shape[2] * b.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    if bool((std == 0).any()):
        notes.append("some channels are constant in the training split; their std is taken as 1")
        std = torch.where(std == 0, torch.ones_like(std), std)
    return tuple(mean.tolist()), tuple(std.tolist())


def check_channels(spec: str, normalization: tuple, image_shape: tuple) -> None:
    """A given normalisation must have one mean and std per image channel."""
    if len(normalization[0]) != image_shape[0]:
        raise NetError(f"{spec}: the normalisation has {len(normalization[0])} channel(s), the images "
                       f"{list(image_shape)} have {image_shape[0]}")


def to_float(a: np.ndarray) -> torch.Tensor:
    """Images as float32 with canonical NCHW strides; 8-bit pixels are scaled to [0, 1] first.

    Copying into a fresh tensor matters: numpy gives an inserted channel axis stride 0, which torch
    would read as channels-last and silently switch convolution layouts depending on how callers index.
    """
    t = torch.empty(a.shape, dtype=torch.float32).copy_(torch.from_numpy(np.ascontiguousarray(a)))
    return t.div_(255.0) if a.dtype == np.uint8 else t
