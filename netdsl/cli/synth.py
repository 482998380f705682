"""netdsl synth: learn a generator from a prototype and synthesise efficient networks (FermiNets) that meet --req.

Exit status: 0 when a FermiNet meets every requirement, 3 when the run finished but none does (the least-violating
ones are in the report), 2 on bad input (nothing is written then), 130 when interrupted (--resume continues)."""

from __future__ import annotations

from pathlib import Path

from gensynth.executor import RETRIES
from netdsl.cli import arguments
from netdsl.cli.console import console as make_console
from netdsl.cli.console import escape

NOT_MET = 3  # the exit status of a finished run in which no network meets every requirement


def register(sub) -> None:
    p = sub.add_parser("synth", help="generative synthesis from a prototype", description=__doc__)
    arguments.add_network_arguments(p, optional=True)
    arguments.add_data_arguments(p, task=False)
    p.add_argument("--req", action="append", default=[], metavar="REQ",
                   help='a requirement such as "acc>=0.9", "macs<=2M", "params<200K", "latency<=1.5ms"; quote each '
                        "one, the shell reads > and < as redirections (repeatable; default: none, the utility alone)")
    p.add_argument("--out", help="run directory (default runs/<network>-synth)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the interrupted run in DIR with its own settings; FILE may be left out, the run "
                        "keeps its prototype; only --workers and --device may differ (each change is reported), any "
                        "other setting that differs is an error (default: start a new run in --out)")
    p.add_argument("--cycles", type=int, default=4, help="generator update cycles (default 4)")
    p.add_argument("--per-cycle", type=int, default=6, help="candidates per cycle (default 6)")
    p.add_argument("--workers", type=int, default=None,
                   help="candidates evaluated at once: local worker processes (default: one per CPU core, at most 8; "
                        "1 on a GPU; 1 runs in this process); with --executor ray at most this many tasks (default: "
                        "as many as the cluster has room for). Each candidate runs on one thread, so the results do "
                        "not depend on it")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where candidates run: this machine (default) or a Ray cluster, one task per candidate "
                        "(needs pip install 'netdsl[ray]'; see docs/distributed.md)")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="the Ray cluster to join (auto: the one started on this machine with `ray start`; "
                        "default: start a local Ray instance)")
    p.add_argument("--cpus-per-candidate", type=float, default=None, metavar="C",
                   help="Ray: CPUs each candidate asks for, and its torch threads (default 1)")
    p.add_argument("--gpus-per-candidate", type=float, default=None, metavar="G",
                   help="Ray: GPUs each candidate asks for; fractions share a GPU, e.g. 0.25 (default 0)")
    p.add_argument("--retries", type=int, default=RETRIES,
                   help="times a candidate whose worker or node died is tried again before it is journaled as "
                        f"failed (default {RETRIES})")
    p.add_argument("--utility", choices=["netscore", "density", "accuracy"], default="netscore",
                   help="what synthesis maximises under the requirements: NetScore (default), information "
                        "density, or the accuracy (mIoU, mAP@0.5) itself")
    arguments.add_seed_argument(p, "the run's seed: the prototype's initial weights and every candidate's seed")
    p.add_argument("--weights", help="trained prototype weights, which skip training the prototype (default: train it "
                   "for --prototype-epochs)")
    p.add_argument("--prototype-epochs", type=int, default=8, help="epochs of training the prototype (default 8)")
    p.add_argument("--images", type=int, default=12000, help="fine-tune images per search candidate (default 12000)")
    p.add_argument("--prototype-lr", type=float,
                   help="the prototype's learning rate (default: the optimizer's, 0.05 with sgd, 0.002 with adamw)")
    arguments.add_lr_argument(p, "search candidates' fine-tuning", "0.02 with sgd, 0.001 with adamw")
    p.add_argument("--final-lr", type=float,
                   help="finalists' learning rate (default: the fine-tuning rate when they inherit, the optimizer's "
                        "when they train from scratch)")
    arguments.add_recipe_arguments(p)
    p.add_argument("--distill", type=float, default=0.0, metavar="A",
                   help="classification: weight in [0, 1] of learning the trained prototype's soft outputs in every "
                        "fine-tune (knowledge distillation, temperature 4; default 0: labels only)")
    p.add_argument("--final-from", choices=["inherit", "scratch"], default="inherit",
                   help="finalists fine-tune the prototype's inherited weights (default; lr 0.02 with sgd) or train "
                        "from scratch at the standard rate (lr 0.05 with sgd): give scratch as many --final-epochs "
                        "as the prototype's training plus the fine-tune to compare them at the same budget")
    p.add_argument("--search-from", choices=["inherit", "scratch"], default="inherit",
                   help="search candidates fine-tune inherited weights (default) or train from scratch for their "
                        "short budget, to score what --final-from scratch will do")
    p.add_argument("--finalists", type=int, default=2, help="networks trained fully at the end (default 2)")
    p.add_argument("--final-epochs", type=int, default=10, help="epochs of training each finalist (default 10)")
    p.add_argument("--min-fraction", type=float, default=0.1,
                   help="fewest channels a layer keeps, as a share (default 0.1)")
    p.add_argument("--factorize", type=float, default=None, metavar="P",
                   help="the generator's starting probability of rewriting each k x k conv as depthwise k x k + "
                        "1 x 1 (learned from there; default 0: never; see docs/synthesis.md)")
    p.add_argument("--stride", type=float, default=None, metavar="P",
                   help="the generator's starting probability of giving each stride-1 conv stride 2, halving the "
                        "resolution after it where the network allows (learned from there; default 0: never; "
                        "0.5 with --utility accuracy is the advice for a MAC budget, see docs/synthesis.md)")
    p.add_argument("--export", choices=["onnx", "onnx-int8"], default=None,
                   help="also export each FermiNet as fermi-N.onnx (onnx-int8: and fermi-N.int8.onnx, quantized on 512 "
                        "training images), scored on test from the files and timed with onnxruntime in report.md "
                        "(default: no export)")
    p.add_argument("--widen", type=float, default=None, metavar="F",
                   help="let the generator grow each free layer up to F times the prototype's channels (new channels "
                        "start untrained; default 1: it only narrows), so MACs saved by strides or dropped blocks "
                        "can buy width")
    p.add_argument("--screen", type=int, default=1, metavar="N",
                   help="from the second cycle on, draw N samples from the generator per candidate and evaluate the "
                        "ones a predictor fitted on the journal expects to improve most; the finalists are then the "
                        "best predicted candidates, not the best single scores (default 1: off)")
    p.add_argument("--no-learn", dest="learn", action="store_false",
                   help="keep the generator at its starting state, so every cycle draws from the same distribution: "
                        "random search in the generator's space, the ablation that shows what learning adds (default: off, "
                        "θG learns)")
    p.add_argument("--update-rate", type=float, default=None, metavar="R",
                   help="how far θG moves each cycle toward what its candidates showed, above 0 and up to 1 (all "
                        "the way; default 0.5; --no-learn keeps it still)")
    p.add_argument("--update-temperature", type=float, default=None, metavar="T",
                   help="how much the best candidates of a cycle outweigh the others when θG moves: the softmax "
                        "temperature as a share of their utilities' spread (default 1; 0.25 follows the best closely)")
    p.add_argument("--latency-model", metavar="FILE",
                   help="the target's latency model (netdsl profile): with --req latency<=X every sample is "
                        "predicted to meet X (default: none; then a latency requirement profiles this machine first)")
    arguments.add_latency_arguments(p, runtime=None)
    p.add_argument("--round-to", type=int, default=1, metavar="N",
                   help="keep channel counts at multiples of N where a layer has that many (hardware runs "
                        "channels in blocks, e.g. 8 or 16; default 1: any count)")
    arguments.add_device_argument(p)
    arguments.add_json_argument(p)
    p.set_defaults(run=run, parser=p)


