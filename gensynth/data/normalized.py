"""A split's images kept compact (uint8 in memory, or files decoded on demand) and handed out as normalised float32.

Indexing reads like a tensor's (x[i:j], x[idx], x.index_select(0, idx), len(x), x.shape), so training, evaluation
and probing use it unchanged; only whole epochs go through `batches`, which decodes files in DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch


class FileSource:
    """Images on disk: decode(i) gives image i as uint8 [C, H, W]; `workers` processes decode a batch stream."""

    def __init__(self, count: int, shape: tuple[int, int, int], decode: Callable[[int], np.ndarray], workers: int):
        self.count, self.shape, self.decode, self.workers = count, tuple(shape), decode, workers

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.decode(int(i)) for i in indices])) if len(indices) else \
            torch.empty((0, *self.shape), dtype=torch.uint8)

    def stream(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """uint8 batches in order, decoded ahead by worker processes."""
        if self.workers == 0:
            yield from (self.read(b) for b in batches)
            return
        loader = torch.utils.data.DataLoader(_Items(self), batch_sampler=[list(map(int, b)) for b in batches],
                                             num_workers=self.workers, collate_fn=_stack, prefetch_factor=4)
        yield from loader


class _Items(torch.utils.data.Dataset):
    def __init__(self, source: FileSource):
        self.source = source

    def __len__(self) -> int:
        return self.source.count

    def __getitem__(self, i: int) -> np.ndarray:
        return self.source.decode(i)


def _stack(items: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(items))


class NormalizedImages:
    """uint8 images (a tensor, or a FileSource) seen as float32 (x / 255 - mean) / std, per channel."""

    def __init__(self, store: torch.Tensor | FileSource, mean: Sequence[float], std: Sequence[float],
                 index: np.ndarray | None = None):
        self.store = store
        self.index = np.arange(store.count if isinstance(store, FileSource) else len(store)) if index is None else index
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    # ---- the tensor-like surface -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        inner = self.store.shape if isinstance(self.store, FileSource) else tuple(self.store.shape[1:])
        return torch.Size((len(self.index), *inner))

    ndim = 4
    dtype = torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if isinstance(self.store, FileSource) else self.store.device

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def element_size(self) -> int:
        return 1  # what it holds (uint8), not what it hands out

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        rows = self.index[key]
        out = self.normalise(self._raw(rows))
        return out[0] if np.ndim(rows) == 0 else out

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        assert dim == 0, "images are selected along the batch"
        return self[index]

    def to(self, device, non_blocking: bool = False) -> NormalizedImages:
        if isinstance(self.store, FileSource):
            return self
        return self._with(self.store.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> NormalizedImages:
        return self if isinstance(self.store, FileSource) else self._with(self.store.pin_memory())

    # ---- compact operations ------------------------------------------------------------------------------------------
    def subset(self, indices) -> NormalizedImages:
        """The images at `indices`, still compact."""
        out = NormalizedImages.__new__(NormalizedImages)
        out.store, out.mean, out.std = self.store, self.mean, self.std
        out.index = self.index[np.asarray(indices, dtype=np.int64)]
        return out

    def batches(self, batches: list) -> Iterator[torch.Tensor]:
        """Normalised batches for index lists or slices, in order (files are decoded ahead by DataLoader workers)."""
        rows = [self.index[b] if isinstance(b, slice) else self.index[_indices(b)] for b in batches]
        if isinstance(self.store, FileSource):
            for raw in self.store.stream(rows):
                yield self.normalise(raw)
        else:
            for r in rows:
                yield self.normalise(self._raw(r))

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(raw.device), self.std.to(raw.device)
        return raw.to(torch.float32).div_(255.0).sub_(mean).div_(std)

    def _raw(self, rows) -> torch.Tensor:
        rows = np.atleast_1d(rows)
        if isinstance(self.store, FileSource):
            return self.store.read(rows)
        return self.store[torch.as_tensor(rows, device=self.store.device)]

    def _with(self, store: torch.Tensor) -> NormalizedImages:
        out = self.subset(np.arange(len(self.index)))
        out.store = store
        return out


def _indices(b) -> np.ndarray:
    return (b.cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)).astype(np.int64)


def batches_of(x, batches: list) -> Iterator[torch.Tensor]:
    """x's rows for each slice or index list, in order: NormalizedImages stream them (files decoded ahead by
    DataLoader workers), tensors are sliced or gathered."""
    if isinstance(x, NormalizedImages):
        yield from x.batches(batches)
    else:
        for b in batches:
            yield x[b] if isinstance(b, slice) else x.index_select(0, torch.as_tensor(b, device=x.device))
