"""What a network is trained for: the loss, the metrics and the shape contract of each task.

Three tasks share one training loop, one evaluator and one synthesis engine; only this module knows how
they differ. Targets (Dataset.*_y) per task:
  classify  int64 [N]                       class index
  segment   uint8 [N, H, W]                 class index per pixel, 255 = ignore
  detect    float32 [N, K, 5]               (class, x0, y0, x1, y1) in input pixels, padding rows -1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from compiler.diagnostics import NetError
from gensynth.data.targets import IGNORE_LABEL, TASK_WORDS
from gensynth.tasks.metrics import primary_metric, task_metrics

DETECTION_OUTPUTS = ("heatmap", "boxes")

# CenterNet starts the heatmap at a centre probability of 0.1 (bias -2.19, small weights): with the default
# init the focal loss of the first batches is ~100x larger and SGD kills the heads' ReLUs before anything is learnt.
HEATMAP_PRIOR = 0.1


def select_output(out: object, output: str | None = None) -> torch.Tensor:
    """The one tensor of a forward result: a tensor, or one entry of a dict of named outputs."""
    if isinstance(out, Mapping):
        if output is not None:
            if output not in out:
                raise NetError(f"the model has no output named {output!r}; it has: {', '.join(map(str, out))}")
            out = out[output]
        elif len(out) == 1:
            out = next(iter(out.values()))
        else:
            raise NetError(f"the model returns {len(out)} outputs ({', '.join(map(str, out))}); "
                           "this task needs one", notes=["choose one with output=NAME"])
    elif output is not None:
        raise NetError(f"output {output!r} was requested but the model returns a single tensor")
    if not isinstance(out, torch.Tensor):
        raise NetError(f"the model returned {type(out).__name__}; expected a tensor or a dict of tensors")
    return out


def _detection_outputs(out: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The (heatmap, boxes) pair of a detector's forward result."""
    if not isinstance(out, Mapping) or any(k not in out for k in DETECTION_OUTPUTS):
        got = ", ".join(map(str, out)) if isinstance(out, Mapping) else "a single tensor"
        raise NetError(f"a detector must return outputs named heatmap and boxes; this model returns {got}")
    return out["heatmap"], out["boxes"]


