"""masks:DIR and coco:FILE.json readers: round trips, pairing, splits, class names, and every error names its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compiler.diagnostics import NetError
from gensynth.data.coco import read_coco
from gensynth.data.masks import read_mask_folder


def unpack(arrays):
    """A reader's SplitArrays as the (x, y, tx, ty, names, notes) these tests read."""
    return arrays.x, arrays.y, arrays.test_x, arrays.test_y, arrays.class_names, list(arrays.notes)

H, W = 6, 8  # not square, so a transposed read shows


def save(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    """Write a PNG: [H, W] grey (or palette indices), [H, W, 3] RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), array.astype(np.uint8).tobytes())
        img.putpalette([(255 - i) % 256 for i in range(768)])  # colours unlike the indices
    else:
        img = Image.fromarray(array.astype(np.uint8))
    img.save(path)
    return path


def tagged(i: int, rgb: bool = False) -> np.ndarray:
    """An image whose first pixel is its number i, so it can be traced through splits."""
    rng = np.random.default_rng(i)
    a = rng.integers(0, 256, size=(H, W, 3) if rgb else (H, W), dtype=np.uint8)
    a[0, 0] = i
    return a


def mask_dir(root: Path, n: int = 20, rgb: bool = False, palette: bool = False, classes: int = 3) -> dict:
    """images/NNN.png + masks/NNN.png; returns number -> (image, mask) as written."""
    written = {}
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        m = rng.integers(0, classes, size=(H, W)).astype(np.uint8)
        m[rng.random((H, W)) < 0.1] = 255
        save(root / "images" / f"{i:03d}.png", img := tagged(i, rgb))
        save(root / "masks" / f"{i:03d}.png", m, palette)
        written[i] = (img, m)
    return written


def check_pairs(x: np.ndarray, y: np.ndarray, written: dict) -> list[int]:
    """Every returned image/mask pair is one written pair; returns their numbers."""
    tags = x[:, 0, 0, 0].tolist()
    for img, m, tag in zip(x, y, tags):
        want_img, want_mask = written[tag]
        np.testing.assert_array_equal(img, want_img[None] if want_img.ndim == 2 else want_img.transpose(2, 0, 1))
        np.testing.assert_array_equal(m, want_mask)
    return tags


def error(call, *args) -> str:
    """The rendered NetError a reader raises."""
    with pytest.raises(NetError) as err:
        call(*args)
    return str(err.value)


def test_mask_folder_round_trip_and_fixed_carved_split(tmp_path):
    written = mask_dir(tmp_path)
    x, y, tx, ty, names, notes = unpack(read_mask_folder(tmp_path))
    assert x.shape == (18, 1, H, W) and y.shape == (18, H, W) and tx.shape == (2, 1, H, W) and ty.shape == (2, H, W)
    assert x.dtype == y.dtype == tx.dtype == ty.dtype == np.uint8
    train, test = check_pairs(x, y, written), check_pairs(tx, ty, written)
    assert sorted(train + test) == list(range(20))
    assert names == ("0", "1", "2") and any("10%" in n for n in notes)
    assert unpack(read_mask_folder(tmp_path))[2].tobytes() == tx.tobytes()  # the carved split is fixed


def test_rgb_images_keep_channel_order(tmp_path):
    written = mask_dir(tmp_path, n=10, rgb=True)
    x, y, tx, ty, _, _ = unpack(read_mask_folder(tmp_path))
    assert x.shape[1] == 3
    check_pairs(x, y, written)


def test_opaque_rgba_images_and_bilevel_masks_are_read(tmp_path):
    written = mask_dir(tmp_path, n=4, rgb=True, classes=2)
    img, m = written[1]
    Image.fromarray(np.dstack([img, np.full((H, W), 255, np.uint8)])).save(tmp_path / "images" / "001.png")
    Image.fromarray(m == 1).save(tmp_path / "masks" / "001.png")  # mode "1": 255 (ignore) becomes 0
    written[1] = (img, (m == 1).astype(np.uint8))
    x, y, tx, ty, _, _ = unpack(read_mask_folder(tmp_path))
    check_pairs(np.concatenate([x, tx]), np.concatenate([y, ty]), written)
    Image.fromarray(np.dstack([img, np.zeros((H, W), np.uint8)])).save(tmp_path / "images" / "001.png")
    assert "001.png: the image has transparent pixels" in error(read_mask_folder, tmp_path)


def test_train_and_test_folders_are_used_as_given(tmp_path):
    written = mask_dir(tmp_path / "train", n=6) | {k + 50: v for k, v in mask_dir(tmp_path / "test", n=3).items()}
    for i in range(3):  # rename the test files' tags so they are told apart
        img, m = written[i + 50]
        img = img.copy()
        img[0, 0] = i + 50
        save(tmp_path / "test" / "images" / f"{i:03d}.png", img)
        written[i + 50] = (img, m)
    x, y, tx, ty, _, notes = unpack(read_mask_folder(tmp_path))
    assert sorted(check_pairs(x, y, written)) == list(range(6))
    assert sorted(check_pairs(tx, ty, written)) == [50, 51, 52]
    assert any("train and test splits" in n for n in notes)


def test_palette_masks_carry_indices_and_classes_txt_names_them(tmp_path):
    written = mask_dir(tmp_path, n=10, palette=True)
    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\nbike\n\n")
    x, y, tx, ty, names, _ = unpack(read_mask_folder(tmp_path))
    check_pairs(x, y, written)
    assert names == ("sky", "road", "car", "bike")


def test_mask_index_beyond_classes_txt_names_the_mask(tmp_path):
    mask_dir(tmp_path, n=10, classes=2)
    (tmp_path / "classes.txt").write_text("sky\nroad\n")
    assert unpack(read_mask_folder(tmp_path))[4] == ("sky", "road")
    bad = np.zeros((H, W), np.uint8)
    bad[2, 3] = 2
    save(tmp_path / "masks" / "004.png", bad)
    with pytest.raises(NetError, match=r"004\.png: mask holds class index 2.*only 2 classes"):
        unpack(read_mask_folder(tmp_path))


def test_only_0_and_255_masks_get_a_note(tmp_path):
    mask_dir(tmp_path, n=5, classes=1)
    assert any("only 0 and 255" in n for n in unpack(read_mask_folder(tmp_path))[5])


def test_mask_folder_errors_name_the_offending_file(tmp_path):
    assert "nope" in error(read_mask_folder, tmp_path / "nope")
    mask_dir(tmp_path / "a", n=10)
    for i in range(7):
        (tmp_path / "a" / "masks" / f"{i:03d}.png").unlink()
    save(tmp_path / "a" / "masks" / "stray.png", np.zeros((H, W)))
    msg = error(read_mask_folder, tmp_path / "a")
    assert "000.png (no mask)" in msg and "and 3 more" in msg and "stray.png" not in msg

    mask_dir(tmp_path / "b", n=4)
    save(tmp_path / "b" / "masks" / "002.png", np.zeros((H, W, 3)))
    msg = error(read_mask_folder, tmp_path / "b")
    assert "002.png" in msg and "class indices" in msg and "RGB" in msg

    mask_dir(tmp_path / "c", n=4)
    save(tmp_path / "c" / "masks" / "001.png", np.zeros((H + 1, W)))
    assert error(read_mask_folder, tmp_path / "c").startswith(f"error: {tmp_path / 'c' / 'masks' / '001.png'}: "
                                                              f"mask is {W}x{H + 1} but its image")

    mask_dir(tmp_path / "d", n=4)
    save(tmp_path / "d" / "images" / "003.png", np.zeros((H, W + 2)))
    assert f"003.png: image is {W + 2}x{H} grey but" in error(read_mask_folder, tmp_path / "d")
    save(tmp_path / "d" / "images" / "003.png", np.zeros((H, W, 3)))
    assert f"003.png: image is {W}x{H} RGB but" in error(read_mask_folder, tmp_path / "d")
    (tmp_path / "d" / "images" / "003.png").write_bytes(b"not a png")
    assert "003.png: not a readable image" in error(read_mask_folder, tmp_path / "d")

    mask_dir(tmp_path / "e" / "train", n=3)
    assert "has train/ but no test/" in error(read_mask_folder, tmp_path / "e")
    (tmp_path / "f" / "images").mkdir(parents=True)
    assert str(tmp_path / "f" / "masks") in error(read_mask_folder, tmp_path / "f")
    mask_dir(tmp_path / "g", n=3)
    (tmp_path / "g" / "classes.txt").write_text("sky\n\nroad\n")
    assert "classes.txt:2: empty class name" in error(read_mask_folder, tmp_path / "g")


COCO_CATS = [{"id": 7, "name": "car"}, {"id": 1, "name": "person"}, {"id": 3, "name": "dog"}]  # classes 2, 0, 1


def coco(root: Path, anns: list[tuple], n: int = 10, name: str = "instances_train.json", sub: str = "images",
         first: int = 0, cats: list | None = None) -> Path:
    """A COCO file over n tagged images numbered from `first`; anns are (image_id, category_id, bbox[, iscrowd])."""
    images = []
    for i in range(first, first + n):
        save(root / sub / f"img{i}.png", tagged(i, rgb=True))
        images.append({"id": i, "file_name": f"img{i}.png", "width": W, "height": H})
    annotations = [{"id": k, "image_id": a[0], "category_id": a[1], "bbox": a[2], "iscrowd": a[3] if len(a) > 3 else 0}
                   for k, a in enumerate(anns)]
    path = root / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats or COCO_CATS}))
    return path


def by_tag(x: np.ndarray, y: np.ndarray) -> dict[int, np.ndarray]:
    """Image number -> its box rows."""
    return dict(zip(x[:, 0, 0, 0].tolist(), y))


def test_coco_boxes_classes_padding_and_carved_split(tmp_path):
    anns = [(0, 7, [1, 2, 3, 1.5]), (0, 1, [0, 0, 8, 6]), (0, 3, [2.5, 1, 1, 1]),
            (4, 3, [4, 4, 2, 2]), (4, 1, [0, 0, 1, 1], 1), (9, 7, [7, 5, 1, 1])]
    path = coco(tmp_path, anns)
    x, y, tx, ty, names, notes = unpack(read_coco(path))
    assert names == ("person", "dog", "car")
    assert x.shape == (9, 3, H, W) and tx.shape == (1, 3, H, W) and x.dtype == np.uint8
    assert y.shape == (9, 3, 5) and ty.shape == (1, 3, 5) and y.dtype == np.float32
    np.testing.assert_array_equal(x[0], tagged(x[0, 0, 0, 0], rgb=True).transpose(2, 0, 1))
    boxes = by_tag(x, y) | by_tag(tx, ty)
    assert sorted(boxes) == list(range(10))
    np.testing.assert_array_equal(boxes[0], [[2, 1, 2, 4, 3.5], [0, 0, 0, 8, 6], [1, 2.5, 1, 3.5, 2]])
    np.testing.assert_array_equal(boxes[4], [[1, 4, 4, 6, 6], [-1] * 5, [-1] * 5])  # the crowd box is gone
    np.testing.assert_array_equal(boxes[9][0], [2, 7, 5, 8, 6])
    assert (boxes[1] == -1).all()  # images without annotations are kept
    assert any("1 crowd" in n for n in notes) and any("10%" in n for n in notes)


def test_coco_sibling_val_file_is_the_test_split(tmp_path):
    path = coco(tmp_path, [(0, 1, [0, 0, 2, 2])], n=4)
    coco(tmp_path, [(100, 1, [0, 0, 1, 1]), (100, 3, [1, 1, 1, 1])], n=2, first=100, name="instances_val.json",
         sub=".")  # images beside the JSON, not in images/
    x, y, tx, ty, _, notes = unpack(read_coco(path))
    assert sorted(x[:, 0, 0, 0].tolist()) == [0, 1, 2, 3] and sorted(tx[:, 0, 0, 0].tolist()) == [100, 101]
    assert y.shape == (4, 2, 5) and ty.shape == (2, 2, 5)  # K counts the test file's objects too
    assert any("instances_val.json" in n for n in notes)


def test_coco_boxes_past_the_edge_are_clipped(tmp_path):
    x, y, tx, ty, _, notes = unpack(read_coco(coco(tmp_path, [(0, 1, [-1, 2, 4, 9]), (1, 1, [9, 0, 2, 2])], n=3)))
    boxes = by_tag(x, y) | by_tag(tx, ty)
    np.testing.assert_array_equal(boxes[0][0], [0, 0, 2, 3, 6])
    assert (boxes[1] == -1).all()
    assert any("clipped 2" in n for n in notes) and any("zero area" in n for n in notes)


@pytest.mark.parametrize("change, expect", [
    (lambda d: d.pop("categories"), "missing key 'categories'"),
    (lambda d: d["annotations"].append({"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]}), "unknown image id 99"),
    (lambda d: d["annotations"].append({"image_id": 0, "category_id": 5, "bbox": [0, 0, 1, 1]}), "unknown category id 5"),
    (lambda d: d["annotations"].append({"image_id": 0, "category_id": 1, "bbox": [0, 0, -1, 1]}), "bbox must be"),
    (lambda d: d["annotations"].append({"image_id": 0, "category_id": 1}), "annotations[1] has no 'bbox'"),
    (lambda d: d["images"].append({"id": 50, "file_name": "gone.png"}), "'gone.png' not found"),
    (lambda d: d["images"][1].update(width=W + 1), f"says width {W + 1}"),
])
def test_coco_errors_name_the_file(tmp_path, change, expect):
    path = coco(tmp_path, [(0, 1, [0, 0, 2, 2])], n=3)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    msg = error(read_coco, path)
    assert str(path) in msg and expect in msg


def test_coco_unreadable_json_and_mismatched_files(tmp_path):
    path = tmp_path / "instances_train.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    assert f"{path}:2:12: invalid JSON" in error(read_coco, path)
    assert "not found" in error(read_coco, tmp_path / "missing.json")

    path = coco(tmp_path / "a", [], n=3)
    coco(tmp_path / "a", [], n=2, first=10, name="instances_test.json", cats=COCO_CATS[:2])
    assert f"{tmp_path / 'a' / 'instances_test.json'}: its categories differ" in error(read_coco, path)

    path = coco(tmp_path / "b", [], n=3)
    save(tmp_path / "b" / "images" / "img2.png", np.zeros((H, W)))
    assert f"img2.png: image is {W}x{H} grey but" in error(read_coco, path)


def test_coco_numbers_and_nesting_json_allows(tmp_path):
    path = coco(tmp_path, [(0, 1, [0, 0, 2, 2])], n=3)
    doc = json.loads(path.read_text())
    text = json.dumps(doc).replace('"bbox": [0, 0, 2, 2]', '"bbox": [0, 0, 2, ' + "9" * 400 + "]")
    path.write_text(text)
    assert "bbox must be" in error(read_coco, path)
    path.write_text(json.dumps(doc).replace('"bbox": [0, 0, 2, 2]', '"bbox": [0, 0, 2, ' + "9" * 5000 + "]"))
    assert f"cannot read COCO annotation file {path}" in error(read_coco, path)
    path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested too deeply" in error(read_coco, path)
    assert "not a regular file" in error(read_coco, Path("/dev/zero"))
