"""Dataset loading: IDX/CIFAR/npz readers, splits, normalisation, caching and error messages."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.diagnostics import NetError
from gensynth import data
from gensynth.data import FASHION_CLASSES, load_dataset, read_idx
from gensynth.data.cifar import CIFAR10_CLASSES

REAL_FASHION = Path(data.FASHION_MNIST_DIR)
IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray, magic: bytes | None = None) -> bytes:
    """Encode an array as an IDX file (big-endian), optionally with a forced magic number."""
    head = magic or bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim])
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return head + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write an IDX file, gzipped when gz."""
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def tagged_images(n: int, size: int = 8, offset: int = 0) -> np.ndarray:
    """uint8 images whose first two pixels encode the image's index, so splits can be traced."""
    rng = np.random.default_rng(n + offset)
    x = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    idx = np.arange(offset, offset + n)
    x[:, 0, 0], x[:, 0, 1] = idx % 256, idx // 256
    return x


def make_idx_dir(root: Path, n_train: int = 200, n_test: int = 60, gz: bool = True, prefix: str = "",
                 test_word: str = "t10k", classes: int = 4) -> Path:
    """A tiny MNIST-style IDX dataset directory."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = "-ubyte.gz" if gz else "-ubyte"
    rng = np.random.default_rng(1)
    write_idx(root / f"{prefix}train-images-idx3{suffix}", tagged_images(n_train), gz)
    write_idx(root / f"{prefix}train-labels-idx1{suffix}", rng.integers(0, classes, n_train).astype(np.uint8), gz)
    write_idx(root / f"{prefix}{test_word}-images-idx3{suffix}", tagged_images(n_test, offset=10_000), gz)
    write_idx(root / f"{prefix}{test_word}-labels-idx1{suffix}", rng.integers(0, classes, n_test).astype(np.uint8), gz)
    return root


def original_index(ds_x: torch.Tensor, ds: data.Dataset) -> np.ndarray:
    """Undo the normalisation and read back the index encoded in the first two pixels."""
    raw = (ds_x[:, 0, 0, :2] * ds.std[0] + ds.mean[0]) * 255.0
    raw = raw.round().long().numpy()
    return raw[:, 0] + 256 * raw[:, 1]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trips_every_type(tmp_path: Path, dtype: type, gz: bool) -> None:
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    got = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array, gz))
    assert got.shape == (2, 3, 5) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, array)


def test_read_idx_rejects_truncated_payload(tmp_path: Path) -> None:
    raw = idx_bytes(np.zeros((10, 4, 4), np.uint8))
    (tmp_path / "t").write_bytes(raw[:-5])
    with pytest.raises(NetError, match=r"truncated IDX file.*\(10, 4, 4\).*160 bytes.*155"):
        read_idx(tmp_path / "t")
    (tmp_path / "h").write_bytes(raw[:9])
    with pytest.raises(NetError, match="truncated IDX header"):
        read_idx(tmp_path / "h")


def test_read_idx_rejects_truncated_gzip_stream(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)))
    (tmp_path / "t.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(NetError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "t.gz")


def test_read_idx_rejects_wrong_magic_and_trailing_bytes(tmp_path: Path) -> None:
    arr = np.zeros((3, 2), np.uint8)
    (tmp_path / "m").write_bytes(idx_bytes(arr, magic=b"\x01\x02\x08\x02"))
    with pytest.raises(NetError, match="not an IDX file.*01020802"):
        read_idx(tmp_path / "m")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(NetError, match="bad magic"):
        read_idx(tmp_path / "png")
    (tmp_path / "x").write_bytes(idx_bytes(arr) + b"junk")
    with pytest.raises(NetError, match="4 unexpected bytes"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dir_loads_normalised_splits(tmp_path: Path, gz: bool) -> None:
    root = make_idx_dir(tmp_path / "set", gz=gz)
    ds = load_dataset(f"idx:{root}")
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 4
    assert ds.class_names == ("0", "1", "2", "3")
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (180, 20, 60)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    # Canonical NCHW strides, not numpy's stride-0 channel axis (which torch takes for channels-last).
    for t in (ds.train_x, ds.val_x, ds.test_x):
        assert t.stride() == (64, 64, 8, 1)
    # Normalised with the train split's own statistics (population std), per channel.
    assert abs(float(ds.train_x.mean())) < 1e-4
    assert abs(float(ds.train_x.std(unbiased=False)) - 1.0) < 1e-4
    assert 0.3 < ds.mean[0] < 0.7 and len(ds.std) == 1
    # Train and val are a partition of the original training images; the test set is intact.
    train_ids, val_ids = set(original_index(ds.train_x, ds)), set(original_index(ds.val_x, ds))
    assert not train_ids & val_ids and train_ids | val_ids == set(range(200))
    assert list(original_index(ds.test_x, ds)) == list(range(10_000, 10_060))


def test_split_is_deterministic_and_seeded(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "set")
    a = load_dataset(f"idx:{root}", split_seed=3)
    data.clear_dataset_cache()
    b = load_dataset(f"idx:{root}", split_seed=3)
    c = load_dataset(f"idx:{root}", split_seed=4)
    assert a is not b and torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    assert set(original_index(a.val_x, a)) != set(original_index(c.val_x, c))
    # The seed never changes which images are in the test set (only the train-based normalisation).
    assert list(original_index(a.test_x, a)) == list(original_index(c.test_x, c))


def test_loads_are_cached_per_spec_and_options(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "set")
    first = load_dataset(f"idx:{root}", limit_train=50)
    assert load_dataset(f"idx:{root}", limit_train=50) is first
    other = load_dataset(f"idx:{root}", limit_train=60)
    assert other is not first and len(other.train_y) + len(other.val_y) == 60


def test_limits_take_deterministic_subsets(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "set")
    ds = load_dataset(f"idx:{root}", limit_train=50, limit_test=20, val_fraction=0.2)
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (40, 10, 20)
    assert any("limited to 50 of 200" in n for n in ds.notes)
    ids = original_index(ds.test_x, ds)
    assert len(set(ids)) == 20 and set(ids) <= set(range(10_000, 10_060))


def test_no_validation_split_when_fraction_is_zero(tmp_path: Path) -> None:
    ds = load_dataset(f"idx:{make_idx_dir(tmp_path / 'set')}", val_fraction=0.0)
    assert len(ds.val_y) == 0 and ds.val_x.shape == (0, 1, 8, 8) and len(ds.train_y) == 200
    with pytest.raises(NetError, match=r"val_fraction must be in \[0, 1\)"):
        load_dataset(f"idx:{tmp_path / 'set'}", val_fraction=1.0)


def test_missing_idx_file_is_named(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "set")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NetError, match=r"missing dataset files in .*: t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset(f"idx:{root}")


def test_mismatched_image_and_label_counts(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "set")
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(199, np.uint8))
    with pytest.raises(NetError, match=r"train-images-idx3-ubyte.gz has 200 images but "
                                       r"train-labels-idx1-ubyte.gz has 199 labels"):
        load_dataset(f"idx:{root}")


def test_corrupt_file_inside_a_dataset_is_reported(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "set", gz=False)
    path = root / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(NetError, match="t10k-images-idx3-ubyte: truncated IDX file"):
        load_dataset(f"idx:{root}")


def test_emnist_style_directory_needs_a_prefix(tmp_path: Path) -> None:
    root = tmp_path / "emnist"
    make_idx_dir(root, prefix="emnist-balanced-", test_word="test", classes=5)
    make_idx_dir(root, prefix="emnist-digits-", test_word="test", classes=3)
    with pytest.raises(NetError, match="several IDX datasets") as err:
        load_dataset(f"idx:{root}")
    assert any("PREFIX" in n for n in err.value.notes)
    ds = load_dataset(f"idx:{root}/emnist-digits-")
    assert ds.num_classes == 3 and len(ds.test_y) == 60


def test_fashion_mnist_spec_with_directory_names_the_classes(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "fm", classes=10)
    ds = load_dataset(f"fashion-mnist:{root}")
    assert ds.class_names == FASHION_CLASSES and ds.num_classes == 10


def test_missing_fashion_mnist_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.dataset, "FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(NetError, match="Fashion-MNIST not found") as err:
        load_dataset("fashion-mnist")
    text = str(err.value)
    assert "sudo apt-get install dataset-fashion-mnist" in text and "apt-get update" in text
    assert "fashion-mnist:DIR" in text and "idx:DIR" in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(NetError, match="no IDX files found") as err:
        load_dataset(f"fashion-mnist:{tmp_path / 'empty'}")
    assert "train-images-idx3-ubyte.gz" in str(err.value)


@pytest.mark.parametrize("spec", ["mnist", "cifar100:/x", "", "npz"])
def test_unknown_spec_lists_known_ones(spec: str) -> None:
    with pytest.raises(NetError, match="unknown dataset spec") as err:
        load_dataset(spec)
    for known in ("fashion-mnist", "idx:DIR", "cifar10:DIR", "npz:FILE"):
        assert known in str(err.value)


def test_spec_without_path() -> None:
    with pytest.raises(NetError, match="missing its path after 'idx:'"):
        load_dataset("idx:")


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_with_test_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3, 6, 5)).astype(np.float32) * 4 + 2
    path = write_npz(tmp_path / "d.npz", x=x, y=rng.integers(0, 3, 100), x_test=x[:30], y_test=np.arange(30) % 3,
                     class_names=np.array(["a", "b", "c"]))
    ds = load_dataset(f"npz:{path}")
    assert ds.input_shape == (3, 6, 5) and ds.class_names == ("a", "b", "c") and ds.notes == ()
    assert len(ds.test_y) == 30 and len(ds.mean) == 3
    per_channel = ds.train_x.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-4)


def test_npz_without_test_carves_a_fixed_split_and_says_so(tmp_path: Path) -> None:
    x = tagged_images(300)
    path = write_npz(tmp_path / "d.npz", x=x, y=np.arange(300) % 5)
    a = load_dataset(f"npz:{path}", split_seed=1)
    b = load_dataset(f"npz:{path}", split_seed=2)
    assert a.input_shape == (1, 8, 8) and len(a.test_y) == 30 and len(a.train_y) + len(a.val_y) == 270
    assert any("carved a fixed test split of 30" in n for n in a.notes)
    assert list(original_index(a.test_x, a)) == list(original_index(b.test_x, b))
    assert not set(original_index(a.test_x, a)) & set(original_index(a.train_x, a))


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(NetError, match=r"missing array\(s\) y"):
        load_dataset(f"npz:{write_npz(tmp_path / 'a.npz', x=np.zeros((4, 2, 2)))}")
    with pytest.raises(NetError, match="looks channels-last"):
        load_dataset(f"npz:{write_npz(tmp_path / 'b.npz', x=np.zeros((4, 8, 8, 3)), y=np.zeros(4, int))}")
    with pytest.raises(NetError, match="4 images but 3 labels"):
        load_dataset(f"npz:{write_npz(tmp_path / 'c.npz', x=np.zeros((4, 8, 8)), y=np.zeros(3, int))}")
    with pytest.raises(NetError, match="NaN or infinite"):
        load_dataset(f"npz:{write_npz(tmp_path / 'e.npz', x=np.full((4, 8, 8), np.nan), y=np.zeros(4, int))}")
    with pytest.raises(NetError, match="npz dataset not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    with pytest.raises(NetError, match="not an .npz file"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    with pytest.raises(NetError, match=r"labels must lie in 0\.\.2"):
        load_dataset(f"npz:{write_npz(tmp_path / 'd.npz', x=np.zeros((20, 8, 8)), y=np.arange(20) % 4 - 1, class_names=np.array(['a', 'b', 'c']))}")


def make_cifar_dir(root: Path, per_batch: int = 20, protocol: int = 2) -> Path:
    """A fake cifar-10-batches-py directory in the real pickle format."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [b"f.png"] * per_batch}
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    names = [n.encode() for n in CIFAR10_CLASSES]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=protocol))
    return root


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_directory(tmp_path: Path, protocol: int) -> None:
    ds = load_dataset(f"cifar10:{make_cifar_dir(tmp_path / 'c', protocol=protocol)}")
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (90, 10, 20) and len(ds.mean) == 3


