"""Benchmark gensynth.training.train on Fashion-MNIST: loop overhead against a hand-written loop, and a full run.

    python bench/train_fashion.py            # throughput: train() vs a minimal PyTorch loop
    python bench/train_fashion.py --full     # ... plus a default training run, test accuracy, wall time

Results are printed as a table and written into docs/benchmarks.md between the
bench:train_fashion markers (only that section is replaced). Thread count is whatever torch
picks from the environment (OMP_NUM_THREADS etc.); it is reported, never changed.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn import functional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchdoc import DOC, write_section  # noqa: E402

from gensynth.data import Dataset, load_dataset  # noqa: E402
from gensynth.training.train import EpochStats, TrainConfig, resolve_device, train  # noqa: E402

# The stopwatch for throughput runs: wall clock, or this process's CPU time (--clock cpu), which other
# load on a shared machine barely disturbs; with OMP_NUM_THREADS=1 it is exactly the compute time.
CLOCK = time.perf_counter
START, END = "<!-- bench:train_fashion:start -->", "<!-- bench:train_fashion:end -->"


def build_model() -> nn.Module:
    """examples/fashion_cnn.net lowered by the project's own backend."""
    from compiler.backend.lower import lower_to_torch
    from netdsl.loader import load_network

    return lower_to_torch(load_network(str(ROOT / "examples" / "fashion_cnn.net")))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minimal_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int, bs: int,
                 device: torch.device, amp: torch.dtype | None, channels_last: bool = False) -> float:
    """The hand-written reference: same optimizer, same index-permutation batching; images/s."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device).train().to(memory_format=fmt)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).to(device)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = CLOCK()
        idx = perm[(i % steps) * bs:(i % steps + 1) * bs]
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = functional.cross_entropy(model(x[idx].contiguous(memory_format=fmt)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * bs / (CLOCK() - t0)


def subset(ds: Dataset, n: int) -> Dataset:
    """The first n training images, with no validation or test work at all."""
    return replace(ds, train_x=ds.train_x[:n], train_y=ds.train_y[:n], val_x=ds.val_x[:0],
                   val_y=ds.val_y[:0], test_x=ds.test_x[:0], test_y=ds.test_y[:0])


def library_loop(model: nn.Module, ds: Dataset, steps: int, warmup: int, bs: int, device: str) -> float:
    """gensynth.training.train over exactly `steps` batches, after a warm-up call; wall-clock images/s of the call."""
    cfg = TrainConfig(epochs=1, batch_size=bs, device=device)
    train(model, subset(ds, warmup * bs), cfg)
    _sync(resolve_device(device))
    t0 = CLOCK()
    train(model, subset(ds, steps * bs), cfg)
    _sync(resolve_device(device))
    return steps * bs / (CLOCK() - t0)


LOOPS = {"minimal": "minimal loop, NCHW (as usually written)",
         "minimal_cl": "minimal loop, channels-last (train()'s layout)",
         "train": "gensynth train() (the whole call)"}


def throughput(ds: Dataset, steps: int, warmup: int, repeats: int, bs: int, device: str) -> dict:
    """Rounds of back-to-back runs of each loop over the same model and data, order rotating each round.

    On a shared machine the load drifts; runs within a round see nearly the same load, so the
    median of the per-round ratios is the robust figure.
    """
    dev = resolve_device(device)
    # What TrainConfig(amp="auto") picks, so every loop runs at the same precision.
    amp = None if dev.type != "cuda" else torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    torch.manual_seed(0)
    base = build_model()
    x, y = ds.train_x[: steps * bs], ds.train_y[: steps * bs]
    runs: dict[str, list[float]] = {k: [] for k in LOOPS}
    names = list(LOOPS)
    for r in range(repeats):
        for which in names[r % 3:] + names[: r % 3]:
            model = copy.deepcopy(base)
            if which == "train":
                runs[which].append(library_loop(model, ds, steps, warmup, bs, device))
            else:
                runs[which].append(minimal_loop(model, x, y, steps, warmup, bs, dev, amp, which == "minimal_cl"))
    ratios = {ref: [t / m for t, m in zip(runs["train"], runs[ref], strict=True)] for ref in ("minimal", "minimal_cl")}
    return {"runs": runs, "median": {k: statistics.median(v) for k, v in runs.items()},
            "ratios": ratios, "ratio": {k: statistics.median(v) for k, v in ratios.items()}}


def full_run(ds: Dataset, epochs: int | None, device: str, out: Path, console: Console) -> dict:
    """A default TrainConfig run on the whole dataset: test accuracy and wall time."""
    cfg = TrainConfig(device=device) if epochs is None else TrainConfig(device=device, epochs=epochs)

    def on_epoch(e: EpochStats) -> None:
        console.print(f"epoch {e.epoch}/{cfg.epochs}: loss {e.train_loss:.4f} train {e.train_acc:.2%} "
                      f"val {e.val_acc:.2%} {e.images_per_s:,.0f} img/s {e.wall_s:.0f} s", highlight=False)

    torch.manual_seed(0)
    result = train(build_model(), ds, cfg, out_dir=out, on_epoch=on_epoch)
    return {"epochs": cfg.epochs, "test_acc": result.test.accuracy, "val_acc": result.epochs[-1].val_acc,
            "wall_s": result.wall_s, "epoch_s": statistics.median(e.wall_s for e in result.epochs),
            "ips": statistics.median(e.images_per_s for e in result.epochs), "device": result.device}


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    threads = torch.get_num_threads()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{platform.machine()} {platform.processor() or platform.system()}, {cores} CPU cores available{load}, "
            f"torch {torch.__version__} with {threads} thread{'s' if threads != 1 else ''}{gpu}")


def section(command: str, tp: dict, full: dict | None, args: argparse.Namespace) -> str:
    """The markdown between the markers."""
    med, runs = tp["median"], tp["runs"]
    lines = [START, "## Training loop (`bench/train_fashion.py`)", "",
             f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Date: {datetime.date.today().isoformat()}", "",
             f"Throughput on Fashion-MNIST, `build_model()` (the fashion_cnn stand-in), batch {args.batch_size}, "
             f"{args.steps} timed steps after {args.warmup} warm-up steps, {args.repeats} rounds of back-to-back runs "
             f"(order rotating), timed by {'wall clock' if args.clock == 'wall' else 'process CPU time'}:",
             "", "| loop | images/s (median) | runs |", "|---|---:|---|"]
    lines += [f"| {label} | {med[k]:,.0f} | " + ", ".join(f"{v:,.0f}" for v in runs[k]) + " |"
              for k, label in LOOPS.items()]
    lines += [""] + [f"train() / {LOOPS[ref].split(' (')[0]}: median of per-round ratios **{tp['ratio'][ref]:.3f}** "
                     "(per round: " + ", ".join(f"{r:.3f}" for r in tp["ratios"][ref]) + ")  "
                     for ref in ("minimal_cl", "minimal")]
    lines += ["", "The same-layout ratio is the loop-overhead figure (requirement: >= 0.95); the NCHW one is "
              "what train()'s channels-last default buys over a loop written the usual way."]
    if full:
        default = TrainConfig().epochs
        what = "default run" if full["epochs"] == default else f"run cut to {full['epochs']} epoch(s) (default {default})"
        lines += ["", f"Full-data {what}: SGD+Nesterov, cosine, batch 128, 54,000 train / 6,000 val / "
                  f"10,000 test, on {full['device']}:", "",
                  "| test accuracy | final val accuracy | wall time | median epoch | median images/s |",
                  "|---:|---:|---:|---:|---:|",
                  f"| {full['test_acc']:.2%} | {full['val_acc']:.2%} | {full['wall_s'] / 60:.1f} min "
                  f"| {full['epoch_s']:.0f} s | {full['ips']:,.0f} |"]
        if full["epochs"] != default:
            lines += ["", f"At that epoch time the default {default}-epoch run takes about "
                      f"{default * full['epoch_s'] / 60:.0f} min on this machine."]
    else:
        epoch_min = 60_000 * (1 - 0.1) / med["train"] / 60
        lines += ["", f"No full training run in this measurement (`--full`). At the train() rate above, one epoch "
                  f"of 54,000 images is about {epoch_min:.1f} min of compute and the default "
                  f"{TrainConfig().epochs}-epoch run about {epoch_min * TrainConfig().epochs:.0f} min, plus evaluation."]
    return "\n".join(lines + [END])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-mnist", help="dataset spec (default fashion-mnist)")
    p.add_argument("--steps", type=int, default=15, help="timed training steps per run (default 15)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (default 3)")
    p.add_argument("--repeats", type=int, default=5, help="rounds, one run of each loop per round (default 5)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--full", action="store_true", help="also run a default full training run")
    p.add_argument("--epochs", type=int, help="epochs of the full run (default: TrainConfig's)")
    p.add_argument("--out", default="runs/bench_train_fashion", help="output directory of the full run")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time throughput by wall clock or by process CPU time (robust on a shared machine)")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    console = Console(highlight=False)
    env = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
           if k in os.environ]
    command = " ".join([*env, "python", shlex.join(["bench/train_fashion.py", *(sys.argv[1:] if argv is None else argv)])])
    ds = load_dataset(args.data)
    if len(ds.train_y) < (args.steps + args.warmup) * args.batch_size:
        p.error(f"{args.data} has only {len(ds.train_y)} training images for {args.steps} steps")
    console.print(f"{machine()}; {ds}")
    tp = throughput(ds, args.steps, args.warmup, args.repeats, args.batch_size, args.device)
    table = Table(title=f"training throughput, batch {args.batch_size}, {args.steps} steps")
    table.add_column("loop")
    table.add_column("images/s (median)", justify="right")
    table.add_column("runs", justify="right")
    for key, label in LOOPS.items():
        table.add_row(label, f"{tp['median'][key]:,.0f}", ", ".join(f"{v:,.0f}" for v in tp["runs"][key]))
    for ref in ("minimal_cl", "minimal"):
        table.add_row(f"ratio train() / {ref}", f"{tp['ratio'][ref]:.3f}",
                      ", ".join(f"{r:.3f}" for r in tp["ratios"][ref]))
    console.print(table)
    full = full_run(ds, args.epochs, args.device, ROOT / args.out, console) if args.full else None
    if full:
        console.print(f"full run: test accuracy {full['test_acc']:.2%}, wall {full['wall_s'] / 60:.1f} min "
                      f"on {full['device']}")
    if not args.no_docs:
        write_section(section(command, tp, full, args))
        console.print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
