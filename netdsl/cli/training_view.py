"""Rich progress and result tables for commands that train (train, synth --final, generate --train)."""

from __future__ import annotations

import math
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gensynth.tasks.metrics import label
from netdsl.cli.console import console as new_console


@contextmanager
def training_progress(epochs: int, console: Console | None = None, enabled: bool = True):
    """Yields (on_batch, on_epoch) callbacks that drive a rich progress bar: epoch, loss, accuracy, images/s."""
    console = console or new_console(stderr=True)
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[acc]}  {task.fields[ips]:,.0f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task("train", total=None, epoch=1, epochs=epochs, loss=0.0, acc="", ips=0.0)

    def on_batch(epoch, batch, batches, loss, acc, ips):
        shown = "" if math.isnan(acc) else f"acc {acc:.2%}"
        progress.update(task, completed=batch, total=batches, epoch=epoch, loss=loss, acc=shown, ips=ips)

    def on_epoch(stats):
        train_acc = f", train acc {stats.train_acc:.2%}" if stats.train_acc is not None else ""
        val = f", val {metrics_text(stats.val_metrics)}" if stats.val_metrics else ""
        progress.console.print(f"epoch {stats.epoch}: loss {stats.train_loss:.4f}{train_acc}"
                               f"{val}, {stats.images_per_s:,.0f} img/s", highlight=False)

    with progress:
        yield on_batch, on_epoch


def metrics_text(metrics: dict) -> str:
    """"acc 91.20%" / "mIoU 70.10%, pixel acc 96.00%" / "mAP@.5 80.00%, mAP@[.5:.95] 51.00%" (labels from the
    metric registry, which imports no torch)."""
    return ", ".join(f"{label(k)} {v:.2%}" for k, v in metrics.items() if v is not None)
