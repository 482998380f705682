"""Arguments shared by the subcommands, each declared once here, and loading the network they name."""

from __future__ import annotations

import argparse
import json
import math
import sys

from compiler.diagnostics import NetError, printable
from netdsl.loader import load_network
from netdsl.values import RANGE, in_range


def add_network_arguments(p: argparse.ArgumentParser, optional: bool = False) -> None:
    """FILE, --network NAME, --param NAME=VALUE."""
    p.add_argument("file", nargs="?" if optional else None, help="a .net file")
    p.add_argument("--network", help="which network of the file (default: the last one)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a network parameter, e.g. --param width=0.5 (repeatable; default: the defaults the file gives)")


DATA_SPECS = ("classification: fashion-mnist[:DIR], idx:DIR, cifar10:DIR, npz:FILE; segmentation: fashion-seg[:DIR], "
              "masks:DIR; detection: fashion-det[:DIR], coco:FILE.json")


def add_data_arguments(p: argparse.ArgumentParser, *, task: bool = True, limit_train: bool = True,
                       purpose: str = "") -> None:
    """--data (the spec, and with it the task), --task, --limit-train."""
    p.add_argument("--data", default="fashion-mnist",
                   help=f"dataset{purpose}: {DATA_SPECS} (default: fashion-mnist); the task comes from it")
    if task:
        p.add_argument("--task", choices=["classify", "segment", "detect"],
                       help="the task (default: the one the data holds; a mismatch is an error)")
    if limit_train:
        p.add_argument("--limit-train", type=int, metavar="N",
                       help="use only this many training images, for quick runs (default: every training image)")


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """--device."""
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto, cuda when available)")


MAX_SEED = 2**32 - 1  # numpy's and torch's generators take any seed in 0..2**32-1; larger or negative ones fail


def seed(text: str) -> int:
    """An argparse type: a seed in 0..MAX_SEED."""
    value = int(text) if text.strip().lstrip("-").isdigit() and len(text) < 20 else None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {MAX_SEED}, got {text[:30]!r}")
    return value


def add_seed_argument(p: argparse.ArgumentParser, help: str = "seed of the initial weights and the data order") -> None:
    """--seed."""
    p.add_argument("--seed", type=seed, default=0, help=f"{help} (default 0)")


def add_lr_argument(p: argparse.ArgumentParser, what: str, defaults: str) -> None:
    """--lr: what it sets, and its defaults per optimizer."""
    p.add_argument("--lr", type=float, help=f"{what} learning rate (default {defaults})")


def add_json_argument(p: argparse.ArgumentParser, what: str = "the result") -> None:
    """--json: one JSON document on stdout for scripts."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def parse_param(text: str):
    """NAME=VALUE with VALUE an int, float, true/false or a string."""
    if "=" not in text:
        raise NetError(f"--param expects NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    for cast in (int, float):
        try:
            value = cast(raw)
        except ValueError:
            continue
        if not in_range(value):
            raise NetError(f"--param {printable(text, 60)}: the value is out of range ({RANGE})")
        return name.strip(), value
    if raw in ("true", "false"):
        return name.strip(), raw == "true"
    return name.strip(), raw


def load_from_args(args: argparse.Namespace):
    """The validated IR named by FILE/--network/--param."""
    params = dict(parse_param(p) for p in args.param)
    return load_network(args.file, args.network, params or None)


def input_shape(g) -> tuple[int, ...]:
    """The per-sample shape of the network's first input: image folders (folder:DIR) are decoded to it."""
    return tuple(g.nodes[g.graph["inputs"][0]]["shape"])


def strict_json(data):
    """The data with every NaN or infinity made null: strict JSON parsers refuse NaN, which json writes by default."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(v) for v in data]
    return data


def print_json(data) -> None:
    """Scripts read this: one strict JSON document on stdout (NaN and infinities as null)."""
    json.dump(strict_json(data), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")


def write_output(target: str, text: str, what: str) -> None:
    """Text to a file (or stdout for '-'); a path that cannot be written is a NetError naming it."""
    if target == "-":
        sys.stdout.write(text)
        return
    from netdsl.cli.paths import write_text

    write_text(target, text, what)


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """--batch-size, --optimizer, --augment, --warmup-epochs: the training recipe shared by train and synth."""
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step (default 128, halved down to 16 while an epoch of the training split "
                        "would have fewer than 100 steps: 32 for 3,600 images)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"],
                   help="default: sgd for classification and detection, adamw for segmentation")
    p.add_argument("--augment", action="store_true", help="random crop and flip (classification)")
    p.add_argument("--warmup-epochs", type=float, default=0.0, metavar="E",
                   help="ramp the learning rate up linearly over the first E epochs (default 0; in synth, of each "
                        "phase, at most its length)")


def add_latency_arguments(p: argparse.ArgumentParser, runtime: str | None = "torch") -> None:
    """--runtime, --threads, --clock: how latency is measured (gensynth.latency.measure); with runtime None the
    defaults are a latency model's."""
    fallback = "the latency model's, else " if runtime is None else ""
    p.add_argument("--runtime", choices=["torch", "onnxruntime"], default=runtime,
                   help=f"run networks with PyTorch eager or onnxruntime (default: {fallback}torch)")
    p.add_argument("--threads", type=int, default=None if runtime is None else 1,
                   help=f"intra-op threads while timing (default: {fallback}1)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default), or this process's CPU time, which leaves out the time other "
                        "processes take on a crowded machine (single-threaded runs only)")
