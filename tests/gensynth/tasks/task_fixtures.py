"""Tiny segmentation and detection datasets in the formats users bring (PNG mask pairs, COCO JSON), and
prototype networks for them: learnable in a few steps, so end-to-end tests stay fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SEG_NET = """
network TinySeg(classes=3) {
    input image: [1, 16, 16]
    image -> conv(12, k=3, padding=1, bias=false) -> bn -> relu
    x = conv(12, k=3, padding=1, bias=false) -> bn -> relu
    output logits = x -> fixed conv(classes, k=1) as head
}
"""

DET_NET = """
network TinyDet(classes=2) {
    input image: [1, 32, 32]
    image -> conv(12, k=3, stride=2, padding=1, bias=false) -> bn -> relu
    f = conv(24, k=3, stride=2, padding=1, bias=false) -> bn -> relu
    output heatmap = f -> conv(16, k=3, padding=1) -> relu -> fixed conv(classes, k=1)
    output boxes = f -> conv(16, k=3, padding=1) -> relu -> fixed conv(4, k=1)
}
"""


def write_mask_folder(root: Path, n: int = 96, seed: int = 0) -> str:
    """16x16 grey images with one bright square (class 1) or plus sign (class 2); masks mark its pixels."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(n):
        image = rng.integers(0, 40, size=(16, 16)).astype(np.uint8)
        mask = np.zeros((16, 16), np.uint8)
        cls = 1 + k % 2
        r, c = rng.integers(1, 9, size=2)
        if cls == 1:
            mask[r:r + 6, c:c + 6] = 1
        else:
            mask[r + 2:r + 4, c:c + 6] = 2
            mask[r:r + 6, c + 2:c + 4] = 2
        image[mask > 0] = 200
        Image.fromarray(image).save(root / "images" / f"{k:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{k:03d}.png")
    (root / "classes.txt").write_text("background\nsquare\nplus\n")
    return f"masks:{root}"


def write_coco(root: Path, n: int = 96, seed: int = 0) -> str:
    """32x32 grey images with one or two bright squares (class a) or hollow squares (class b), COCO boxes."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for k in range(n):
        image = rng.integers(0, 40, size=(32, 32)).astype(np.uint8)
        taken = []
        for _ in range(1 + k % 2):
            for _try in range(20):
                size = int(rng.integers(8, 13))
                x, y = (int(v) for v in rng.integers(0, 32 - size, size=2))
                if all(x + size <= a or a + s <= x or y + size <= b or b + s <= y for a, b, s in taken):
                    break
            else:
                continue
            taken.append((x, y, size))
            cat = 1 + int(rng.integers(0, 2))
            image[y:y + size, x:x + size] = 220
            if cat == 2:
                image[y + 2:y + size - 2, x + 2:x + size - 2] = 10
            annotations.append({"id": len(annotations) + 1, "image_id": k, "category_id": cat,
                                "bbox": [x, y, size, size], "area": size * size, "iscrowd": 0})
        Image.fromarray(image).save(root / "images" / f"{k:03d}.png")
        images.append({"id": k, "file_name": f"{k:03d}.png", "width": 32, "height": 32})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "solid"}, {"id": 2, "name": "hollow"}]}
    (root / "instances.json").write_text(json.dumps(doc))
    return f"coco:{root / 'instances.json'}"
