"""netdsl profile: measure on this machine (the target) the layers a prototype's search space can produce and
fit its latency model, for synth --latency-model (run it on the device; copy the file back)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from compiler.diagnostics import NetError
from netdsl.cli import arguments
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import wrap_items

LOG_EVERY = 0.1  # without a terminal, a progress line per tenth of the work


def register(sub) -> None:
    p = sub.add_parser("profile", help="measure this machine and fit a latency model of a prototype's search space",
                       description=__doc__)
    arguments.add_network_arguments(p)
    arguments.add_latency_arguments(p)
    p.add_argument("-o", "--out", help="the latency model file (default <network>-<runtime>-latency.json)")
    p.add_argument("--force", action="store_true", help="replace an existing model file")
    p.add_argument("--input", metavar="NxCxHxW", help="profile at another input size, e.g. 1x3x160x160 (default: the network's own, batch 1)")
    p.add_argument("--samples", type=int, default=24,
                   help="channel configurations measured per kind of layer (default 24)")
    p.add_argument("--fit-networks", type=int, default=24,
                   help="whole networks that fit the network-level terms (default 24; raised to twice the "
                        "terms when there are more kinds of layer)")
    p.add_argument("--check-networks", type=int, default=12,
                   help="held-out networks that measure the model's accuracy (default 12)")
    p.add_argument("--min-fraction", type=float, default=0.1,
                   help="the fewest channels a layer keeps, as synth --min-fraction (default 0.1)")
    p.add_argument("--stride", action="store_true", help="also the strided convs synth --stride may make")
    p.add_argument("--factorize", action="store_true", help="also the factorized convs synth --factorize may make")
    p.add_argument("--max-seconds", type=float, default=2.0,
                   help="time cap of one network's measurement; a layer's gets a quarter (default 2)")
    arguments.add_seed_argument(p, "which networks are drawn")
    arguments.add_json_argument(p, "the summary")
    p.set_defaults(run=run)


def options_from_args(args):
    from gensynth.latency.profile import ProfileOptions

    if not 0 < args.min_fraction <= 1:
        raise NetError(f"--min-fraction must be in (0, 1], got {args.min_fraction}")
    if args.max_seconds <= 0:
        raise NetError(f"--max-seconds must be positive, got {args.max_seconds}")
    return ProfileOptions(runtime=args.runtime, threads=args.threads, clock=args.clock, samples=args.samples,
                          fit_networks=args.fit_networks, check_networks=args.check_networks,
                          min_fraction=args.min_fraction, stride=args.stride, factorize=args.factorize,
                          unit_seconds=args.max_seconds / 4, network_seconds=args.max_seconds, seed=args.seed)


def run(args) -> int:
    from gensynth.latency.profile import profile

    g = arguments.load_from_args(args)
    if args.input:
        from netdsl.cli.cost import resize

        g, batch = resize(g, [args.input])
        if batch != 1:
            raise NetError(f"--input {args.input}: latency is profiled at batch 1")
    options = options_from_args(args)
    out = Path(args.out or f"{g.graph['name']}-{options.runtime}-latency.json")
    if out.exists() and not args.force:
        raise NetError(f"{out} exists; choose another -o, or pass --force to replace it")
    if not out.parent.exists():
        raise NetError(f"cannot write {out}: directory {out.parent} does not exist")
    with profile_progress(make_console(stderr=True), enabled=not args.json) as on_progress:
        model, accuracy = profile(g, options, on_progress)
    model.save(out)
    summary = {"out": str(out), "network": model.prototype, "input": model.input_shape, "runtime": model.runtime,
               "threads": model.threads, "clock": model.clock, "layer_kinds": len(model.units),
               "layer_measurements": sum(u["samples"] for u in model.units.values()),
               "channel_block": model.basis["block"], "alignment": model.basis["align"],
               "accuracy": model.accuracy, "seconds": model.profile_seconds}
    if args.json:
        arguments.print_json(summary)
        return 0
    console = make_console()
    lines = [[f"{model.prototype} on {model.runtime}, {model.threads} thread(s): {len(model.units)} kinds of layer",
              f"{summary['layer_measurements']} measured", f"in {model.profile_seconds / 60:.1f} min"],
             [f"best fit with channels in blocks of {model.basis['block']}",
              f"fast path at multiples of {model.basis['align']}"],
             [f"on {accuracy.networks} held-out networks: {accuracy.within_10:.0%} predicted within ±10%",
              f"{accuracy.within_20:.0%} within ±20%", f"median error {accuracy.median_error:.1%}"],
             [f"latency model: {out}", f"use it with netdsl synth --latency-model {out}"]]
    for items in lines:
        console.print(wrap_items(items, console.width), markup=False)
    return 0


class profile_progress:  # noqa: N801 (a context manager read as a phrase)
    """A progress bar in a terminal, a line per tenth of the work in a log."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console, self.enabled = console, enabled
        self.bar = Progress(TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[what]}"), console=console,
                            disable=not enabled or not console.is_terminal)
        self.task = self.bar.add_task("profile", total=None, what="")
        self.logged, self.start = -1.0, time.perf_counter()

    def __enter__(self):
        self.bar.__enter__()
        return self.update

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def update(self, done: int, total: int, what: str) -> None:
        self.bar.update(self.task, completed=done, total=total, what=what[:48])
        if self.enabled and not self.console.is_terminal and total and \
                (done / total >= self.logged + LOG_EVERY or done == total):
            self.logged = done / total
            self.console.print(wrap_items([f"profiling: {done}/{total} measurements ({done / total:.0%}",
                                           f"{time.perf_counter() - self.start:.0f} s): {what}"],
                                          self.console.width), markup=False)
