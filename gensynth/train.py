"""Training and evaluation of any classification nn.Module on an in-memory Dataset.

Deliberately lean: batches are index-permutation slices of tensors already on the device, metrics
stay on the device until an epoch ends (or a progress callback asks), and nothing is printed.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from compiler.diagnostics import NetError
from gensynth.checkpoint import atomic_write, save_weights
from gensynth.data import Dataset, random_crop_flip

# Per-optimizer defaults, used when TrainConfig.lr / weight_decay are None. SGD: Nesterov momentum
# 0.9, the classic recipe for BN conv nets at batch 128. AdamW: a higher decay, as AdamW decouples it.
OPTIMIZER_DEFAULTS = {"sgd": {"lr": 0.05, "weight_decay": 5e-4},
                      "adamw": {"lr": 2e-3, "weight_decay": 0.05}}
# on_batch(epoch, batch, num_batches, running_loss, running_accuracy, images_per_s); both 1-based.
BatchCallback = Callable[[int, int, int, float, float, float], None]


@dataclass
class TrainConfig:
    """Training hyperparameters; lr/weight_decay None means the optimizer's default.

    Defaults: sgd lr 0.05, momentum 0.9 (Nesterov), weight decay 5e-4; adamw lr 2e-3, decay 0.05.

    Weight decay applies to weight matrices/kernels only (ndim > 1), not to biases or norm scales.
    The cosine schedule anneals the lr per step from lr to 0 over the whole run. amp is "auto"
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
    batch_size: int = 128
    optimizer: str = "sgd"
    schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    label_smoothing: float = 0.0
    augment: bool = False
    output: str | None = None
    channels_last: bool = True
    progress_interval: float = 0.1

    def validate(self) -> None:
        """Raise NetError on an impossible setting, before any work is done."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.optimizer in OPTIMIZER_DEFAULTS, f"unknown optimizer {self.optimizer!r}; choose sgd or adamw"),
            (self.schedule in ("cosine", "none"), f"unknown schedule {self.schedule!r}; choose cosine or none"),
            (self.amp in ("auto", "bf16", "fp16", "off"), f"unknown amp {self.amp!r}; choose auto, bf16, fp16 or off"),
            (0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.lr is None or self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay is None or self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
        ]
        for ok, message in checks:
            if not ok:
                raise NetError(message)

    def resolved(self) -> dict:
        """The config as a plain dict with lr and weight_decay filled in from the defaults."""
        out = asdict(self)
        defaults = OPTIMIZER_DEFAULTS[self.optimizer]
        out["lr"] = defaults["lr"] if self.lr is None else self.lr
        out["weight_decay"] = defaults["weight_decay"] if self.weight_decay is None else self.weight_decay
        return out


@dataclass
class EvalResult:
    """Loss (mean cross-entropy), accuracy and a KxK confusion matrix (rows = true class)."""

    loss: float
    accuracy: float
    confusion: np.ndarray
    count: int

    def per_class_accuracy(self) -> np.ndarray:
        """Recall per true class (NaN for a class with no examples)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / totals


@dataclass
class EpochStats:
    """What one epoch did; val_* are None when the dataset has no validation split."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    images_per_s: float
    train_s: float
    wall_s: float
    lr: float
    batch_losses: list[float] = field(default_factory=list, repr=False)


@dataclass
class TrainResult:
    """The outcome of train(): per-epoch stats, the test evaluation (report only) and timing."""

    epochs: list[EpochStats]
    test: EvalResult | None
    wall_s: float
    device: str
    amp: str
    out_dir: Path | None = None


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; an unavailable or unknown device is a NetError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NetError(f"unknown device {name!r}; choose auto, cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NetError("device cuda requested but CUDA is not available",
                           notes=["use device auto or cpu"])
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise NetError(f"device {name} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type != "cpu":
        raise NetError(f"unsupported device {name!r}; choose auto, cpu or cuda")
    return device


@contextlib.contextmanager
def training_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Set train/eval mode for the block, then restore every submodule's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def classification_output(out: object, output: str | None = None) -> torch.Tensor:
    """The logits tensor of a forward result: a tensor, or one entry of a dict of named outputs."""
    if isinstance(out, Mapping):
        if output is not None:
            if output not in out:
                raise NetError(f"the model has no output named {output!r}; it has: {', '.join(map(str, out))}")
            out = out[output]
        elif len(out) == 1:
            out = next(iter(out.values()))
        else:
            raise NetError(f"the model returns {len(out)} outputs ({', '.join(map(str, out))}); "
                           "classification needs one", notes=["choose one with output=NAME"])
    elif output is not None:
        raise NetError(f"output {output!r} was requested but the model returns a single tensor")
    if not isinstance(out, torch.Tensor):
        raise NetError(f"the model returned {type(out).__name__}; expected a tensor or a dict of tensors")
    return out


def _check_logits(logits: torch.Tensor, num_classes: int) -> None:
    """Classification needs (batch, num_classes) logits; say what came out instead."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise NetError(f"the model's output has shape {tuple(logits.shape)} but classifying "
                       f"{num_classes} classes needs (batch, {num_classes})")


