"""Fashion scenes: pasted items agree with masks and boxes, tiles never overlap, determinism, IDX reading."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from compiler.diagnostics import NetError
from gensynth.data import FASHION_CLASSES, FASHION_FILES, FASHION_MNIST_DIR
from gensynth.data.scenes import compose_scenes, read_fashion_scenes


def unpack(arrays):
    """A reader's SplitArrays as the (x, y, tx, ty, names, notes) these tests read."""
    return arrays.x, arrays.y, arrays.test_x, arrays.test_y, arrays.class_names, list(arrays.notes)

REAL_FASHION = Path(FASHION_MNIST_DIR)
THRESHOLD = 32


def sources(n: int, size: int = 12, seed: int = 0, low: int = 0, high: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 items with a zero border of random width, so tight boxes differ from tiles."""
    rng = np.random.default_rng(seed)
    x = rng.integers(low, high, size=(n, size, size), dtype=np.uint8)
    x[rng.random(x.shape) < 0.3] = 0
    for i in range(n):
        top, left, bottom, right = rng.integers(0, size // 3, size=4)
        x[i, :top], x[i, :, :left] = 0, 0
        x[i, size - bottom:], x[i, :, size - right:] = 0, 0
        x[i, size // 2, size // 2] = 255  # every item has at least one foreground pixel
    return x, rng.integers(0, 10, size=n)


def tight(fg: np.ndarray) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (exclusive) of the True pixels."""
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def rebuild(scenes, images: np.ndarray, labels: np.ndarray, threshold: int = THRESHOLD) -> tuple:
    """Re-paste every item from its source and box alone; returns images, masks and tile coverage."""
    n, _, s, _ = scenes.images.shape
    _, h, w = images.shape
    canvas, mask, cover = (np.zeros((n, s, s), dtype=np.int64) for _ in range(3))
    for i in range(n):
        for j in np.flatnonzero(scenes.sources[i] >= 0):
            src = scenes.sources[i, j]
            fg = images[src] > threshold
            sx0, sy0, sx1, sy1 = tight(fg)
            label, x0, y0, x1, y1 = scenes.boxes[i, j]
            assert label == labels[src]
            assert (x1 - x0, y1 - y0) == (sx1 - sx0, sy1 - sy0), "box is not the tight box of the item"
            ox, oy = int(x0) - sx0, int(y0) - sy0
            assert 0 <= ox <= s - w and 0 <= oy <= s - h, "tile leaves the canvas"
            canvas[i, oy:oy + h, ox:ox + w] += images[src]
            mask[i, oy:oy + h, ox:ox + w] += fg * (labels[src] + 1)
            cover[i, oy:oy + h, ox:ox + w] += 1
    return canvas, mask, cover


def test_masks_boxes_and_images_agree_with_the_pasted_items():
    images, labels = sources(50)
    sc = compose_scenes(images, labels, 300, seed=3, canvas=40, max_items=4)
    assert sc.images.shape == (300, 1, 40, 40) and sc.images.dtype == np.uint8
    assert sc.masks.shape == (300, 40, 40) and sc.masks.dtype == np.uint8
    assert sc.boxes.shape == (300, 4, 5) and sc.boxes.dtype == np.float32
    assert sc.sources.shape == (300, 4) and sc.sources.dtype == np.int64
    canvas, mask, cover = rebuild(sc, images, labels)
    assert cover.max() == 1, "tiles overlap"
    np.testing.assert_array_equal(sc.images[:, 0], canvas)
    np.testing.assert_array_equal(sc.masks, mask)  # nothing outside the items' foreground is non-zero
    valid = sc.boxes[..., 0] >= 0
    assert (sc.boxes[valid][:, 1:] >= 0).all() and (sc.boxes[valid][:, 1:] <= 40).all()


def test_item_counts_in_range_and_padding_rows_are_minus_one():
    images, labels = sources(20, size=8)
    roomy = compose_scenes(images, labels, 400, seed=1, canvas=100, min_items=2, max_items=5)
    assert set(roomy.counts.tolist()) == {2, 3, 4, 5}  # a roomy canvas fits every drawn item
    crowded = compose_scenes(images, labels, 400, seed=1, canvas=20, min_items=3, max_items=5)
    assert crowded.counts.min() >= 1 and crowded.counts.max() <= 4  # at most 4 8x8 tiles fit in 20x20
    for sc in (roomy, crowded):
        valid = np.arange(sc.sources.shape[1]) < sc.counts[:, None]  # items are packed to the front
        np.testing.assert_array_equal(sc.sources >= 0, valid)
        assert (sc.boxes[~valid] == -1).all() and (sc.sources[~valid] == -1).all()
        assert (sc.boxes[valid][:, 3:] > sc.boxes[valid][:, 1:3]).all()


def test_same_seed_same_bytes_other_seed_differs():
    images, labels = sources(30)
    a, b = (compose_scenes(images, labels, 100, seed=7) for _ in range(2))
    c = compose_scenes(images, labels, 100, seed=8)
    for field in ("images", "masks", "boxes", "sources"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.images.tobytes() != c.images.tobytes()


def test_items_without_foreground_are_never_picked():
    images, labels = sources(10)
    images[::2] = THRESHOLD  # at the threshold: no pixel is foreground
    sc = compose_scenes(images, labels, 200, seed=0)
    assert (sc.sources[sc.sources >= 0] % 2 == 1).all()
    with pytest.raises(NetError, match="above the threshold"):
        compose_scenes(np.zeros((3, 5, 5), np.uint8), np.zeros(3, int), 4, seed=0)


def test_bad_arguments_are_net_errors():
    images, labels = sources(4, size=12)
    with pytest.raises(NetError, match="larger than the 10x10 canvas"):
        compose_scenes(images, labels, 4, seed=0, canvas=10)
    with pytest.raises(NetError, match="uint8"):
        compose_scenes(images.astype(np.float32), labels, 4, seed=0)
    with pytest.raises(NetError, match="min_items"):
        compose_scenes(images, labels, 4, seed=0, min_items=0)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """An IDX file as read_idx parses it: magic 0,0,type,ndim then big-endian dims and payload."""
    raw = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def fake_fashion(root: Path, gz: bool = True) -> Path:
    """A tiny Fashion-MNIST directory; train items are dim (33..150), t10k items bright (200..255)."""
    root.mkdir(parents=True, exist_ok=True)
    for (img, lab), (low, high, n, seed) in zip((FASHION_FILES[:2], FASHION_FILES[2:]),
                                                ((33, 151, 40, 0), (200, 256, 20, 1))):
        x, y = sources(n, size=28, seed=seed, low=low, high=high)
        x[:, 14, 14] = high - 1
        write_idx(root / (img if gz else img.removesuffix(".gz")), x, gz)
        write_idx(root / (lab if gz else lab.removesuffix(".gz")), y, gz)
    return root


def test_read_fashion_scenes_segment_and_detect(tmp_path):
    root = fake_fashion(tmp_path / "fm")
    x, y, tx, ty, names, notes = unpack(read_fashion_scenes("segment", root, train_count=30, test_count=12))
    assert x.shape == (30, 1, 64, 64) and y.shape == (30, 64, 64) and x.dtype == y.dtype == np.uint8
    assert tx.shape == (12, 1, 64, 64) and ty.shape == (12, 64, 64)
    assert names == ("background", *FASHION_CLASSES) and y.max() <= 10 and notes
    assert not ((x >= 200).any() or ((tx > 0) & (tx < 200)).any()), "test items leaked into train or back"
    np.testing.assert_array_equal(y > 0, x[:, 0] > THRESHOLD)

    dx, dy, dtx, dty, dnames, _ = unpack(read_fashion_scenes("detect", root, train_count=30, test_count=12))
    assert dnames == FASHION_CLASSES
    np.testing.assert_array_equal(dx, x)  # same canvases for both tasks
    k = max(int((dy[..., 0] >= 0).sum(1).max()), int((dty[..., 0] >= 0).sum(1).max()))
    assert dy.shape == (30, k, 5) and dty.shape == (12, k, 5) and dy.dtype == np.float32
    valid = dy[..., 0] >= 0
    assert set(np.unique(dy[valid][:, 0])) <= set(range(10))
    for i, j in zip(*np.nonzero(valid)):  # every box holds mask pixels of its class on all four edges
        c, x0, y0, x1, y1 = dy[i, j].astype(int)
        region = y[i, y0:y1, x0:x1] == c + 1
        assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()


def test_uncompressed_files_and_determinism(tmp_path):
    a = unpack(read_fashion_scenes("segment", fake_fashion(tmp_path / "gz"), 20, 5))
    b = unpack(read_fashion_scenes("segment", fake_fashion(tmp_path / "raw", gz=False), 20, 5))
    for u, v in zip(a[:4], b[:4]):
        assert u.tobytes() == v.tobytes()


def test_missing_directory_or_file_is_a_clear_error(tmp_path):
    with pytest.raises(NetError) as err:
        unpack(read_fashion_scenes("segment", tmp_path / "nope"))
    assert "nope" in err.value.message and "apt-get install dataset-fashion-mnist" in str(err.value)
    assert "fashion-seg:DIR" in str(err.value)
    root = fake_fashion(tmp_path / "fm")
    (root / FASHION_FILES[3]).unlink()
    with pytest.raises(NetError, match=FASHION_FILES[3]) as err:
        unpack(read_fashion_scenes("detect", root))
    assert "fashion-det:DIR" in str(err.value)
    with pytest.raises(NetError, match="unknown scene task"):
        unpack(read_fashion_scenes("classify", root))


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_scenes_are_fast_and_consistent():
    start = time.perf_counter()
    x, y, tx, ty, names, _ = unpack(read_fashion_scenes("segment", REAL_FASHION))
    assert time.perf_counter() - start < 5
    assert x.shape == (12000, 1, 64, 64) and ty.shape == (2000, 64, 64) and len(names) == 11
    np.testing.assert_array_equal(y > 0, x[:, 0] > THRESHOLD)
    assert set(np.unique(y).tolist()) == set(range(11))
