"""What an exported network's outputs mean, per task: one paragraph for the file's metadata, and a small decode
function (plain torch) for the standalone PyTorch source."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from compiler.diagnostics import NetError
from gensynth.tasks.centernet import decode_detections
from gensynth.tasks.objectives import DETECTION_OUTPUTS


def _only(outputs: Mapping[str, tuple], task: str) -> tuple[str, tuple]:
    if len(outputs) != 1:
        raise NetError(f"a {task} network has one output; this one has {len(outputs)} ({', '.join(outputs)})")
    return next(iter(outputs.items()))


def _stride(outputs: Mapping[str, tuple], input_shape: tuple) -> int:
    return input_shape[-2] // outputs["heatmap"][-2]


def outputs_text(task: str, outputs: Mapping[str, tuple], input_shape: tuple) -> str:
    """The outputs of a network trained for `task`, with their layout and how to decode them (one paragraph)."""
    if task == "classify":
        name, shape = _only(outputs, task)
        return (f"`{name}` [N, {shape[0]}]: one logit per class, in the order of netdsl.class_names; softmax "
                "over dim 1 gives probabilities, argmax the class.")
    if task == "segment":
        name, shape = _only(outputs, task)
        dims = ", ".join(map(str, shape))
        return (f"`{name}` [N, {dims}]: per-pixel class logits (class index in dim 1, in the order of "
                "netdsl.class_names; class 0 is the background); argmax over dim 1 gives each pixel's class.")
    if task == "detect":
        heat, boxes = (outputs[k] for k in DETECTION_OUTPUTS)
        s = _stride(outputs, input_shape)
        return (f"CenterNet heads at stride {s} (input pixels per cell): `heatmap` [N, {', '.join(map(str, heat))}] "
                "per-class centre logits (sigmoid gives the centre probability) and `boxes` "
                f"[N, {', '.join(map(str, boxes))}] = (w, h, dx, dy) in cells. A detection is a heatmap cell (x, y) "
                f"equal to the max of its 3x3 neighbourhood; its box has centre ((x + dx) * {s}, (y + dy) * {s}) "
                f"and size (w * {s}, h * {s}) in input pixels, its class is the heatmap channel and its score the "
                "sigmoid of the logit.")
    return ""


def decoder_source(task: str, outputs: Mapping[str, tuple], input_shape: tuple,
                   class_names: tuple[str, ...]) -> str:
    """A `decode(outputs)` function, in plain torch, for the standalone source of a network trained for `task`."""
    names = f"CLASSES = {list(class_names)!r}\n\n\n" if class_names else ""
    if task == "classify":
        name, _ = _only(outputs, task)
        return names + (
            "def decode(logits):\n"
            f'    """`{name}` -> (class index, class name, probability) per image."""\n'
            "    score, index = torch.softmax(logits.float(), dim=1).max(dim=1)\n"
            "    return [(int(i), CLASSES[int(i)] if CLASSES else str(int(i)), float(p)) for i, p in zip(index, score)]\n")
    if task == "segment":
        name, _ = _only(outputs, task)
        return names + (
            "def decode(logits):\n"
            f'    """`{name}` -> the class index of every pixel, [N, H, W] (names in CLASSES)."""\n'
            "    return logits.argmax(dim=1)\n")
    if task == "detect":
        s = _stride(outputs, input_shape)
        return names + inspect.getsource(decode_detections) + (
            "\n\ndef decode(outputs, min_score=0.3):\n"
            '    """The model\'s output dict -> per image, rows (x0, y0, x1, y1, score, class) in input pixels."""\n'
            f'    rows = decode_detections(outputs["heatmap"], outputs["boxes"], stride={s})\n'
            "    return [r[r[:, 4] >= min_score] for r in rows]\n")
    return ""