def config_from_args(args, g=None):
    """The SynthConfig the arguments ask for (g: the prototype, whose input shape image folders are decoded to);
    NetError (located for --req) on anything out of range."""
    from gensynth.config import SynthConfig
    from gensynth.executor import default_workers
    from gensynth.inquisitor import Budget
    from gensynth.requirements import parse_requirements

    parse_requirements(args.req)  # located errors before anything else
    runtime, threads = args.runtime, args.threads
    if args.latency_model:  # the model's runtime and threads unless asked otherwise (then the run refuses it)
        from gensynth.latency.model import LatencyModel

        model = LatencyModel.load(args.latency_model)
        runtime = runtime if runtime is not None else model.runtime
        threads = threads if threads is not None else model.threads
    budget = Budget(images=args.images, final_epochs=args.final_epochs, lr=args.lr, final_lr=args.final_lr,
                    batch_size=args.batch_size, optimizer=args.optimizer, augment=args.augment,
                    warmup_epochs=args.warmup_epochs, device=args.device,
                    distill=args.distill, final_init=args.final_from, search_init=args.search_from,
                    latency_runtime=runtime or "torch", latency_threads=1 if threads is None else threads,
                    latency_clock=args.clock)
    cfg = SynthConfig(data=args.data, requirements=list(args.req), cycles=args.cycles, per_cycle=args.per_cycle,
                      budget=budget, workers=args.workers if args.workers is not None else default_workers(args.device),
                      utility=args.utility, seed=args.seed,
                      prototype_epochs=args.prototype_epochs, prototype_lr=args.prototype_lr,
                      prototype_weights=args.weights, finalists=args.finalists, min_fraction=args.min_fraction,
                      export=args.export, learn=args.learn, screen=args.screen, round_to=args.round_to,
                      latency_model=args.latency_model,
                      **{name: getattr(args, name) for name in ("factorize", "stride", "widen", "update_rate",
                                                                "update_temperature")
                         if getattr(args, name) is not None},
                      data_options={**({"limit_train": args.limit_train} if args.limit_train else {}),
                                    **({"input_shape": list(arguments.input_shape(g))} if g is not None else {})})
    cfg.validate()
    return cfg