def _output_conv(model: torch.nn.Module, sample: torch.Tensor,
                 pick: Callable[[object], torch.Tensor]) -> torch.nn.Conv2d | None:
    """The freshly initialised conv (bias exactly 0) whose output is `pick(model(sample))`, if one is."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    seen: dict[int, tuple] = {}  # id of an output -> (its conv, the output, held so that no id is reused)
    hooks = [m.register_forward_hook(lambda m, _i, out: seen.__setitem__(id(out), (m, out))) for m in convs]
    try:
        with torch.no_grad():
            conv = seen.get(id(pick(model(sample))), (None,))[0]
    finally:
        for h in hooks:
            h.remove()
    return conv if conv is not None and not conv.bias.detach().any() else None


@dataclass(frozen=True)
class Objective:
    """Loss, running train metric, output checks and the evaluation scorer of one task on one dataset."""

    task: str
    num_classes: int
    input_hw: tuple[int, int]
    output: str | None = None  # which named output a classifier/segmenter reads
    label_smoothing: float = 0.0

    @property
    def metrics(self) -> tuple[str, ...]:
        """The task's metrics (gensynth.tasks.metrics), the primary one first."""
        return task_metrics(self.task)

    @property
    def primary(self) -> str:
        return primary_metric(self.task)

    def stride(self, heatmap: torch.Tensor) -> int:
        """The detector's output stride: input pixels per heatmap cell."""
        return self.input_hw[0] // heatmap.shape[-2]

    def loss(self, out: object, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch."""
        if self.task == "classify":
            return functional.cross_entropy(select_output(out, self.output), y,
                                            label_smoothing=self.label_smoothing)
        if self.task == "segment":
            from gensynth.tasks.segmentation import segmentation_loss

            return segmentation_loss(select_output(out, self.output), y, IGNORE_LABEL)
        from gensynth.tasks.centernet import centernet_loss

        heatmap, boxes = _detection_outputs(out)
        return centernet_loss(heatmap.float(), boxes.float(), y, self.stride(heatmap))[0]

    def hits(self, out: object, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(correct, counted) of a batch for the running train accuracy; None where the task has none."""
        if self.task == "detect":
            return None
        pred = select_output(out, self.output).detach().argmax(1)
        if self.task == "classify":
            return (pred == y).sum(), torch.tensor(len(y), device=y.device)
        valid = y != IGNORE_LABEL
        return ((pred == y) & valid).sum(), valid.sum()

    def check(self, out: object) -> None:
        """The first batch's output must have the shape the task needs; say what came out instead."""
        if self.task == "detect":
            heatmap, boxes = _detection_outputs(out)
            if heatmap.ndim != 4 or heatmap.shape[1] != self.num_classes or boxes.shape[1] != 4:
                raise NetError(f"a detector for {self.num_classes} classes needs heatmap (batch, "
                               f"{self.num_classes}, h, w) and boxes (batch, 4, h, w); got {tuple(heatmap.shape)} "
                               f"and {tuple(boxes.shape)}")
            return
        logits = select_output(out, self.output)
        if self.task == "classify" and (logits.ndim != 2 or logits.shape[1] != self.num_classes):
            raise NetError(f"the model's output has shape {tuple(logits.shape)} but classifying "
                           f"{self.num_classes} classes needs (batch, {self.num_classes})")
        if self.task == "segment" and (logits.ndim != 4 or logits.shape[1] != self.num_classes):
            raise NetError(f"the model's output has shape {tuple(logits.shape)} but segmenting "
                           f"{self.num_classes} classes needs (batch, {self.num_classes}, H, W)")

    def prepare(self, model: torch.nn.Module, sample: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Give a fresh output conv (bias exactly 0) its task's prior; trained weights are left alone. Detection:
        CenterNet's heatmap prior. Segmentation: the log of each class's share of the pixels in `labels` (the
        training masks), so training does not start by unlearning a uniform guess: with a zero bias, narrow
        U-Nets on fashion-seg ended at 31-40% val mIoU in two seeds of three, with the prior at 71%.

        Runs one forward pass of `sample`: call it with the model in eval mode (training.device.training_mode)."""
        if self.task == "detect":
            conv = _output_conv(model, sample, lambda out: _detection_outputs(out)[0])
            if conv is not None:
                with torch.no_grad():  # RetinaNet/CenterNet head init: small weights, the prior in the bias
                    conv.weight.normal_(0.0, 0.01)
                    conv.bias.fill_(float(np.log(HEATMAP_PRIOR / (1 - HEATMAP_PRIOR))))
        elif self.task == "segment" and labels is not None:
            conv = _output_conv(model, sample, lambda out: select_output(out, self.output))
            if conv is not None and conv.out_channels == self.num_classes:
                known = labels[labels != IGNORE_LABEL].flatten().long()
                counts = torch.bincount(known, minlength=self.num_classes)[:self.num_classes].float()
                share = (counts + 1) / (counts.sum() + self.num_classes)  # a class absent from the masks: not -inf
                with torch.no_grad():
                    conv.bias.copy_(share.log().to(conv.bias.dtype))

    def scorer(self) -> Scorer:
        """A fresh accumulator of this task's evaluation metrics."""
        return Scorer(self)


class Scorer:
    """Accumulates a task's metrics batch by batch: a confusion matrix, or detections for mAP."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.confusion: torch.Tensor | None = None
        self.detections: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []

    def add(self, out: object, y: torch.Tensor) -> None:
        """Fold one batch (model output, targets) into the running state."""
        obj, k = self.objective, self.objective.num_classes
        if obj.task == "detect":
            from gensynth.tasks.centernet import decode

            heatmap, boxes = _detection_outputs(out)
            for det in decode(heatmap.float(), boxes.float(), obj.stride(heatmap)):
                self.detections.append(det.cpu().numpy().astype(np.float64))
            for gt in y.cpu().numpy():
                self.truth.append(gt[gt[:, 0] >= 0].astype(np.float64))
            return
        logits = select_output(out, obj.output)
        if obj.task == "segment":
            from gensynth.tasks.segmentation import confusion_matrix

            counts = confusion_matrix(logits, y, k, IGNORE_LABEL)
        else:
            pred, target = logits.argmax(1), y.long()
            if int(target.min()) < 0 or int(target.max()) >= k:
                raise NetError(f"labels must lie in 0..{k - 1}, found {int(target.min())}..{int(target.max())}")
            counts = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def result(self) -> tuple[dict[str, float], np.ndarray | None]:
        """(metrics by name, confusion matrix or None) over everything added."""
        obj, k = self.objective, self.objective.num_classes
        if obj.task == "detect":
            from gensynth.tasks.average_precision import mean_average_precision

            ap = mean_average_precision(self.detections, self.truth, k)
            return {"map50": float(ap["map50"]), "map": float(ap["map"])}, None
        if obj.task == "classify":
            conf = self.confusion.cpu().numpy()
            return {"acc": float(np.trace(conf)) / conf.sum()}, conf
        from gensynth.tasks.segmentation import mean_iou, pixel_accuracy

        return {"miou": mean_iou(self.confusion), "pixel_acc": pixel_accuracy(self.confusion)}, \
            self.confusion.cpu().numpy()


def objective_for(dataset, output: str | None = None, label_smoothing: float = 0.0) -> Objective:
    """The objective of a Dataset (its task, classes and image size)."""
    return Objective(task=getattr(dataset, "task", "classify"), num_classes=dataset.num_classes,
                     input_hw=tuple(dataset.input_shape[-2:]), output=output, label_smoothing=label_smoothing)


def check_network_fits(g, dataset) -> None:
    """Raise NetError unless the network (compiler IR) has one image input and outputs that fit the data's task."""
    if len(g.graph["inputs"]) != 1:
        raise NetError(f"training needs a network with one image input; {g.graph['name']} has "
                       f"{len(g.graph['inputs'])}")
    outputs = {name: tuple(g.nodes[node]["shape"]) for name, node in g.graph["outputs"].items()}
    check_fits(tuple(g.nodes[g.graph["inputs"][0]]["shape"]), outputs, dataset)


def check_fits(input_shape: tuple, outputs: Mapping[str, tuple], dataset) -> None:
    """Raise NetError unless a network with these per-sample input/output shapes fits the dataset's task."""
    task, k = getattr(dataset, "task", "classify"), dataset.num_classes
    problems = []
    shape = tuple(input_shape)
    if len(shape) != 3 or any(s is not None and s != d for s, d in zip(shape, dataset.input_shape)):
        shown = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        problems.append(f"the network takes input {shown} (C, H, W) but {dataset.name} "
                        f"images are {tuple(dataset.input_shape)}")
    shapes = {name: list(s) for name, s in outputs.items()}
    listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
    if task == "classify":
        if len(shapes) != 1 or len(next(iter(shapes.values()))) != 1:
            problems.append(f"classification needs one output [classes]; the network has {listed}")
        elif next(iter(shapes.values()))[0] != k:
            problems.append(f"the network has {next(iter(shapes.values()))[0]} output classes but "
                            f"{dataset.name} has {k}")
    elif task == "segment":
        mask_hw = list(dataset.train_y.shape[1:]) if len(dataset.train_y) else list(dataset.input_shape[1:])
        if len(shapes) != 1 or next(iter(shapes.values())) != [k, *mask_hw]:
            problems.append(f"segmentation of {dataset.name} needs one output [{k}, {mask_hw[0]}, {mask_hw[1]}] "
                            f"(class logits per pixel); the network has {listed}")
    else:
        heat, boxes = shapes.get("heatmap"), shapes.get("boxes")
        ok = (heat is not None and boxes is not None and len(heat) == 3 and len(boxes) == 3
              and heat[0] == k and boxes[0] == 4 and heat[1:] == boxes[1:]
              and dataset.input_shape[1] % heat[1] == 0 and dataset.input_shape[2] % heat[2] == 0
              and dataset.input_shape[1] // heat[1] == dataset.input_shape[2] // heat[2])
        if not ok:
            problems.append(f"detection on {dataset.name} needs outputs heatmap [{k}, h, w] and boxes [4, h, w] "
                            f"at one stride of the input; the network has {listed}")
    if problems:
        raise NetError(f"network does not fit dataset {dataset.name} ({TASK_WORDS[task]}): " + "; ".join(problems))