def _amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the device, or None for full precision."""
    if device.type != "cuda":
        if setting in ("bf16", "fp16"):
            raise NetError(f"amp {setting} needs a CUDA device; this run is on {device}",
                           notes=["use amp auto or off on CPU"])
        return None
    if setting == "off":
        return None
    if setting == "bf16" or (setting == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    """An autocast context, or a free no-op when running in full precision."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _place(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Put data on the device when it comfortably fits; otherwise keep it pinned on the host."""
    if device.type == "cpu":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    if t.numel() * t.element_size() < free // 4:
        return t.to(device)
    return t.pin_memory()


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


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter or buffer lives (cpu for a stateless model)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             device: torch.device | str | None = None, *, amp: str = "off", output: str | None = None,
             num_classes: int | None = None) -> EvalResult:
    """Loss, accuracy and confusion matrix of the model on (x, y), in eval mode and without grads.

    device None runs where the model is; a given device moves the model there first.
    """
    if len(x) == 0 or len(x) != len(y):
        raise NetError(f"cannot evaluate on {len(x)} images with {len(y)} labels")
    if device is None:
        device = model_device(model)
    else:
        device = resolve_device(str(device))
        model.to(device)
    dtype = _amp_dtype(amp, device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion, k = None, num_classes
    with training_mode(model, False), torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device, non_blocking=True)
            yb = y[start:start + batch_size].to(device, non_blocking=True)
            with _autocast(dtype, device):
                logits = classification_output(model(xb), output)
            if confusion is None:
                k = k or logits.shape[-1]
                if int(y.min()) < 0 or int(y.max()) >= k:
                    raise NetError(f"labels must lie in 0..{k - 1}, found {int(y.min())}..{int(y.max())}")
                confusion = torch.zeros(k * k, dtype=torch.int64, device=device)
            _check_logits(logits, k)
            loss_sum += functional.cross_entropy(logits.float(), yb, reduction="sum")
            confusion += torch.bincount(yb * k + logits.argmax(1), minlength=k * k)
    conf = confusion.cpu().numpy().reshape(k, k)
    return EvalResult(loss=loss_sum.item() / len(y), accuracy=float(np.trace(conf)) / len(y),
                      confusion=conf, count=len(y))


