"""folder:DIR image folders: decoding to the network's input, splits, compact storage, errors, and a training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gensynth.data.folder as folder
from gensynth.data import clear_dataset_cache, load_dataset
from gensynth.data.folder import decode, scan_folder, stratified
from gensynth.data.normalized import FileSource, NormalizedImages
from netdsl.cli.main import main

CLASSES = ("circle", "square", "stripes")
NET = """
network Tiny {
    input image: [%d, 12, 12]
    image -> conv(6, k=3, padding=1) -> bn -> relu -> maxpool(2)
    output logits = gap -> linear(3)
}
"""


def picture(kind: str, h: int, w: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    if kind == "circle":
        a = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2) * 200
    elif kind == "square":
        a = ((abs(yy - h / 2) < h / 4) & (abs(xx - w / 2) < w / 4)) * 200
    else:
        a = ((xx // 2) % 2) * 200
    return (a + rng.integers(0, 40, (h, w))).clip(0, 255).astype(np.uint8)


def write_folder(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """PNG and JPEG, grey and colour, sizes from 10 to 30 pixels a side."""
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(10, 31, 2))
            a = picture(cls, h, w, rng)
            if i % 2:
                Image.fromarray(np.stack([a, a // 2, 255 - a], -1)).save(root / cls / f"{i}.jpg", quality=95)
            else:
                Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def test_decode_covers_the_input_then_crops_the_centre(tmp_path):
    a = np.zeros((20, 40), dtype=np.uint8)
    a[:, 10:30] = 255  # the centre half of a wide picture is white
    Image.fromarray(a).save(tmp_path / "wide.png")
    out = decode(tmp_path / "wide.png", (1, 10, 10))  # shorter side 20 -> 10, then the middle 10 of 20 columns
    assert out.shape == (1, 10, 10) and out.dtype == np.uint8
    assert out[0, :, 1:-1].min() >= 250 and out[0, :, 0].max() < 255
    rgb = decode(tmp_path / "wide.png", (3, 6, 8))  # grey to RGB, non-square target
    assert rgb.shape == (3, 6, 8) and (rgb[0] == rgb[2]).all()


def test_stratified_split_takes_a_share_of_every_class():
    labels = np.repeat([0, 1, 2], [20, 10, 3])
    rest, carved = stratified(labels, 0.1, 7)
    assert sorted(np.bincount(labels[carved]).tolist()) == [1, 1, 2]
    assert len(np.intersect1d(rest, carved)) == 0 and len(rest) + len(carved) == len(labels)
    assert (stratified(labels, 0.1, 7)[1] == carved).all()  # seeded


def test_train_val_test_folders_are_used_when_present(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        write_folder(tmp_path / split, n, seed=len(split))
    classes, train, val, test, notes = scan_folder(tmp_path)
    assert classes == list(CLASSES)
    assert (len(train.files), len(val.files), len(test.files)) == (18, 6, 9)
    assert all("val" in str(f) for f in val.files)


def test_a_folder_trains_and_evaluates_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    data = write_folder(tmp_path / "pictures", 10)
    (data / "notes.txt").write_text("not a picture")
    for channels in (1, 3):
        net = tmp_path / f"tiny{channels}.net"
        net.write_text(NET % channels)
        out = tmp_path / f"run{channels}"
        assert main(["train", str(net), "--data", f"folder:{data}", "--epochs", "2", "--batch-size", "8",
                     "--augment", "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["class_names"] == list(CLASSES) and metrics["completed_epochs"] == 2
        assert main(["eval", str(net), "--weights", str(out / "weights.safetensors"), "--data", f"folder:{data}",
                     "--json"]) == 0
    ds = load_dataset(f"folder:{data}", input_shape=(3, 12, 12))
    assert isinstance(ds.train_x, NormalizedImages) and ds.train_x.store.dtype == torch.uint8  # compact
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (24, 3, 3)
    assert sorted(ds.test_y.tolist()) == [0, 1, 2]  # one test image of each class
    batch = ds.train_x[:24]
    assert batch.dtype == torch.float32 and batch.shape == (24, 3, 12, 12)
    assert batch.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # normalised by the training split's statistics
    assert any("ignored 1 file" in n for n in ds.notes)


def test_images_that_do_not_fit_are_decoded_again_each_epoch_in_workers(tmp_path, monkeypatch):
    data = write_folder(tmp_path / "pictures", 6)
    cached = load_dataset(f"folder:{data}", input_shape=(1, 8, 8))
    clear_dataset_cache()
    monkeypatch.setattr(folder, "free_memory", lambda: 1000)  # nothing fits
    lazy = load_dataset(f"folder:{data}", input_shape=(1, 8, 8))
    assert isinstance(lazy.train_x.store, FileSource)
    assert lazy.train_x.numel() == cached.train_x.numel()
    idx = torch.tensor([3, 0, 7])
    torch.testing.assert_close(lazy.train_x[idx], cached.train_x[idx])
    lazy.train_x.store.workers = 2
    streamed = list(lazy.train_x.batches([[0, 1], [5, 2, 4]]))
    torch.testing.assert_close(streamed[1], cached.train_x[torch.tensor([5, 2, 4])])


@pytest.mark.parametrize("problem, message", [
    ("corrupt", "not a readable image"),
    ("empty", "empty class folder"),
    ("one class", "only one class"),
    ("missing", "is not a directory"),
    ("stray val class", "not in the training split"),
])
def test_bad_folders_name_the_file_or_folder(tmp_path, capsys, monkeypatch, problem, message):
    monkeypatch.setenv("COLUMNS", "200")
    data = tmp_path / "pictures"
    if problem == "corrupt":
        write_folder(data, 4)
        (data / "square" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    elif problem == "empty":
        write_folder(data, 4)
        (data / "empty").mkdir()
    elif problem == "one class":
        write_folder(data, 4)
        for cls in CLASSES[1:]:
            for f in (data / cls).iterdir():
                f.unlink()
            (data / cls).rmdir()
    elif problem == "stray val class":
        write_folder(data / "train", 4)
        write_folder(data / "val", 2)
        (data / "val" / "triangle").mkdir()
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(data / "val" / "triangle" / "0.png")
    net = tmp_path / "tiny.net"
    net.write_text(NET % 1)
    code = main(["train", str(net), "--data", f"folder:{data}", "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and message in err
    if problem == "corrupt":
        assert "broken.jpg" in err
    if problem == "empty":
        assert "empty" in err and str(data / "empty") in err
