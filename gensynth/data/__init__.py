"""Datasets: one reader per format (idx, cifar, npz, masks, coco, scenes) behind one spec registry (dataset.py).

Readers return SplitArrays and import nothing above this package; dataset.py carves the validation split,
normalises and caches.
"""

from gensynth.data.dataset import KNOWN_SPECS, Dataset, clear_dataset_cache, load_dataset
from gensynth.data.idx import FASHION_CLASSES, FASHION_FILES, FASHION_MNIST_DIR, read_idx

__all__ = ["FASHION_CLASSES", "FASHION_FILES", "FASHION_MNIST_DIR", "KNOWN_SPECS", "Dataset", "clear_dataset_cache",
           "load_dataset", "read_idx"]
