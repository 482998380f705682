"""Training of any nn.Module on an in-memory Dataset, for the dataset's task (see gensynth.tasks.objectives).

Deliberately lean: batches are index-permutation slices of tensors already on the device, metrics
stay on the device until an epoch ends (or a progress callback asks), and nothing is printed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import networkx as nx
import torch
from torch import nn

from compiler.backend.atomic import atomic_write
from compiler.backend.weights import save_weights
from compiler.cost import check_memory
from compiler.diagnostics import NetError
from gensynth.data import Dataset
from gensynth.data.normalized import batches_of
from gensynth.tasks.objectives import objective_for, select_output
from gensynth.training.augment import random_crop_flip
from gensynth.training.device import amp_dtype, autocast, device_memory, place_data, resolve_device, training_mode
from gensynth.training.distill import distillation_loss, teacher_logits
from gensynth.training.evaluate import EvalResult, evaluate
from gensynth.training.preprocessing import metadata_for

# Per-optimizer defaults, used when TrainConfig.lr / weight_decay are None. SGD: Nesterov momentum
# 0.9, the classic recipe for BN conv nets at batch 128. AdamW: a higher decay, as AdamW decouples it.
OPTIMIZER_DEFAULTS = {"sgd": {"lr": 0.05, "weight_decay": 5e-4},
                      "adamw": {"lr": 2e-3, "weight_decay": 0.05}}
# The optimizer a task trains with unless told. On fashion-seg, SGD at these rates left the U-Net predicting
# background only (mIoU 0.13 after 3 epochs; AdamW 0.26). Detection stays on SGD: AdamW was better on
# fashion-det (mAP@.5 0.56 against 0.44 after 3 epochs) but never learnt the tiny test detector at all.
TASK_OPTIMIZER = {"classify": "sgd", "segment": "adamw", "detect": "sgd"}
# Fine-tuning inherited weights: a gentler rate than from scratch (see gensynth.inquisitor.Budget).
FINE_TUNE_LR = {"sgd": 0.02, "adamw": 1e-3}
# Gradient-norm clipping a task gets unless told: detection's heads (conv, ReLU, conv, no batch norm) lost whole
# classes under SGD without it (a 4-epoch fine-tune fell from 66.6% to 51.8% val mAP@.5, two classes near 0);
# clipped at 5 the same run ends at 70.8% (at 1: 49%).
TASK_CLIP = {"detect": 5.0}
# The default batch size adapts to the training split: 128, halved (down to MIN_BATCH) until an epoch has at least
# MIN_STEPS_PER_EPOCH optimizer steps. A small dataset at batch 128 takes a few dozen steps an epoch and leaves the
# network far from trained: on 3,600 Fashion-MNIST images, fashion_cnn reached 82.0 % test after 10 epochs at batch
# 128 (28 steps an epoch) and 87.0 % at batch 32 (112 steps), the same SGD rate (docs/benchmarks.md). 18,000 images
# keep batch 128 (140 steps).
DEFAULT_BATCH, MIN_BATCH, MIN_STEPS_PER_EPOCH = 128, 16, 100
# on_batch(epoch, batch, num_batches, running_loss, running_accuracy, images_per_s); both 1-based.
BatchCallback = Callable[[int, int, int, float, float, float], None]


@dataclass
class TrainConfig:
    """Training hyperparameters; lr/weight_decay None means the optimizer's default.

    Defaults: sgd lr 0.05, momentum 0.9 (Nesterov), weight decay 5e-4; adamw lr 2e-3, decay 0.05; batch 128, or
    smaller on a small training split (default_batch_size).

    Weight decay applies to weight matrices/kernels only (ndim > 1), not to biases or norm scales.
    The cosine schedule anneals the lr per step from lr to 0 over the whole run; warmup_epochs first ramps it
    up linearly over that many epochs (either schedule). amp is "auto"
    (bf16 autocast on CUDA if supported, else fp16 with loss scaling; off on CPU), "bf16", "fp16"
    or "off". augment adds a random crop (padding 2) and horizontal flip, computed batch-wise on
    the device. channels_last trains 4-D inputs in the NHWC memory layout (about 20% faster
    convolutions on CPU with oneDNN, tensor-core friendly on CUDA) when the model accepts it; the
    model is handed back in the default layout. on_batch is called at most every progress_interval
    seconds, and always on the first and last batch of an epoch.
    """

    epochs: int = 10
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None  # None: default_batch_size of the training split
    optimizer: str | None = None  # None: the task's (TASK_OPTIMIZER)
    schedule: str = "cosine"
    # linear lr warm-up; 2 epochs were tried as segmentation's default and not kept (docs/benchmarks.md)
    warmup_epochs: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    label_smoothing: float = 0.0
    augment: bool = False
    output: str | None = None
    channels_last: bool = True
    progress_interval: float = 0.1
    clip_grad_norm: float | None = None  # clip the gradients' global L2 norm (None: the task's, TASK_CLIP)
    distill: float = 0.0  # weight of the distillation term (gensynth.training.distill); > 0 needs train(teacher=...)
    distill_temperature: float = 4.0

    def validate(self) -> None:
        """Raise NetError on an impossible setting, before any work is done."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size is None or self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.optimizer in (None, *OPTIMIZER_DEFAULTS),
             f"unknown optimizer {self.optimizer!r}; choose sgd or adamw"),
            (self.schedule in ("cosine", "none"), f"unknown schedule {self.schedule!r}; choose cosine or none"),
            (0.0 <= self.warmup_epochs <= self.epochs,
             f"warmup_epochs must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs}"),
            (self.amp in ("auto", "bf16", "fp16", "off"), f"unknown amp {self.amp!r}; choose auto, bf16, fp16 or off"),
            (0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.lr is None or self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay is None or self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.clip_grad_norm is None or self.clip_grad_norm > 0,
             f"clip_grad_norm must be positive, got {self.clip_grad_norm}"),
            (0.0 <= self.distill <= 1.0, f"distill must be in [0, 1], got {self.distill}"),
            (self.distill_temperature > 0, f"distill_temperature must be positive, got {self.distill_temperature}"),
        ]
        for ok, message in checks:
            if not ok:
                raise NetError(message)

    def check_fits(self, g: nx.DiGraph, what: str = "training") -> None:
        """Refuse, before anything is allocated, a network whose training cannot fit the device's memory at this
        batch size (a NetError naming the layer that needs the most and the estimate)."""
        available, where = device_memory(resolve_device(self.device))
        states = 2 if self.resolved()["optimizer"] == "adamw" else 1
        batch = self.batch_size or DEFAULT_BATCH  # the adaptive default is never larger than DEFAULT_BATCH
        check_memory(g, what, batch, training=True, optimizer_states=states, available=available,
                     where=where)

    def resolved(self) -> dict:
        """The config as a plain dict with lr and weight_decay filled in from the defaults."""
        out = asdict(self)
        out["optimizer"] = self.optimizer or "sgd"
        defaults = OPTIMIZER_DEFAULTS[out["optimizer"]]
        out["lr"] = defaults["lr"] if self.lr is None else self.lr
        out["weight_decay"] = defaults["weight_decay"] if self.weight_decay is None else self.weight_decay
        return out


