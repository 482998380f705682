"""netdsl generate: write networks from a learned generator; a seed gives the same network every time.

Each network is written as seed-<N>.net (and seed-<N>.safetensors with --train). Requirements are judged on
what was measured: MACs, parameters and memory always, accuracy and latency only with --train; a requirement
that was not measured is reported as such ("not measured"), never as met."""

from __future__ import annotations

from pathlib import Path

from netdsl.cli import arguments
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import Column, emit, table


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate networks from a learned generator.json", description=__doc__)
    p.add_argument("generator", help="generator.json written by netdsl synth")
    p.add_argument("--seed", type=arguments.seed, default=0, help="first seed (default 0)")
    p.add_argument("--count", type=int, default=1, help="how many networks: seeds seed, seed+1, ... (default 1)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--train", action="store_true", help="fine-tune each network and check the accuracy requirement")
    arguments.add_data_arguments(p, task=False, purpose=" for --train")
    p.add_argument("--epochs", type=int, default=3, help="fine-tune epochs with --train (default 3)")
    arguments.add_lr_argument(p, "fine-tuning", "0.02 with sgd, 0.001 with adamw")
    arguments.add_device_argument(p)
    arguments.add_json_argument(p, "the generator, the output directory and one record per network "
                                   "(docs/schemas/generate.json)")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.diagnostics import NetError
    from gensynth.generate import generate_networks

    if args.count < 1:
        raise NetError(f"--count must be at least 1, got {args.count}")
    err = make_console(stderr=True)
    records = generate_networks(
        Path(args.generator), range(args.seed, args.seed + args.count), Path(args.out),
        train_data=args.data if args.train else None, epochs=args.epochs, lr=args.lr, device=args.device,
        limit_train=args.limit_train,
        on_network=None if args.json else lambda r: err.print(
            f"seed {r.seed}: {r.file} ({r.macs / 1e6:.2f} M MACs, {r.params / 1e3:.1f} k params"
            + (f", val {r.trained.metric} {r.trained.score:.2%}" if r.trained else "") + ")", markup=False))
    distinct = len({r.arch for r in records})
    if args.json:
        arguments.print_json({"generator": args.generator, "out": args.out, "distinct": distinct,
                              "networks": [r.to_json() for r in records]})
        return 0
    out = make_console()
    rows = [[str(r.seed), r.file, f"{r.macs / 1e6:.2f} M", f"{r.params / 1e3:.1f} k", r.arch,
             verdict_text(r.verdict)] for r in records]
    columns = [Column("seed", right=True), Column("file"), Column("MACs", right=True), Column("params", right=True),
               Column("arch", drop=1), Column("meets requirements", wrap=True)]
    emit(out, table(columns, rows, out.width, title=f"{len(records)} networks from {args.generator}"))
    out.print(f"{distinct} distinct architectures out of {len(records)}", markup=False)
    if any(r.verdict.unmeasured for r in records):
        out.print("requirements marked 'not measured' need a trained network: add --train (and --data) to measure them",
                  markup=False)
    return 0


def verdict_text(verdict) -> str:
    """'yes', 'no: acc>=0.9', or what is known and what was not measured."""
    if verdict.missed:
        return "no: " + ", ".join(verdict.missed)
    if verdict.unmeasured:
        return "not measured: " + ", ".join(verdict.unmeasured)
    return "yes"
