"""Arrays a user saved with numpy (npz:FILE): x, y and optionally x_test, y_test, class_names."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError
from compiler.memory import check_allocation
from gensynth.data.arrays import SplitArrays, check_pair, data_file
from gensynth.data.splits import TEST_FRACTION, test_split_indices


def _array_bytes(path: Path) -> int:
    """The bytes the archive's arrays take once loaded, from their .npy headers (nothing is decompressed)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
            if dtype.hasobject:
                raise NetError(f"{path}: array {name!r} holds Python objects, which netdsl does not unpickle",
                               notes=["store numbers (and class names as a string array)"])
            total += math.prod(shape) * dtype.itemsize
    return total


def read_npz(path: Path) -> SplitArrays:
    """Arrays x, y (and x_test, y_test, class_names if present) from an .npz file."""
    data_file(path, "npz dataset")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            npy = f.read(6) == b"\x93NUMPY"
        raise NetError(f"{path}: " + ("a .npy file (one array), not an .npz archive of arrays" if npy else
                                      "not an .npz file (a zip archive of arrays)"),
                       notes=["save one with numpy.savez(FILE, x=images, y=labels)"])
    try:
        check_allocation(_array_bytes(path), f"{path}: loading its arrays")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise NetError(f"{path}: not a readable .npz file ({exc})".splitlines()[0]) from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise NetError(f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(arrays) or 'none'}",
                       notes=["an npz dataset needs x (N,C,H,W or N,H,W) and y (N,); "
                              "x_test/y_test are optional"])
    x, y = check_pair(f"{path.name}: x/y", arrays["x"], arrays["y"])
    notes: list[str] = []
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise NetError(f"{path}: has only one of x_test / y_test; give both or neither")
    if "x_test" in arrays:
        tx, ty = check_pair(f"{path.name}: x_test/y_test", arrays["x_test"], arrays["y_test"])
        if tx.shape[1:] != x.shape[1:]:
            raise NetError(f"{path}: x_test images are {tx.shape[1:]} but x images are {x.shape[1:]}")
    else:
        rest, test = test_split_indices(len(y))
        n_test = len(test)
        x, y, tx, ty = x[rest], y[rest], x[test], y[test]
        notes.append(f"no x_test/y_test in {path.name}: carved a fixed test split of {n_test} images "
                     f"({TEST_FRACTION:.0%}) from x/y")
    names = None
    if "class_names" in arrays:
        names = tuple(str(n) for n in arrays["class_names"].tolist())
        top = int(max(y.max(initial=0), ty.max(initial=0)))
        if len(names) <= top:
            raise NetError(f"{path}: {len(names)} class_names but labels go up to {top}")
    return SplitArrays(x, y, tx, ty, names, tuple(notes))