def lr_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The per-step lr factor: a linear warm-up over config.warmup_epochs, then cosine to 0 (or constant)."""
    total = steps_per_epoch * config.epochs
    warm = max(1, round(config.warmup_epochs * steps_per_epoch)) if config.warmup_epochs else 0
    cosine = config.schedule == "cosine"
    if not warm and not cosine:
        return None

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warm) if warm else 1.0
        return ramp * (0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)) if cosine else 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def with_task_defaults(config: TrainConfig, task: str, n_train: int) -> TrainConfig:
    """The config with what it leaves open filled in for this task and training split: batch size, optimizer,
    gradient clipping."""
    fill = {}
    if config.batch_size is None:
        fill["batch_size"] = default_batch_size(n_train)
    if config.optimizer is None:
        fill["optimizer"] = TASK_OPTIMIZER[task]
    if config.clip_grad_norm is None and task in TASK_CLIP:
        fill["clip_grad_norm"] = TASK_CLIP[task]
    return dataclasses.replace(config, **fill)


def default_batch_size(n_train: int) -> int:
    """DEFAULT_BATCH, halved (down to MIN_BATCH) until an epoch of n_train images has MIN_STEPS_PER_EPOCH steps."""
    batch = DEFAULT_BATCH
    while batch > MIN_BATCH and n_train < MIN_STEPS_PER_EPOCH * batch:
        batch //= 2
    return batch


@dataclass
class EpochStats:
    """What one epoch did; val_* are None when the dataset has no validation split.

    train_acc is the running accuracy (per pixel for segmentation; None for detection); val_metrics holds
    the task's metrics (acc; miou, pixel_acc; map50, map) and val_score the primary one.
    """

    epoch: int
    train_loss: float
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    images_per_s: float
    train_s: float
    wall_s: float
    lr: float
    batch_losses: list[float] = field(default_factory=list, repr=False)
    val_metrics: dict[str, float] | None = None
    val_score: float | None = None


@dataclass
class TrainResult:
    """The outcome of train(): per-epoch stats, the test evaluation (report only) and timing."""

    epochs: list[EpochStats]
    test: EvalResult | None
    wall_s: float
    device: str
    amp: str
    out_dir: Path | None = None


def _runs_channels_last(model: nn.Module, sample: torch.Tensor, device: torch.device) -> bool:
    """Switch the model to channels-last if a trial forward accepts it (a .view() on NHWC may not)."""
    model.to(memory_format=torch.channels_last)
    try:
        with training_mode(model, False), torch.no_grad():
            model(sample.to(device).contiguous(memory_format=torch.channels_last))
        return True
    except RuntimeError:
        model.to(memory_format=torch.contiguous_format)
        return False


def _make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW with weight decay on ndim > 1 parameters only."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise NetError("the model has no trainable parameters")
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg["lr"])


def _metrics(result: TrainResult, dataset: Dataset, config: TrainConfig, model: nn.Module, *,
             interrupted: bool = False, finished: bool = False, error: str | None = None) -> dict:
    """The metrics.json document: curves, timing, device, config and (when finished) the test score."""
    eps = result.epochs
    return {
        "dataset": dataset.name, "task": dataset.task, "class_names": list(dataset.class_names),
        "device": result.device, "amp": result.amp,
        "config": config.resolved(), "num_parameters": sum(p.numel() for p in model.parameters()),
        "completed_epochs": len(eps), "interrupted": interrupted, "error": error,
        "finished": finished,
        "train_loss": [e.train_loss for e in eps], "train_acc": [e.train_acc for e in eps],
        "val_loss": [e.val_loss for e in eps], "val_acc": [e.val_acc for e in eps],
        "val_metrics": [e.val_metrics for e in eps],
        "images_per_s": [e.images_per_s for e in eps], "epoch_wall_s": [e.wall_s for e in eps],
        "loss_curve": {"batches_per_epoch": len(eps[0].batch_losses) if eps else 0,
                       "train_batch_loss": [float(f"{v:.5g}") for e in eps for v in e.batch_losses]},
        "wall_s": result.wall_s,
        "test_loss": result.test.loss if result.test else None,
        "test_accuracy": result.test.accuracy if result.test else None,
        "test_metrics": result.test.metrics if result.test else None,
        "test_confusion": (result.test.confusion.tolist()
                           if result.test and result.test.confusion is not None else None),
        "weights": "weights.safetensors" if eps else None,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def _write_metrics(out_dir: Path, doc: dict) -> None:
    """Atomically write metrics.json."""
    text = json.dumps(doc, indent=1, allow_nan=False, default=str)
    atomic_write(out_dir / "metrics.json", text)


class _Epochs:
    """The per-run training state; one call of run() is one pass over the shuffled training split."""

    def __init__(self, model: nn.Module, dataset: Dataset, config: TrainConfig, device: torch.device,
                 amp: torch.dtype | None, teacher: nn.Module | None = None):
        self.model, self.config, self.device, self.amp = model, config, device, amp
        self.num_classes = dataset.num_classes
        self.x, self.y = place_data(dataset.train_x, device), place_data(dataset.train_y, device)
        self.n = len(self.x)
        if self.n == 0:
            raise NetError(f"{dataset.name}: the training split is empty")
        self.bs = min(config.batch_size, self.n)
        # A trailing batch of one image would break BatchNorm in train mode: drop it.
        self.steps = self.n // self.bs + (1 if self.n % self.bs > 1 else 0)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.aug = torch.Generator(device=device).manual_seed(config.seed + 1) if config.augment else None
        self.optimizer = _make_optimizer(model, config.resolved())
        self.channels_last = (config.channels_last and self.x.ndim == 4
                              and _runs_channels_last(model, self.x[:2], device))
        self.scheduler = lr_schedule(self.optimizer, config, self.steps)
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        self.objective = objective_for(dataset, config.output, config.label_smoothing)
        with training_mode(model, False):
            self.objective.prepare(model, self.x[:2].to(device), self.y)
        if config.augment and self.objective.task != "classify":
            raise NetError("augment (random crop and flip) is for classification only: it would move the image "
                           "away from its mask or boxes")
        self.teacher, self.soft = None, None
        if config.distill > 0:
            if teacher is None:
                raise NetError("distill > 0 needs a teacher network (the trained prototype)")
            if self.objective.task != "classify":
                raise NetError(f"distillation is for classification only, not {self.objective.task}")
            self.teacher = teacher.to(device).eval()
            if not config.augment:  # the teacher sees the same images every epoch: ask it once
                self.soft = teacher_logits(self.teacher, self.x, device, config.output, amp=amp)

    def run(self, epoch: int, on_batch: BatchCallback | None) -> tuple[list[float], float, float | None, float, float]:
        """Train one epoch: (batch losses, mean loss, accuracy or None, images, seconds); syncs once at the end."""
        model, opt, dev, bs, steps = self.model, self.optimizer, self.device, self.bs, self.steps
        t0 = last = time.perf_counter()
        model.train()
        perm = torch.randperm(self.n, generator=self.shuffle).to(self.x.device)
        losses = torch.zeros(steps, device=dev)
        sizes = torch.full((steps,), float(bs), device=dev)
        sizes[-1] = float(min(bs, self.n - (steps - 1) * bs))
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        counted = torch.zeros((), dtype=torch.int64, device=dev)
        objective = self.objective
        chunks = [perm[b * bs:(b + 1) * bs] for b in range(steps)]
        for b, (idx, xb) in enumerate(zip(chunks, batches_of(self.x, chunks))):
            xb = xb.to(dev, non_blocking=True)
            yb = self.y.index_select(0, idx).to(dev, non_blocking=True)
            if self.aug is not None:
                xb = random_crop_flip(xb, self.aug)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(self.amp, dev):
                out = model(xb)
                if b == 0:
                    objective.check(out)
                loss = objective.loss(out, yb)
                if self.teacher is not None:
                    loss = (1 - self.config.distill) * loss + self.config.distill * distillation_loss(
                        select_output(out, self.config.output), self._soft_targets(idx, xb),
                        self.config.distill_temperature)
            opt.zero_grad(set_to_none=True)
            clip = self.config.clip_grad_norm
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                if clip is not None:
                    self.scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                self.scaler.step(opt)
                self.scaler.update()
            else:
                loss.backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
            if self.scheduler is not None:
                self.scheduler.step()
            losses[b] = loss.detach()
            hits = objective.hits(out, yb)
            if hits is not None:
                correct += hits[0]
                counted += hits[1]
            if on_batch is not None:
                now = time.perf_counter()
                if b == 0 or b == steps - 1 or now - last >= self.config.progress_interval:
                    seen = sizes[: b + 1].sum()
                    run_loss = ((losses[: b + 1] * sizes[: b + 1]).sum() / seen).item()
                    run_acc = (correct / counted).item() if hits is not None else float("nan")
                    last = time.perf_counter()
                    on_batch(epoch, b + 1, steps, run_loss, run_acc, float(seen) / (last - t0))
        seen = float(sizes.sum())
        mean_loss = float((losses * sizes).sum()) / seen
        accuracy = correct.item() / max(counted.item(), 1) if objective.task != "detect" else None
        return losses.tolist(), mean_loss, accuracy, seen, time.perf_counter() - t0


    def _soft_targets(self, idx: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for this batch: precomputed, or asked now when the images are augmented."""
        if self.soft is not None:
            return self.soft.index_select(0, idx.to(self.soft.device)).to(xb.device, non_blocking=True)
        with torch.no_grad():
            return select_output(self.teacher(xb), self.config.output).float()


