"""Synthesis under a latency requirement against a MAC budget and uniform width at the same latency, and what
--round-to 8 does to latency (issue #20).

    .venv/bin/python bench/synth_latency.py            # Fashion-MNIST, onnxruntime (hours on 2 shared cores)
    .venv/bin/python bench/synth_latency.py --quick    # a smoke run: tiny data and budget (minutes)
    .venv/bin/python bench/synth_latency.py --seeds 0,1,2   # three seeds, each its own prototype and runs

Prototype: examples/fashion_cnn.net, trained P epochs (bench/peer_methods.prototype, cached under --out). L = half
the prototype's measured latency on --runtime (1 thread). A latency model is profiled on this machine (netdsl
profile). Methods, each with one finalist trained from scratch P + F epochs as uniform width is (--final-from
inherit: fine-tuned F epochs from the prototype), synthesis with strided convs in its space (--stride 0.5, as in
bench/peers.py; --stride 0 for widths and blocks only):

  latency       netdsl synth --req latency<=L --latency-model M --utility accuracy
  latency-r8    the same with --round-to 8
  macs          netdsl synth --req macs<=B --utility accuracy, B = the MACs of the uniform-width network whose
                measured latency is L (the MAC budget a user would derive from the latency target)
  uniform       every free group scaled by one factor, the widest whose measured latency is <= L

Every final network's latency is then measured side by side (interleaved); the table gives it with its spread,
its prediction, MACs and accuracy. A second table needs no training: at the MAC budget B, the initial generator's
samples (seeds 0..K-1, filling the budget) against the same networks with every width at the nearest multiple of
8 (equal MACs within a few percent), measured on both runtimes and predicted by their latency models. Prints the tables and writes the bench:synth-latency section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import DOC, markers, write_section  # noqa: E402
from peer_methods import (  # noqa: E402
    MIN_FRACTION,
    Bench,
    log,
    prototype,
    record,
    row_widths,
    train_from_scratch,
    width_rows,
    write_json,
)

from compiler.backend.lower import lower_to_torch  # noqa: E402
from compiler.cost import network_cost  # noqa: E402
from compiler.rewrite.coupling import apply_widths, channel_plan  # noqa: E402
from gensynth.generator import initial_state, sample  # noqa: E402
from gensynth.latency.measure import measure, measure_network, runner  # noqa: E402
from gensynth.latency.model import LatencyModel  # noqa: E402
from gensynth.latency.profile import ProfileOptions, profile  # noqa: E402
from gensynth.loop import JOURNAL, SynthConfig, synthesize  # noqa: E402
from gensynth.requirements import parse_requirements  # noqa: E402
from netdsl.loader import load_network, load_network_text  # noqa: E402

START, END = markers("synth-latency")
FULL = {"limit_train": 20000, "epochs_prototype": 6, "epochs_final": 3, "cycles": 3, "per_cycle": 4, "images": 3000,
        "samples": 24, "pairs": 12}
QUICK = {"limit_train": 3000, "epochs_prototype": 1, "epochs_final": 1, "cycles": 1, "per_cycle": 2, "images": 500,
         "samples": 6, "pairs": 4}
METHODS = ("latency", "latency-r8", "macs", "uniform")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    for k, v in FULL.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=int, help=f"(full: {v})")
    p.add_argument("--runtime", choices=["torch", "onnxruntime"], default="onnxruntime")
    p.add_argument("--stride", type=float, default=0.5,
                   help="synthesis: θG's starting probability of striding each stridable conv (netdsl synth --stride; "
                        "default 0.5, the setting of the peers benchmark; 0: widths and blocks only)")
    p.add_argument("--final-from", choices=["inherit", "scratch"], default="scratch",
                   help="synthesis finalists: fine-tune F epochs from the prototype, or train from scratch P + F epochs "
                        "as uniform width does (default scratch)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, each with its own prototype and runs "
                                                "(default 0); the table gives the mean and spread over them")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/synth-latency")
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args(argv)
    args.seeds = [int(x) for x in args.seeds.split(",")]
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def latency_model(g, args, runtime: str, out: Path) -> LatencyModel:
    """This machine's latency model of the prototype on a runtime (profiled once, kept in --out)."""
    path = out / f"latency-{runtime}-n{args.samples}{'-st' if args.stride else ''}.json"
    if path.exists():
        return LatencyModel.load(path)
    log(f"profiling {runtime}")
    model, accuracy = profile(g, ProfileOptions(runtime=runtime, samples=args.samples, stride=args.stride > 0,
                                                fit_networks=max(8, 2 * args.samples // 3),
                                                check_networks=4 if args.quick else 12))
    log(f"  {len(model.units)} kinds of layer in {model.profile_seconds / 60:.1f} min; held out: "
        f"{accuracy.within_10:.0%} within ±10%")
    model.save(path)
    return model


def uniform_at_latency(b: Bench, target: float, runtime: str) -> tuple[dict, float]:
    """The widest uniform width factor whose measured latency is <= target (bisection on measurements)."""
    n = len(b.space.groups)

    def widths(f: float) -> dict:
        return row_widths(b, width_rows(b, np.full((1, n), f))[0])

    def latency(f: float) -> float:
        return measure_network(apply_widths(b.net, widths(f), b.plan), runtime, max_seconds=3.0).median

    lo, hi = MIN_FRACTION, 1.0
    for _ in range(8):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if latency(mid) <= target else (lo, mid)
    return widths(lo), lo


def synth_run(b: Bench, proto: dict, name: str, reqs: list[str], args, seed: int, model_path: Path | None = None,
              round_to: int = 1) -> dict:
    out = b.out / f"{name}{tag(args)}-s{seed}"
    cfg = SynthConfig(data=b.data, requirements=reqs, cycles=b.cycles, per_cycle=b.per_cycle,
                      budget=dataclasses.replace(b.budget(), latency_runtime=args.runtime), stride=b.stride,
                      seed=seed, utility="accuracy", prototype_weights=proto["weights"], finalists=1,
                      min_fraction=MIN_FRACTION, data_options=b.data_options, round_to=round_to,
                      latency_model=str(model_path) if model_path else None)
    log(f"{name}: synth {' '.join(reqs)}{f' --round-to {round_to}' if round_to > 1 else ''}")
    result = synthesize(b.net, cfg, out, resume=(out / JOURNAL).exists(),
                        on_event=lambda kind, p: log(f"  {kind} {p.key}: {p.macs / 1e6:.2f} M MACs, val "
                                                     f"{p.score:.2%}, {p.latency * 1e3:.3f} ms")
                        if kind in ("candidate", "final") else None)
    final = result.finals[0]
    g = load_network(str(out / f"{final.name}.net"))
    return record(name, g, final.val["acc"], final.test["acc"], 0.0, run=str(out))


def tag(args) -> str:
    """What tells this configuration's synthesis runs and results apart from others' in --out."""
    return (f"-st{args.stride:g}" if args.stride else "") + ("-scratch" if args.final_from == "scratch" else "")


def rounded(b: Bench, g, widths: dict[str, int], step: int = 8):
    """The sample with every free group's width at a multiple of step, rounded down or up per group so that the
    MACs come closest to the sample's (every combination tried): about the same MACs, counts hardware likes."""
    plan = channel_plan(g)
    proto = {m: grp for grp in b.space.groups for m in grp.members}
    options = {}
    for grp in plan.free_groups():
        p = next((proto[m] for m in grp.members if m in proto), None)
        if p is not None and str(p.id) in widths and p.channels >= step:
            w, top = widths[str(p.id)], p.channels // step * step
            options[grp.id] = sorted({min(max(step, w // step * step), top), min(max(step, -(-w // step) * step), top)})
    target = network_cost(g).macs
    best = None
    for combo in itertools.product(*options.values()):
        child = apply_widths(g, dict(zip(options, combo)), plan)
        gap = abs(network_cost(child).macs - target)
        if best is None or gap < best[0]:
            best = (gap, child)
    return best[1]


def rounding_pairs(b: Bench, budget: int, args, models: dict[str, LatencyModel]) -> list[dict]:
    """At one MAC budget, the initial generator's samples and the same networks with every width at the nearest
    multiple of 8 (equal MACs within a few percent), measured side by side on each runtime and predicted."""
    reqs = parse_requirements([f"macs<={budget}"])
    state = initial_state(b.space, reqs, utility="accuracy")
    plain = [sample(state, b.space, seed, reqs) for seed in range(args.pairs)]
    pairs = [(s.graph, rounded(b, s.graph, s.widths)) for s in plain]
    macs = [network_cost(r).macs / network_cost(p).macs for p, r in pairs]
    rows = []
    for runtime, model in models.items():
        lat = measure([runner(g, runtime) for pair in pairs for g in pair], max_seconds=30.0)
        ratios = [lat[2 * k + 1].median / lat[2 * k].median for k in range(len(pairs))]
        predicted = [model.predict(r) / model.predict(p) for p, r in pairs]
        rows.append({"runtime": runtime, "pairs": len(pairs), "budget": budget,
                     "plain_ms": statistics.median(x.median for x in lat[0::2]) * 1e3,
                     "rounded_ms": statistics.median(x.median for x in lat[1::2]) * 1e3,
                     "ratio": statistics.median(ratios), "ratio_range": (min(ratios), max(ratios)),
                     "predicted_ratio": statistics.median(predicted), "macs_ratio": statistics.median(macs),
                     "per_mac": statistics.median(r / m for r, m in zip(ratios, macs)),
                     "macs_range": (min(macs), max(macs))})
        log(f"widths at multiples of 8, {budget / 1e6:.2f} M MACs, {runtime}: {rows[-1]}")
    return rows


@dataclasses.dataclass
class SeedRun:
    """One seed's networks: each method's record (with its predicted latency), its measured latency, and L."""

    seed: int
    target: float  # L, seconds
    budget: int  # B, MACs
    results: dict
    latency: dict


def run_seed(b: Bench, net, args, seed: int, models: dict[str, LatencyModel], model_path: Path) -> SeedRun:
    """Train, synthesise and measure everything of one seed (cached in --out: a rerun only measures)."""
    out = b.out / args.runtime
    out.mkdir(parents=True, exist_ok=True)
    proto = prototype(b, seed)
    state_file = out / f"targets-s{seed}.json"
    if state_file.exists():
        targets = json.loads(state_file.read_text())
    else:
        proto_latency = measure_network(net, args.runtime, max_seconds=10.0).median
        widths, factor = uniform_at_latency(b, proto_latency / 2, args.runtime)
        targets = {"prototype": proto_latency, "uniform_widths": {str(k): v for k, v in widths.items()},
                   "factor": factor}
        write_json(state_file, targets)
    target = targets["prototype"] / 2
    uniform_g = apply_widths(net, {int(k): v for k, v in targets["uniform_widths"].items()}, b.plan)
    budget = network_cost(uniform_g).macs
    log(f"seed {seed}: prototype {targets['prototype'] * 1e3:.3f} ms, L = {target * 1e3:.3f} ms, uniform factor "
        f"{targets['factor']:.3f} at {budget / 1e6:.2f} M MACs")
    results = {"prototype": {**proto, "latency": targets["prototype"]}}
    done = out / f"results{tag(args)}-s{seed}.json"
    stored = json.loads(done.read_text()) if done.exists() else {}
    req = f"latency<={target * 1e3:.6f}ms"
    runs = {"latency": lambda: synth_run(b, proto, f"{args.runtime}-latency", [req], args, seed, model_path),
            "latency-r8": lambda: synth_run(b, proto, f"{args.runtime}-latency-r8", [req], args, seed, model_path, 8),
            "macs": lambda: synth_run(b, proto, f"{args.runtime}-macs", [f"macs<={budget}"], args, seed),
            "uniform": lambda: record("uniform", uniform_g, *train_from_scratch(b, lower_to_torch(uniform_g), seed),
                                      0.0)}
    for name, run in runs.items():
        if name not in stored:
            stored[name] = run()
            write_json(done, stored)
    results.update(stored)
    names = ["prototype", *METHODS]
    graphs = [net if n == "prototype" else load_network_text(results[n]["net"]) for n in names]
    for n, g in zip(names, graphs):
        results[n]["predicted"] = models[args.runtime].predict(g)
    measured = measure([runner(g, args.runtime) for g in graphs], max_seconds=60.0)
    lat = dict(zip(names, measured))
    for n in names:
        log(f"  {n}: {lat[n].text()}, {results[n]['macs'] / 1e6:.2f} M MACs, test {results[n]['test_acc']:.2%}")
    return SeedRun(seed, target, budget, results, lat)


def spread(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """'90.01 ± 0.07' (mean ± sample sd over seeds; the mean alone for one seed)."""
    mean = statistics.fmean(values) * scale
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values) * scale:.{digits}f}" if len(values) > 1 else "")


def section(command: str, args, runs: list[SeedRun], pairs: list, before: str) -> str:
    ms = 1e3
    first = runs[0]
    targets = " / ".join(f"{r.target * ms:.3f}" for r in runs)
    protos = " / ".join(f"{r.results['prototype']['latency'] * ms:.3f}" for r in runs)
    lines = [START, "## Synthesis under a latency requirement (`bench/synth_latency.py`)", "",
             f"Command: `{command}`  ", f"Load average (1/5/15 min) before / after: {before} — {load()}  ",
             f"Date: {datetime.date.today().isoformat()}", "",
             f"Prototype examples/fashion_cnn.net trained {args.epochs_prototype} epochs on {args.limit_train:,} "
             f"Fashion-MNIST images (10% validation), one per seed ({', '.join(str(r.seed) for r in runs)}): "
             f"{protos} ms on {args.runtime} (1 thread), so L = {targets} ms. Synthesis: {args.cycles} x "
             f"{args.per_cycle} candidates on {args.images:,} images each, --utility accuracy, "
             + (f"each stridable conv strided with starting probability {args.stride:g} (`--stride`), " if args.stride
                else "widths and blocks only, ")
             + ("one finalist trained from scratch " if args.final_from == "scratch" else
                f"one finalist fine-tuned {args.epochs_final} epochs from the prototype; uniform width trained from scratch ")
             + f"{args.epochs_prototype + args.epochs_final} epochs"
             + (", as is uniform width" if args.final_from == "scratch" else "")
             + f". The MAC budget B = {first.budget / 1e6:.2f} M is the uniform-width network's at latency L. "
             "Latency: each seed's networks measured side by side (the median of each, per seed); predicted: by the "
             "latency model profiled on this machine. Accuracy: mean ± sample sd over the seeds; test accuracy is "
             "reported only, every choice used validation.", "",
             "| method | MACs | params | latency ms (per seed) | predicted ms | meets latency<=L | val acc % | test acc % |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name in ("prototype", *METHODS):
        recs = [r.results[name] for r in runs]
        meets = sum(r.latency[name].median <= r.target for r in runs)
        measured = " / ".join(f"{r.latency[name].median * ms:.3f}" for r in runs)
        predicted = " / ".join(f"{x['predicted'] * ms:.3f}" for x in recs)
        lines.append(f"| {name} | {statistics.fmean(x['macs'] for x in recs) / 1e6:.2f} M | "
                     f"{statistics.fmean(x['params'] for x in recs) / 1e3:.1f} K | {measured} | {predicted} | "
                     f"{meets} of {len(runs)} | {spread([x['val_acc'] for x in recs])} | "
                     f"{spread([x['test_acc'] for x in recs])} |")
    lines += ["", f"Channels at multiples of 8 at equal MACs (no training): the initial generator's samples at B = "
                  f"{first.budget / 1e6:.2f} M MACs (seeds 0..{args.pairs - 1}), and the same networks with every width at "
                  "the nearest multiple of 8, measured side by side; ratio = rounded / unrounded latency (median over "
                  "pairs, range in brackets); predicted = the latency model's ratio.", "",
              "| runtime | pairs | unrounded ms | rounded ms | measured ratio | predicted ratio | MACs ratio | "
              "latency per MAC ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in pairs:
        lines.append(f"| {p['runtime']} | {p['pairs']} | {p['plain_ms']:.3f} | {p['rounded_ms']:.3f} | "
                     f"{p['ratio']:.2f} ({p['ratio_range'][0]:.2f}-{p['ratio_range'][1]:.2f}) | "
                     f"{p['predicted_ratio']:.2f} | {p['macs_ratio']:.3f} ({p['macs_range'][0]:.3f}-"
                     f"{p['macs_range'][1]:.3f}) | {p['per_mac']:.2f} |")
    return "\n".join(lines + [END])


def main(argv=None) -> int:
    args = parse(argv)
    command = shlex.join([".venv/bin/python", "bench/synth_latency.py", *(sys.argv[1:] if argv is None else argv)])
    before = load()
    net = load_network(str(ROOT / "examples" / "fashion_cnn.net"))
    b = Bench(net=net, data=args.data, limit_train=args.limit_train, prototype_epochs=args.epochs_prototype,
              final_epochs=args.epochs_final, cycles=args.cycles, per_cycle=args.per_cycle, images=args.images,
              device=args.device, root=Path(args.out), stride=args.stride, final_from=args.final_from)
    models = {rt: latency_model(net, args, rt, b.out) for rt in ("torch", "onnxruntime")}
    model_path = b.out / f"latency-{args.runtime}-n{args.samples}{'-st' if args.stride else ''}.json"
    runs = [run_seed(b, net, args, seed, models, model_path) for seed in args.seeds]
    pairs = rounding_pairs(b, runs[0].budget, args, models)
    text = section(command, args, runs, pairs, before)
    print(text)
    if not args.no_docs:
        write_section(text)
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