def executor_from_args(args, device: str):
    """The executor --executor names, with its options (each Ray option refused without --executor ray)."""
    from compiler.diagnostics import NetError
    from gensynth.executor import default_workers, local_executor

    if args.executor != "ray":
        for option in ("address", "cpus_per_candidate", "gpus_per_candidate"):
            if getattr(args, option) is not None:
                raise NetError(f"--{option.replace('_', '-')} is an option of --executor ray",
                               notes=["add --executor ray, or leave it out"])
    cpus = 1.0 if args.cpus_per_candidate is None else args.cpus_per_candidate
    gpus = 0.0 if args.gpus_per_candidate is None else args.gpus_per_candidate
    if cpus <= 0:
        raise NetError(f"--cpus-per-candidate must be above 0, got {cpus:g}")
    if gpus < 0:
        raise NetError(f"--gpus-per-candidate must be 0 or more, got {gpus:g}")
    if args.retries < 0:
        raise NetError(f"--retries must be 0 or more, got {args.retries}")
    if args.executor == "local":
        return local_executor(args.workers if args.workers is not None else default_workers(device), device,
                              retries=args.retries)
    from gensynth.ray_executor import RayExecutor  # imports no Ray until it starts

    return RayExecutor(address=args.address, cpus_per_candidate=cpus, gpus_per_candidate=gpus, workers=args.workers,
                       retries=args.retries, device=device)


def prototype_from_args(args):
    """The prototype: FILE, or with --resume DIR and no FILE, the one the run's journal keeps."""
    from compiler.diagnostics import NetError

    if args.file is not None:
        return arguments.load_from_args(args)
    if not args.resume:
        raise NetError("netdsl synth needs the prototype's .net FILE (or --resume DIR to continue a run)",
                       notes=["see `netdsl synth --help`"])
    if args.network or args.param:
        raise NetError("--network and --param choose a network from FILE; a resumed run keeps its prototype")
    from gensynth.loop import stored_prototype
    from netdsl.loader import load_network_text

    return load_network_text(stored_prototype(args.resume), f"{args.resume}/prototype.net")


def explicit_settings(args, cfg, g=None) -> set[str]:
    """The settings (gensynth.config.flat_settings names) this command line sets to something else than the defaults."""
    from gensynth.config import flat_settings

    defaults = flat_settings(config_from_args(args.parser.parse_args([args.file] if args.file else []), g))
    return {k for k, v in flat_settings(cfg).items() if v != defaults.get(k)}


def run(args) -> int:
    from gensynth.config import run_config
    from gensynth.loop import synthesize
    from netdsl.cli.synth_view import SynthView

    g = prototype_from_args(args)
    cfg = config_from_args(args, g)
    out = Path(args.resume or args.out or f"runs/{g.graph['name']}-synth")
    explicit = explicit_settings(args, cfg, g) if args.resume else None
    executor = executor_from_args(args, (run_config(out, cfg, explicit)[0] if args.resume else cfg).budget.device)
    executor.start()  # a cluster that cannot run the candidates is an error before the progress display
    view = SynthView(make_console(stderr=True), cfg.utility, executor.name, args.retries)
    if args.json:  # what resuming keeps or changes, and notes, are said even so (on stderr)
        result = synthesize(g, cfg, out, resume=bool(args.resume), executor=executor, explicit=explicit,
                            on_event=lambda kind, payload: view(kind, payload) if kind in ("resume", "note") else None)
    else:
        with view:
            result = synthesize(g, cfg, out, resume=bool(args.resume), executor=executor, explicit=explicit,
                                on_event=view)
    meeting = [r for r in result.finals if r.meets]
    if args.json:
        arguments.print_json({"out": str(result.out), "prototype": result.prototype.summary(),
                              "fermi_nets": [r.summary() for r in result.finals],
                              "candidates": len(result.candidates), "met": bool(meeting),
                              "failed": [{"key": r.key, "attempts": r.attempts, "error": r.error}
                                         for r in result.failed],
                              "executor": result.executor,
                              "generator": str(result.out / "generator.json"), "report": str(result.report),
                              "exported": [e.to_json() for e in result.exported]})
        return 0 if meeting else NOT_MET
    out_console = make_console()
    if meeting:
        out_console.print(f"[green]{len(meeting)} FermiNet(s) meet every requirement[/green]; see "
                          f"{escape(str(result.report))}")
        return 0
    out_console.print("[red]no network met every requirement[/red] (exit status 3); the least-violating ones are in "
                      f"{escape(str(result.report))}")
    for r in sorted(result.finals, key=lambda r: r.violation)[:3]:
        out_console.print(f"  {r.name}: missed {', '.join(r.missed)}", markup=False)
    return NOT_MET