def _metrics(result: TrainResult, dataset: Dataset, config: TrainConfig, model: nn.Module, *,
             interrupted: bool = False, finished: bool = False, error: str | None = None) -> dict:
    """The metrics.json document: curves, timing, device, config and (when finished) the test score."""
    eps = result.epochs
    return {
        "dataset": dataset.name, "class_names": list(dataset.class_names),
        "device": result.device, "amp": result.amp,
        "config": config.resolved(), "num_parameters": sum(p.numel() for p in model.parameters()),
        "completed_epochs": len(eps), "interrupted": interrupted, "error": error,
        "finished": finished,
        "train_loss": [e.train_loss for e in eps], "train_acc": [e.train_acc for e in eps],
        "val_loss": [e.val_loss for e in eps], "val_acc": [e.val_acc for e in eps],
        "images_per_s": [e.images_per_s for e in eps], "epoch_wall_s": [e.wall_s for e in eps],
        "loss_curve": {"batches_per_epoch": len(eps[0].batch_losses) if eps else 0,
                       "train_batch_loss": [float(f"{v:.5g}") for e in eps for v in e.batch_losses]},
        "wall_s": result.wall_s,
        "test_loss": result.test.loss if result.test else None,
        "test_accuracy": result.test.accuracy if result.test else None,
        "test_confusion": result.test.confusion.tolist() if result.test else None,
        "weights": "weights.safetensors" if eps else None,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def _write_metrics(out_dir: Path, doc: dict) -> None:
    """Atomically write metrics.json."""
    text = json.dumps(doc, indent=1, allow_nan=False, default=str)
    atomic_write(out_dir / "metrics.json", lambda p: p.write_text(text))


class _Epochs:
    """The per-run training state; one call of run() is one pass over the shuffled training split."""

    def __init__(self, model: nn.Module, dataset: Dataset, config: TrainConfig, device: torch.device,
                 amp: torch.dtype | None):
        self.model, self.config, self.device, self.amp = model, config, device, amp
        self.num_classes = dataset.num_classes
        self.x, self.y = _place(dataset.train_x, device), _place(dataset.train_y, device)
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
        total = self.steps * config.epochs
        self.scheduler = (torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
            if config.schedule == "cosine" else None)
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def run(self, epoch: int, on_batch: BatchCallback | None) -> tuple[list[float], float, float, float, float]:
        """Train one epoch: (batch losses, mean loss, accuracy, images, seconds); syncs once at the end."""
        model, opt, dev, bs, steps = self.model, self.optimizer, self.device, self.bs, self.steps
        t0 = last = time.perf_counter()
        model.train()
        perm = torch.randperm(self.n, generator=self.shuffle).to(self.x.device)
        losses = torch.zeros(steps, device=dev)
        sizes = torch.full((steps,), float(bs), device=dev)
        sizes[-1] = float(min(bs, self.n - (steps - 1) * bs))
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        for b in range(steps):
            idx = perm[b * bs:(b + 1) * bs]
            xb = self.x.index_select(0, idx).to(dev, non_blocking=True)
            yb = self.y.index_select(0, idx).to(dev, non_blocking=True)
            if self.aug is not None:
                xb = random_crop_flip(xb, self.aug)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(self.amp, dev):
                logits = classification_output(model(xb), self.config.output)
                if b == 0:
                    _check_logits(logits, self.num_classes)
                loss = self.loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(opt)
                self.scaler.update()
            else:
                loss.backward()
                opt.step()
            if self.scheduler is not None:
                self.scheduler.step()
            losses[b] = loss.detach()
            correct += (logits.detach().argmax(1) == yb).sum()
            if on_batch is not None:
                now = time.perf_counter()
                if b == 0 or b == steps - 1 or now - last >= self.config.progress_interval:
                    seen = sizes[: b + 1].sum()
                    run_loss = ((losses[: b + 1] * sizes[: b + 1]).sum() / seen).item()
                    run_acc = (correct / seen).item()
                    last = time.perf_counter()
                    on_batch(epoch, b + 1, steps, run_loss, run_acc, float(seen) / (last - t0))
        seen = float(sizes.sum())
        mean_loss = float((losses * sizes).sum()) / seen
        accuracy = correct.item() / seen
        return losses.tolist(), mean_loss, accuracy, seen, time.perf_counter() - t0


def train(model: nn.Module, dataset: Dataset, config: TrainConfig | None = None,
          out_dir: str | Path | None = None, on_epoch: Callable[[EpochStats], None] | None = None,
          on_batch: BatchCallback | None = None) -> TrainResult:
    """Train in place (the model moves to the device), checkpoint each epoch, report test accuracy.

    On KeyboardInterrupt the last completed epoch's weights stay on disk, metrics.json says
    "interrupted": true, and the interrupt is re-raised. The test split is evaluated once, at the end.
    """
    config = config or TrainConfig()
    config.validate()
    device = resolve_device(config.device)
    amp = _amp_dtype(config.amp, device)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model.to(device)
    loop = _Epochs(model, dataset, config, device, amp)
    result = TrainResult(epochs=[], test=None, wall_s=0.0, device=str(device),
                         amp={None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp], out_dir=out)
    scoring = {"batch_size": max(512, loop.bs), "device": device, "amp": result.amp,
               "output": config.output, "num_classes": dataset.num_classes}
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
                               batch_losses=batch_losses)
            result.epochs.append(stats)
            result.wall_s = time.perf_counter() - start
            if out is not None:
                save_weights(model, out / "weights.safetensors")
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