def test_cifar10_errors(tmp_path: Path) -> None:
    root = make_cifar_dir(tmp_path / "c")
    (root / "data_batch_4").unlink()
    with pytest.raises(NetError, match="missing CIFAR-10 files in .*data_batch_4"):
        load_dataset(f"cifar10:{root}")
    (root / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(NetError, match=r"data_batch_4: data must be uint8 of shape \(N, 3072\)"):
        load_dataset(f"cifar10:{root}")
    (root / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:-10])
    with pytest.raises(NetError, match="data_batch_4: corrupt CIFAR-10 batch"):
        load_dataset(f"cifar10:{root}")
    with pytest.raises(NetError, match="CIFAR-10 directory not found"):
        load_dataset(f"cifar10:{tmp_path / 'none'}")


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_cifar10_pickles_cannot_run_code(tmp_path: Path) -> None:
    root = make_cifar_dir(tmp_path / "c")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(NetError, match="refusing to load builtins.print"):
        load_dataset(f"cifar10:{root}")


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="needs the dataset-fashion-mnist package")
def test_real_fashion_mnist() -> None:
    labels = read_idx(REAL_FASHION / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and np.bincount(labels).tolist() == [6000] * 10
    ds = load_dataset("fashion-mnist", limit_train=1000, limit_test=500)
    assert ds.input_shape == (1, 28, 28) and ds.class_names == FASHION_CLASSES
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (900, 100, 500)
    # Fashion-MNIST's well-known pixel statistics: mean 0.286, std 0.353 (on [0, 1] pixels).
    assert abs(ds.mean[0] - 0.286) < 0.01 and abs(ds.std[0] - 0.353) < 0.01
    assert set(ds.test_y.tolist()) == set(range(10))


def test_npz_that_is_truncated_or_an_npy_or_holds_objects(tmp_path: Path) -> None:
    whole = write_npz(tmp_path / "whole.npz", x=np.zeros((20, 8, 8)), y=np.zeros(20, int)).read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(NetError, match="not an .npz file|not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'cut.npz'}")
    np.save(tmp_path / "one.npy", np.zeros((4, 8, 8)))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(NetError, match=r"a \.npy file \(one array\), not an \.npz archive"):
        load_dataset(f"npz:{tmp_path / 'one.npz'}")
    np.savez(tmp_path / "objects.npz", x=np.zeros((4, 8, 8)), y=np.array([1, "a", None, 2], dtype=object))
    with pytest.raises(NetError, match="holds Python objects"):
        load_dataset(f"npz:{tmp_path / 'objects.npz'}")


def test_npz_arrays_larger_than_memory_are_refused_from_their_headers(tmp_path: Path) -> None:
    """A header claiming 8 TB of images is refused before numpy tries to allocate it."""
    import zipfile

    header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 1000, 1000)}
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z, z.open("x.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
    with pytest.raises(NetError, match="huge.npz: loading its arrays needs at least 8 TB"):
        load_dataset(f"npz:{tmp_path / 'huge.npz'}")


def test_a_label_of_a_billion_is_not_a_billion_classes(tmp_path: Path) -> None:
    y = np.zeros(20, int)
    y[3] = 10**9
    with pytest.raises(NetError, match="labels go up to 1,000,000,000.*at most 100,000"):
        load_dataset(f"npz:{write_npz(tmp_path / 'big.npz', x=np.zeros((20, 8, 8)), y=y)}")


def test_idx_header_with_a_zero_dimension_or_a_huge_shape(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(bytes([0, 0, 8, 3]) + np.asarray([0, 28, 28], ">u4").tobytes())
    with pytest.raises(NetError, match=r"shape \(0, 28, 28\), which holds nothing"):
        read_idx(tmp_path / "empty")
    (tmp_path / "huge.gz").write_bytes(gzip.compress(bytes([0, 0, 0x0E, 3])
                                                     + np.asarray([2**32 - 1] * 3, ">u4").tobytes()))
    with pytest.raises(NetError, match="huge.gz: its IDX header says shape .* needs at least"):
        read_idx(tmp_path / "huge.gz")


@pytest.mark.parametrize("spec, message", [
    ("idx:~no_such_user_netdsl/data", "cannot resolve the path"),
    ("npz:/dev/zero", "not a regular file"),
    ("npz:/tmp", "is a directory"),
])
def test_paths_that_are_not_data_files(spec: str, message: str) -> None:
    with pytest.raises(NetError, match=message):
        load_dataset(spec)