def train(model: nn.Module, dataset: Dataset, config: TrainConfig | None = None,
          out_dir: str | Path | None = None, on_epoch: Callable[[EpochStats], None] | None = None,
          on_batch: BatchCallback | None = None, teacher: nn.Module | None = None) -> TrainResult:
    """Train in place (the model moves to the device), checkpoint each epoch, report the test metrics.

    On KeyboardInterrupt the last completed epoch's weights stay on disk, metrics.json says
    "interrupted": true, and the interrupt is re-raised. The test split is evaluated once, at the end.
    """
    config = config or TrainConfig()
    config.validate()
    config = with_task_defaults(config, dataset.task, len(dataset.train_y))
    device = resolve_device(config.device)
    amp = amp_dtype(config.amp, device)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model.to(device)
    loop = _Epochs(model, dataset, config, device, amp, teacher)
    result = TrainResult(epochs=[], test=None, wall_s=0.0, device=str(device),
                         amp={None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp], out_dir=out)
    scoring = {"batch_size": max(512, loop.bs), "device": device, "amp": result.amp,
               "objective": loop.objective}
    metadata = metadata_for(model, dataset)  # saved with every checkpoint: how to feed these weights
    start = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            batch_losses, train_loss, train_acc, seen, train_s = loop.run(epoch, on_batch)
            if not math.isfinite(train_loss):
                raise NetError(f"training diverged in epoch {epoch}: the loss is {train_loss}",
                               notes=[f"lower the learning rate (now {config.resolved()['lr']})"])
            val = evaluate(model, dataset.val_x, dataset.val_y, **scoring) if len(dataset.val_y) else None
            stats = EpochStats(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                               val_loss=val.loss if val else None, val_acc=val.accuracy if val else None,
                               images_per_s=seen / train_s, train_s=train_s, wall_s=time.perf_counter() - t0,
                               lr=loop.optimizer.param_groups[0]["lr"],
                               batch_losses=batch_losses, val_metrics=val.metrics if val else None,
                               val_score=val.score if val else None)
            result.epochs.append(stats)
            result.wall_s = time.perf_counter() - start
            if out is not None:
                save_weights(model, out / "weights.safetensors", metadata)
                _write_metrics(out, _metrics(result, dataset, config, model))
            if on_epoch is not None:
                on_epoch(stats)
        if len(dataset.test_y):
            result.test = evaluate(model, dataset.test_x, dataset.test_y, **scoring)
    except KeyboardInterrupt:
        if out is not None:
            result.wall_s = time.perf_counter() - start
            _write_metrics(out, _metrics(result, dataset, config, model, interrupted=True))
        raise
    except NetError as exc:
        if out is not None and result.epochs:
            _write_metrics(out, _metrics(result, dataset, config, model, error=exc.message))
        raise
    finally:
        if loop.channels_last:
            model.to(memory_format=torch.contiguous_format)
    result.wall_s = time.perf_counter() - start
    if out is not None:
        _write_metrics(out, _metrics(result, dataset, config, model, finished=True))
    return result
