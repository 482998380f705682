"""Rich progress and result tables for commands that train (train, synth --final, generate --train)."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def training_progress(epochs: int, console: Console | None = None, enabled: bool = True):
    """Yields (on_batch, on_epoch) callbacks that drive a rich progress bar: epoch, loss, accuracy, images/s."""
    console = console or Console(stderr=True)
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}  {task.fields[ips]:,.0f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task("train", total=None, epoch=1, epochs=epochs, loss=0.0, acc=0.0, ips=0.0)

    def on_batch(epoch, batch, batches, loss, acc, ips):
        progress.update(task, completed=batch, total=batches, epoch=epoch, loss=loss, acc=acc, ips=ips)

    def on_epoch(stats):
        val = f", val acc {stats.val_acc:.2%}" if stats.val_acc is not None else ""
        progress.console.print(f"epoch {stats.epoch}: loss {stats.train_loss:.4f}, train acc {stats.train_acc:.2%}"
                               f"{val}, {stats.images_per_s:,.0f} img/s", highlight=False)

    with progress:
        yield on_batch, on_epoch
