"""Picture files decoded with Pillow into uint8 [C, H, W] arrays, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from compiler.diagnostics import NetError
from compiler.memory import check_allocation


def load_image(file: Path, ref: list) -> np.ndarray:
    """One grey or RGB picture as uint8 [C, H, W], checked against the first one loaded (kept in ref)."""
    img = open_image(file)
    if img.mode in ("LA", "RGBA"):
        if np.asarray(img.getchannel("A")).min() < 255:
            raise NetError(f"{file}: the image has transparent pixels (mode {img.mode})",
                           notes=["images must be grey (L) or RGB; flatten the alpha channel first"])
        img = img.convert(img.mode[:-1])
    elif img.mode in ("1", "P"):
        img = img.convert("L" if img.mode == "1" else "RGB")
    elif img.mode not in ("L", "RGB"):
        raise NetError(f"{file}: unsupported image mode {img.mode}", notes=["images must be 8-bit grey (L) or RGB"])
    a = np.asarray(img, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if not ref:
        ref.append((file, a.shape))
    first, shape = ref[0]
    if a.shape != shape:
        raise NetError(f"{file}: image is {describe_image(a.shape)} but {first} is {describe_image(shape)}",
                       notes=["all images must have the same size and mode (grey or RGB)"])
    return np.ascontiguousarray(a)


def load_images(files: list[Path], ref: list, what: str) -> np.ndarray:
    """Many pictures as one uint8 [N, C, H, W] array; refused after the first one when all of them (and the
    stacked copy) could not fit in memory."""
    if not files:
        return np.zeros((0, 1, 1, 1), np.uint8)
    first = load_image(files[0], ref)
    check_allocation(2 * len(files) * first.nbytes, f"{what}: {len(files)} images of {describe_image(first.shape)}")
    return np.stack([first, *(load_image(f, ref) for f in files[1:])])


def open_image(file: Path) -> Image.Image:
    """A fully read PIL image, or a NetError naming the file."""
    try:
        img = Image.open(file)
        img.load()
    except FileNotFoundError:
        raise NetError(f"image file not found: {file}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise NetError(f"{file}: not a readable image ({exc})") from None
    return img


def describe_image(shape: tuple[int, ...]) -> str:
    """'WxH grey' or 'WxH RGB' for a [C, H, W] shape."""
    return f"{shape[2]}x{shape[1]} {'grey' if shape[0] == 1 else 'RGB'}"
