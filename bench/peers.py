"""netdsl synthesis against the peers a user would pick instead, side by side (issue #7).

    python bench/peers.py --quick      # smoke run: 1 seed, 4x only, small data and budget (< 10 min on 2 cores)
    python bench/peers.py              # full: 3 seeds, 2x/4x/8x fewer MACs (hours on 2 cores; prints an estimate)
    python bench/peers.py --estimate   # only the estimate of the work still to do

Prototype: examples/fashion_cnn.net (21.9 M MACs). Data: Fashion-MNIST (--data), its training pool cut to
--limit-train images, of which 10% is the validation split; the full 10,000-image test split. Every choice
(which candidate, which random network) is made on the validation split; test accuracy is only reported.

Methods, for each MAC target T = prototype MACs / k (k in --targets) and each seed:

  synth       netdsl generative synthesis (gensynth.loop.synthesize, --req macs<=T, --utility accuracy:
              the best validation accuracy under the budget, which is what the peers are asked for), one finalist
  tp-l2       Torch-Pruning (DepGraph) on the lowered prototype, L2 magnitude importance, then fine-tuned
  tp-taylor   Torch-Pruning, first-order Taylor importance (a backward on a 128-image training batch before each step)
  uniform     every free channel group scaled by one factor (the largest with <= T MACs), trained from scratch
  gen-random  netdsl synthesis exactly as synth, but with θG never updated (netdsl synth --no-learn): every
              candidate is drawn from θG's starting distribution (the same rewrites, projection onto the budget,
              candidate seeds, scoring and finalist choice), so synth minus gen-random is what learning adds
  random      N random per-group widths with MACs in [0.9 T, T], inheriting the prototype's highest-L2
              channels, each fine-tuned like a synthesis candidate; the best on validation gets the final training

Budget rules (per seed; every method gets the same final-training budget per final network):

  - One prototype per seed, trained P epochs with the standard recipe (TrainConfig defaults: SGD + Nesterov,
    lr 0.05, cosine, batch 128). synth, tp-* and random start from it; its weights are cached under
    OUT/prototypes/ and its P epochs are shared, so they are counted once, not per method.
  - Every final network gets F epochs of fine-tuning (lr 0.02, cosine: what inquire() gives a finalist).
    uniform has no prototype to inherit from, so it trains from scratch for P + F epochs.
  - Search, counted as extra: synth evaluates N = cycles x per-cycle candidates, each fine-tuned one pass over
    --images training images; random evaluates the same N with the same per-candidate fine-tune (same seeds, so
    the same image subsets). tp-* prunes in 1% steps (Taylor: one 128-image backward per step); uniform
    searches nothing.
  - MACs and parameters are netdsl's cost model for every method (Torch-Pruning stops at the first step whose
    widths have <= T MACs by that model; its own count_ops_and_params, which also counts BN, ReLU, pooling
    and bias ops, is recorded beside it).

Also --methods tp-l2-global / tp-taylor-global: Torch-Pruning with global_pruning=True (one importance ranking
over all layers instead of the default per-layer ranking, so layers shrink by different amounts).

Modes. Full (the defaults): seeds 0,1,2; targets 2,4,8; --limit-train 20000 (18,000 train / 2,000 validation);
P = 6, F = 3; 4 cycles x 6 candidates, 4,000 fine-tune images each: 45 results, about 2 h on an idle 2-core CPU
by --estimate (the whole 60k training set and P = 10 would take several times that). --quick: seed 0, target 4,
--limit-train 5000, P = 2, F = 1, 2 x 4 candidates on 1,500 images: about 4 min idle (6.3 min measured on a
2-core machine shared with two test suites). Any setting can be overridden; each configuration keeps its own
results folder, and the prototypes are shared between configurations with the same data and P.

Every (method, target, seed) result is written to OUT/<configuration>/results/ as soon as it is done and is
skipped on a rerun; synthesis runs resume from their journals and random search from its candidate log. So an
interrupted run loses at most the network being trained. The table is printed and written to docs/benchmarks.md
between the bench:peers markers, the plot to docs/peers.png (accuracy vs MACs; error bars = standard deviation
over seeds; the prototype as a star). Latency: batch-1 CPU, every final network timed interleaved with the
others, so machine load affects them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import DOC, markers, write_section  # noqa: E402
from peer_methods import GENERATING, INQUIRING  # noqa: E402

from gensynth.generator import ALLOCATION_SPREAD, FACTORIZE  # noqa: E402
from gensynth.update import UPDATE_RATE  # noqa: E402

LABELS = {
    "synth": "netdsl synthesis",
    "tp-l2": "Torch-Pruning, L2 magnitude",
    "tp-taylor": "Torch-Pruning, Taylor",
    "tp-l2-global": "Torch-Pruning, L2, global ranking",
    "tp-taylor-global": "Torch-Pruning, Taylor, global ranking",
    "uniform": "uniform width, from scratch",
    "random": "random width search",
    "gen-random": "random search in the generator's space",
}
DEFAULT_METHODS = "synth,gen-random,tp-l2,tp-taylor,uniform,random"
# Synthesis strides convs (netdsl synth --stride) with this starting probability here: the setting docs/synthesis.md
# advises for a fixed MAC budget; netdsl's own default (0) suits its default NetScore utility.
PEERS_STRIDE = 0.5
FULL = {"seeds": "0,1,2", "targets": "2,4,8", "epochs_prototype": 6, "epochs_final": 3, "limit_train": 20000,
        "cycles": 4, "per_cycle": 6, "images": 4000}
QUICK = {"seeds": "0", "targets": "4", "epochs_prototype": 2, "epochs_final": 1, "limit_train": 5000,
         "cycles": 2, "per_cycle": 4, "images": 1500}
# The up-front estimate, for an idle 2-core CPU: the prototype trains at PROTO_RATE images/s (bench/train_fashion.py
# measured 830-870), a network with m MACs about sqrt(21.9 M / m) times faster; fixed costs in seconds per search
# candidate (lowering, validation, probing, latency), per result (validation and 10k-image test evaluation),
# per synthesis run (it re-measures the prototype and writes its report) and per Taylor pruning (a backward per
# step). Calibrated against the CPU time of the quick run; a machine shared with other jobs takes longer.
PROTO_RATE, CANDIDATE_S, RESULT_S, SYNTH_S, TAYLOR_S = 850.0, 6.0, 8.0, 15.0, 20.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-run defaults: " + json.dumps(QUICK))
    ap.add_argument("--seeds", help=f"comma-separated seeds (full: {FULL['seeds']})")
    ap.add_argument("--targets", help=f"MAC reduction factors (full: {FULL['targets']})")
    ap.add_argument("--epochs-prototype", type=int, help=f"P (full: {FULL['epochs_prototype']})")
    ap.add_argument("--epochs-final", type=int, help=f"F (full: {FULL['epochs_final']})")
    ap.add_argument("--limit-train", type=int, help=f"train+val pool size, 0 = all 60k (full: {FULL['limit_train']})")
    ap.add_argument("--cycles", type=int, help=f"synthesis cycles (full: {FULL['cycles']})")
    ap.add_argument("--synth-utility", choices=["accuracy", "netscore", "density"], default="accuracy",
                    help="what synthesis maximises under macs<=T (default accuracy: what the peers are asked for)")
    ap.add_argument("--distill", type=float, default=0.0,
                    help="synth and random search: distillation weight of every fine-tune (netdsl synth --distill)")
    ap.add_argument("--final-from", choices=["inherit", "scratch"], default="inherit",
                    help="synth and random search: finalists fine-tune inherited weights F epochs (default) or train "
                         "from scratch P + F epochs, as uniform width does (netdsl synth --final-from)")
    ap.add_argument("--search-from", choices=["inherit", "scratch"], default="inherit",
                    help="synth and random search: candidates fine-tune inherited weights (default) or train from "
                         "scratch while searching (netdsl synth --search-from)")
    ap.add_argument("--allocation-spread", type=float, default=ALLOCATION_SPREAD,
                    help="synthesis: per-sample sd of each channel group's log width factor (the generator's exploration)")
    ap.add_argument("--factorize", type=float, default=FACTORIZE,
                    help="synthesis: the generator's starting probability of factorizing each conv (netdsl synth "
                         "--factorize)")
    ap.add_argument("--stride", type=float, default=PEERS_STRIDE,
                    help="synthesis: the generator's starting probability of giving each conv stride 2 (netdsl synth "
                         f"--stride; default {PEERS_STRIDE}, what docs/synthesis.md advises for a MAC budget; 0: off)")
    ap.add_argument("--widen", type=float, default=1.0,
                    help="synthesis: how far the generator may widen each layer (netdsl synth --widen; default 1: "
                         "narrow only)")
    ap.add_argument("--screen", type=int, default=1,
                    help="synthesis: G's samples per candidate the predictor screens from the second cycle on "
                         "(netdsl synth --screen; default 1: off)")
    ap.add_argument("--update-rate", type=float, default=UPDATE_RATE,
                    help=f"synthesis: θG's step per cycle (netdsl synth --update-rate; default {UPDATE_RATE})")
    ap.add_argument("--update-temperature", type=float, default=1.0,
                    help="synthesis: the update's softmax temperature as a share of the candidates' utility spread "
                         "(netdsl synth --update-temperature; default 1)")
    ap.add_argument("--per-cycle", type=int, help=f"synthesis candidates per cycle (full: {FULL['per_cycle']})")
    ap.add_argument("--images", type=int, help=f"fine-tune images per search candidate (full: {FULL['images']})")
    ap.add_argument("--methods", default=DEFAULT_METHODS,
                    help=f"comma-separated, from {', '.join(LABELS)} (default {DEFAULT_METHODS})")
    ap.add_argument("--prototype", default="examples/fashion_cnn.net")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--device", default="auto", help="training device (latency is always measured on the CPU)")
    ap.add_argument("--out", default="runs/peers")
    ap.add_argument("--estimate", action="store_true", help="print the work still to do and its estimated time, then stop")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the docs section (repeatable)")
    ap.add_argument("--cached", action="store_true", help="compute nothing: tabulate the results already on disk")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md or docs/peers.png")
    ap.add_argument("--section", default="peers",
                    help="the docs/benchmarks.md section (bench:NAME markers) and plot (docs/NAME.png) to write "
                         "(default peers; peers-small for the small-data rows)")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.targets = [int(t) for t in str(args.targets).split(",")]
    args.methods = args.methods.split(",")
    unknown = [m for m in args.methods if m not in LABELS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(LABELS)}")
    if any(k < 1 for k in args.targets):
        ap.error("targets are reduction factors >= 1")
    return args


TAG = re.compile(r"(?P<method>.+?)(?:-d(?P<distill>[0-9.]+))?(?:-a(?P<spread>[0-9.]+))?(?:-f(?P<factorize>[0-9.]+))?"
                 r"(?:-st(?P<stride>[0-9.]+))?(?:-w(?P<widen>[0-9.]+))?(?:-gp(?P<screen>[0-9]+))?"
                 r"(?:-r(?P<rate>[0-9.]+)t(?P<temperature>[0-9.]+))?(?P<search>-ss)?(?P<scratch>-scratch)?")


def parse_tag(tag: str) -> tuple:
    """'synth-d0.5-a0.8-f0.5-st0.5-w2-gp16-ss-scratch' -> ('synth', '0.5', '0.8', '0.5', '0.5', '2', '16', True,
    True): a result file's method and variant (Bench.tag; -st: striding convs; -w: widening layers; -gp: the
    predictor screening samples; -ss: search candidates trained from scratch)."""
    m = TAG.fullmatch(tag)
    return (m["method"], m["distill"], m["spread"], m["factorize"], m["stride"], m["widen"], m["screen"],
            m["rate"], m["temperature"], bool(m["search"]), bool(m["scratch"]))


def variant_label(tag: str) -> str:
    """'synth-d0.5-scratch' -> 'netdsl synthesis, distilled (0.5), finalist from scratch'."""
    method, distill, spread, factorize, stride, widen, screen, rate, temperature, search_scratch, scratch = \
        parse_tag(tag)
    if method not in INQUIRING:
        return LABELS[method]
    return (LABELS[method] + (f", distilled ({distill})" if distill else "")
            + (f", allocation spread {spread}" if spread else "")
            + (f", factorizing convs (p0 = {factorize})" if factorize else "")
            + (f", striding convs (p0 = {stride})" if stride else ", no strides" if method in GENERATING else "")
            + (f", widening layers (up to {widen}x)" if widen else "")
            + (f", predictor screening {screen} samples per candidate" if screen else "")
            + (f", θG update rate {rate}, temperature {temperature}" if rate else "")
            + (", search from scratch" if search_scratch else "")
            + (", finalist from scratch" if scratch else ", finalist fine-tuned"))


def other_variants(b, args, results: dict) -> dict:
    """Add the results of synth and random variants (other --distill / --final-from) found on disk, keyed by tag."""
    out = dict(results)
    for path in sorted((b.out / "results").glob("*.json")):
        tag, k, seed = path.stem.rsplit("-", 2)
        method = parse_tag(tag)[0]
        if method not in INQUIRING or tag == b.tag(method) or method not in args.methods:
            continue
        k, seed = int(k.removesuffix("x")), int(seed.removeprefix("s"))
        if k in args.targets and seed in args.seeds:
            out[(tag, k, seed)] = json.loads(path.read_text())
    return out


def result_path(b, method: str, k: int, seed: int) -> Path:
    return b.out / "results" / f"{b.tag(method)}-{k}x-s{seed}.json"


def estimate(b, args, n_train: int, fresh: bool = False) -> float:
    """Print the training work still to do (all of it when fresh) and return its estimated seconds on 2 idle cores."""
    from peer_methods import log

    proto_macs = b.prototype_cost.macs

    def seconds(images: float, macs: float) -> float:
        return images / (PROTO_RATE * (proto_macs / macs) ** 0.5)

    images, secs, todo = 0.0, 0.0, 0
    for seed in args.seeds:
        path = b.prototype_record(seed)
        if fresh or not path.exists():
            images += b.prototype_epochs * n_train
            secs += seconds(b.prototype_epochs * n_train, proto_macs)
        for k in args.targets:
            for m in args.methods:
                if result_path(b, m, k, seed).exists() and not fresh:
                    continue
                todo += 1
                final = b.final_epochs * n_train
                inquired = b.candidates * b.images + b.budget().final_epochs * n_train
                work = (inquired if m in INQUIRING else (b.prototype_epochs + b.final_epochs) * n_train
                        if m == "uniform" else final)
                images += work
                secs += seconds(work, proto_macs / k) + RESULT_S
                secs += b.candidates * CANDIDATE_S if m in INQUIRING else 0
                secs += SYNTH_S if m in GENERATING else TAYLOR_S if m.startswith("tp-taylor") else 0
    if fresh:
        return secs
    log(f"work to do: {todo} of {len(args.seeds) * len(args.targets) * len(args.methods)} results, "
        f"{images / 1e6:.2f} M training images ({images / n_train:.0f} epochs of {n_train:,}); estimated "
        f"{secs / 60:.0f} min on an idle 2-core CPU (prototype at {PROTO_RATE:.0f} images/s, smaller networks "
        "sqrt(MAC ratio) faster, plus evaluation and search overheads); a machine shared with other jobs takes longer")
    return secs


def summarise(results: list[dict], key: str) -> tuple[float, float | None]:
    values = [r[key] for r in results]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def pm(mean: float, spread: float | None, scale: float = 100, digits: int = 2) -> str:
    return f"{mean * scale:.{digits}f}" + (f" ± {spread * scale:.{digits}f}" if spread is not None else "")


def row_order(b, args, results: dict) -> list[str]:
    """The tags of the methods asked for, each followed by its other variants on disk."""
    order = []
    for m in args.methods:
        order.append(b.tag(m))
        if m in INQUIRING:
            order += sorted({key[0] for key in results if parse_tag(key[0])[0] == m} - {b.tag(m)})
    return order


def table(b, args, protos: dict, results: dict, latency: dict) -> list[str]:
    from gensynth.utility import information_density, netscore

    def row(name: str, target: str, rs: list[dict], lat: list[float]) -> str:
        test, test_sd = summarise(rs, "test_acc")
        val, _ = summarise(rs, "val_acc")
        macs, _ = summarise(rs, "macs")
        params, _ = summarise(rs, "params")
        ns = statistics.fmean(netscore(r["test_acc"], r["params"], r["macs"]) for r in rs)
        dens = statistics.fmean(information_density(r["test_acc"], r["params"]) for r in rs)
        wall = statistics.fmean(r["wall_s"] for r in rs)
        return (f"| {name} | {target} | **{pm(test, test_sd)}** | {val * 100:.2f} | {macs / 1e6:.2f} M | "
                f"{params / 1e3:.1f} K | {ns:.1f} | {dens:.0f} | {statistics.fmean(lat) * 1e3:.3f} ms | "
                f"{wall / 60:.1f} min | {len(rs)} |")

    lines = ["| method | target | test acc % (mean ± sd) | val acc % | MACs | params | NetScore | density | "
             "latency (batch 1) | wall / seed | seeds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    ps = [protos[s] for s in args.seeds]
    lines.append(row("prototype (P epochs)", "1x", ps, [latency[("prototype", 1, s)] for s in args.seeds]))
    for k in args.targets:
        target = b.prototype_cost.macs // k
        for m in row_order(b, args, results):
            rs = [results[(m, k, s)] for s in args.seeds if (m, k, s) in results]
            if rs:
                lat = [latency[(m, k, s)] for s in args.seeds if (m, k, s) in results]
                lines.append(row(variant_label(m), f"{k}x (≤ {target / 1e6:.2f} M)", rs, lat))
    return lines


def seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def headline(b, args, results: dict) -> list[str]:
    """Per target: learned synthesis minus the best other method as configured (the best by mean validation
    accuracy), on test, in points and in standard errors of the difference (sd / sqrt(n) per method)."""
    def rows(tag: str, k: int) -> list[dict]:
        return [results[(tag, k, s)] for s in args.seeds if (tag, k, s) in results]

    lines = []
    for k in args.targets:
        mine = rows(b.tag("synth"), k)
        others = {b.tag(m): rows(b.tag(m), k) for m in args.methods if m != "synth" and rows(b.tag(m), k)}
        if not mine or not others:
            continue
        best = max(others, key=lambda t: statistics.fmean(r["val_acc"] for r in others[t]))
        (a, sa), (o, so) = summarise(mine, "test_acc"), summarise(others[best], "test_acc")
        diff = (a - o) * 100
        se = ((sa or 0) ** 2 / len(mine) + (so or 0) ** 2 / len(others[best])) ** 0.5 * 100
        ratio = f", {diff / se:+.1f} SE" if se > 0 else ""
        lines.append(f"- **{k}x: {diff:+.2f} points{ratio}.** Learned synthesis {pm(a, sa)} % test ({seeds(len(mine))}) "
                     f"against {variant_label(best)}, the best other method on validation "
                     f"({summarise(others[best], 'val_acc')[0] * 100:.2f} %), {pm(o, so)} % ({seeds(len(others[best]))}).")
        lines += paired_ablation(b, args, results, k)
    return lines


def paired_ablation(b, args, results: dict, k: int) -> list[str]:
    """What learning θG adds at target k: learned synthesis minus random search in the generator's space, seed by
    seed (both start from the same prototype and draw the same first cycle, so the pairs share much of their noise)."""
    pairs = [(results[(b.tag("synth"), k, s)]["test_acc"] - results[(b.tag("gen-random"), k, s)]["test_acc"]) * 100
             for s in args.seeds if (b.tag("synth"), k, s) in results and (b.tag("gen-random"), k, s) in results]
    if len(pairs) < 2:
        return []
    mean, se = statistics.fmean(pairs), statistics.stdev(pairs) / len(pairs) ** 0.5
    verdict = ("learning ahead by more than one SE" if mean > se else "learning behind by more than one SE"
               if mean < -se else "a tie (inside one standard error)")
    return [f"  Learned minus random search in the generator's space, paired by seed: {mean:+.2f} ± {se:.2f} points "
            f"(mean ± SE of {len(pairs)} differences: {', '.join(f'{d:+.2f}' for d in pairs)}): {verdict}."]


def plot(b, args, protos: dict, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    colours = plt.get_cmap("tab10")
    main = [b.tag(m) for m in args.methods]  # each method as configured; the other variants in grey, unnamed
    variant_named = False
    for m in row_order(b, args, results):
        xs, ys, es = [], [], []
        for k in args.targets:
            rs = [results[(m, k, s)] for s in args.seeds if (m, k, s) in results]
            if rs:
                acc, sd = summarise(rs, "test_acc")
                xs.append(summarise(rs, "macs")[0] / 1e6)
                ys.append(acc * 100)
                es.append((sd or 0) * 100)
        if xs and m in main:
            ax.errorbar(xs, ys, yerr=es, fmt="o-", color=colours(main.index(m)), capsize=3, lw=1.2, ms=5,
                        label=variant_label(m), zorder=3)
        elif xs:
            ax.plot(xs, ys, "o-", color="0.75", lw=0.8, ms=3, zorder=1,
                    label=None if variant_named else "other variants of synthesis and random search (table)")
            variant_named = True
    acc, sd = summarise([protos[s] for s in args.seeds], "test_acc")
    ax.errorbar([b.prototype_cost.macs / 1e6], [acc * 100], yerr=[(sd or 0) * 100], fmt="*", ms=14, color="black",
                capsize=3, label=f"prototype (P = {b.prototype_epochs} epochs)")
    for k in args.targets:
        ax.axvline(b.prototype_cost.macs / k / 1e6, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ticks = sorted({b.prototype_cost.macs / 1e6} | {b.prototype_cost.macs / k / 1e6 for k in args.targets})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:.2f}" for t in ticks])
    ax.set_xlabel("MACs (millions, log scale; dotted: targets)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Fashion-MNIST, {len(args.seeds)} seed(s): P={b.prototype_epochs}, F={b.final_epochs}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / f"{args.section}.png")
    plt.close(fig)


def budget_text(b, n_train: int, proto_wall: float) -> str:
    """The paragraph that says what every method got, as configured."""
    from gensynth.training.train import default_batch_size

    batch = default_batch_size(n_train)
    strides = (f"; each stridable conv ({', '.join(b.space.stridable)}) gets stride 2 with a probability starting at "
               f"{b.stride:g} (`--stride {b.stride:g}`)" if b.stride else "")
    widen = (f"; every free layer may grow to {b.widen:g}x the prototype's channels, new channels untrained "
             f"(`--widen {b.widen:g}`)" if b.widen > 1 else "")
    learned = (f" The learned rows marked with the predictor screen {b.screen} of G's samples per candidate from the "
               "second cycle on and choose their finalist by the predictor (`--screen`)." if b.screen > 1 else "")
    return (
        f"**Budget per seed.** One prototype, trained P = {b.prototype_epochs} epoch(s) with the standard recipe "
        f"(SGD + Nesterov, lr 0.05, cosine, batch {batch}: netdsl's default for {n_train:,} training images), shared "
        f"by synthesis, Torch-Pruning and random search (mean {proto_wall / 60:.1f} min, not in their wall times). "
        f"Every final network then gets F = {b.final_epochs} epoch(s) of fine-tuning (lr 0.02, cosine); uniform "
        f"width has nothing to inherit and trains from scratch for P + F = {b.prototype_epochs + b.final_epochs} "
        f"epochs. Extra, search: synthesis evaluates N = {b.cycles} cycles x {b.per_cycle} = {b.candidates} "
        f"candidates, each fine-tuned on {b.images:,} training images (one pass, lr 0.02), its BatchNorm statistics "
        "re-estimated on 1,024 of them, and scored on validation, and fully trains its best candidate by utility "
        f"({b.synth_utility}), one finalist. The generator's space: a keep-probability per channel starting from "
        "the prototype's filter magnitudes and a width factor per channel group drawn per sample" + strides + widen
        + ", every sample projected onto the MAC budget. Random search in the generator's space runs exactly "
        "that with θG never updated (`netdsl synth --no-learn`): the same rewrites, starting distribution, "
        "projection, candidate seeds, fine-tunes and finalist rule, so the two rows differ by what learning adds."
        + learned + " Random width search evaluates "
        f"{b.candidates} random networks with the same fine-tune (the same seeds and image subsets) and fully trains "
        "the best on validation; it draws each free group's width fraction from U(0.1, 1), keeps samples with MACs "
        "in [0.9 T, T] and inherits the prototype's channels with the highest filter L2 norm. Torch-Pruning prunes "
        "in 1% steps of each layer's channels (local ranking, the library default; Taylor: one 128-image backward "
        "before each step) until netdsl's cost model puts the network at or under the target, keeping the "
        "classifier's outputs.")


def section(b, args, command: str, lines: list[str], n_train: int, n_val: int, n_test: int, runs: list[dict],
            protos: dict, results: dict, full_estimate: float) -> str:
    import torch

    from gensynth.training.train import resolve_device

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tp = next((r.get("torch_pruning") for r in results.values() if r.get("torch_pruning")), None)
    ops = [r for r in results.values() if r.get("tp_ops")]
    ops_note = (f" Torch-Pruning's own count_ops_and_params for its networks is {statistics.fmean(r['tp_ops'] / r['macs'] for r in ops):.3f}x"
                " netdsl's MACs on average (it adds BN, ReLU, pooling and bias ops)." if ops else "")
    proto_wall = statistics.fmean(protos[s]["wall_s"] for s in args.seeds)
    settings = {key: getattr(args, key) for key in FULL}
    settings["seeds"] = ",".join(map(str, args.seeds))
    settings["targets"] = ",".join(map(str, args.targets))
    mode = "quick smoke run" if args.quick else "full-mode defaults" if settings == FULL else "custom settings"
    device = resolve_device(args.device)
    recorded = sum(r["wall_s"] for r in results.values()) + sum(protos[s]["wall_s"] for s in args.seeds)
    wall, cpu = sum(r["wall_s"] for r in runs), sum(r["cpu_s"] for r in runs)
    start, end = markers(args.section)
    small = f", {n_train + n_val:,} training images" if args.section != "peers" else ""
    head = [
        start,
        f"## netdsl synthesis against its peers (`bench/peers.py`{small}) — issues #7, #22",
        "",
        f"Command: `{command}` ({mode}). Machine: {cores} CPU cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, training device {device}. Date: {datetime.date.today().isoformat()}.",
        "",
        f"Prototype `{args.prototype}` ({b.prototype_cost.macs / 1e6:.2f} M MACs); data `{args.data}`: "
        f"{n_train:,} train / {n_val:,} validation (a {n_train + n_val:,}-image pool, `--limit-train`) / {n_test:,} test. "
        "Every choice is made on the validation split; test accuracy is only reported. Mean ± sample standard "
        f"deviation over the seeds of {', '.join(map(str, args.seeds))} that a row has results for (its last "
        "column). NetScore and information density from test "
        "accuracy; latency: median batch-1 CPU forward, all networks timed interleaved.",
        "",
        budget_text(b, n_train, proto_wall)
        + (f" Synthesis and random search (the methods that run netdsl's inquisitor) distil the prototype in every "
           f"fine-tune, search and final: loss = {1 - b.distill:g} x cross-entropy + {b.distill:g} x T² x KL at "
           "T = 4 (`netdsl synth --distill`); Torch-Pruning and uniform width learn from the labels only, as "
           "their users would." if b.distill else "")
        + (f" Synthesis and random search train their finalist from scratch for P + F = "
           f"{b.prototype_epochs + b.final_epochs} epochs at the standard rate (`netdsl synth --final-from scratch`), "
           "the budget uniform width gets; the prototype's weights serve the search only." if b.final_from == "scratch"
           else "") + ops_note
        + (f" torch-pruning {tp}." if tp else ""),
        "",
        *lines,
        "",
        "Learned synthesis minus the best other method at each target (chosen on validation, reported on test):",
        "",
        *headline(b, args, results),
        "",
        f"Wall time: {wall / 60:.1f} min over {len(runs)} invocation(s) that computed these results (process CPU "
        f"time {cpu / 60:.1f} min, i.e. {cpu / max(wall, 1e-9):.2f} of {cores} cores busy on average); the "
        f"per-result times recorded add up to {recorded / 60:.1f} min. Wall / "
        "seed is each method's own work for one network, search included (prototype row: its training); "
        "synthesis's includes re-measuring the prototype and writing its report.",
        "",
        f"![test accuracy against MACs, one colour per method]({args.section}.png)",
    ]
    if args.quick:
        head += ["", "This is the quick smoke run: it checks that every method runs end to end and writes this "
                 "section, nothing more. With a 5,000-image pool, 2 + 1 epochs and search candidates fine-tuned on "
                 "1,500 images, every network is far from trained and one seed cannot separate the methods. Full "
                 "mode (`python bench/peers.py`): 3 seeds, targets 2x/4x/8x, 20,000-image pool, "
                 f"P = {FULL['epochs_prototype']}, F = {FULL['epochs_final']}, {FULL['cycles']} x "
                 f"{FULL['per_cycle']} candidates on {FULL['images']:,} images each; `--estimate` puts it at about "
                 f"{full_estimate / 3600:.1f} h on an idle 2-core CPU."]
    head += [f"\n{note}" for note in args.note]
    return "\n".join(head + [end])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    from latency import latency_side_by_side
    from peer_methods import RUNNERS, Bench, log, prototype, write_json

    from netdsl.loader import load_network

    b = Bench(net=load_network(str(ROOT / args.prototype)), data=args.data, limit_train=args.limit_train or None,
              prototype_epochs=args.epochs_prototype, final_epochs=args.epochs_final, cycles=args.cycles,
              per_cycle=args.per_cycle, images=args.images, device=args.device, root=ROOT / args.out,
              synth_utility=args.synth_utility, distill=args.distill,
              final_from=args.final_from, search_from=args.search_from, spread=args.allocation_spread,
              factorize=args.factorize, stride=args.stride, widen=args.widen, screen=args.screen,
              update_rate=args.update_rate, update_temperature=args.update_temperature)
    ds = b.dataset()
    n_train, n_val, n_test = len(ds.train_y), len(ds.val_y), len(ds.test_y)
    log(f"{ds}; results in {b.out}")
    estimate(b, args, n_train)
    if args.estimate:
        return 0
    protos, results, computed = {}, {}, 0
    if args.cached:  # only the seeds whose prototype exists
        args.seeds = [s for s in args.seeds if b.prototype_record(s).exists()]
    for seed in args.seeds:
        computed += not b.prototype_record(seed).exists()
        protos[seed] = prototype(b, seed)
        log(f"prototype seed {seed}: val {protos[seed]['val_acc']:.2%}, test {protos[seed]['test_acc']:.2%}")
        for k in args.targets:
            target = b.prototype_cost.macs // k
            for m in args.methods:
                path = result_path(b, m, k, seed)
                if path.exists():
                    results[(b.tag(m), k, seed)] = json.loads(path.read_text())
                    continue
                if args.cached:
                    continue
                log(f"{m}, {k}x (<= {target:,} MACs), seed {seed}")
                res = RUNNERS[m](b, protos[seed], target, k, seed)
                res.update(target=k, target_macs=target, seed=seed)
                write_json(path, res)
                results[(b.tag(m), k, seed)] = res
                computed += 1
                log(f"{m}, {k}x, seed {seed}: {res['macs'] / 1e6:.2f} M MACs, val {res['val_acc']:.2%}, "
                    f"test {res['test_acc']:.2%}, {res['wall_s'] / 60:.1f} min")
    results = other_variants(b, args, results)
    keys = [("prototype", 1, s) for s in args.seeds] + list(results)
    texts = [protos[s]["net"] for s in args.seeds] + [r["net"] for r in results.values()]
    log(f"timing {len(texts)} networks side by side")
    latency = dict(zip(keys, latency_side_by_side(texts)))
    lines = table(b, args, protos, results, latency)
    wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    print("\n".join(lines + [""] + headline(b, args, results)))
    log(f"wall time {wall / 60:.1f} min, CPU time {cpu / 60:.1f} min; computed {computed} result(s)")
    shown = sys.argv[1:] if argv is None else argv
    shown = [a for i, a in enumerate(shown) if a != "--note" and (i == 0 or shown[i - 1] != "--note")]
    command = shlex.join(["python", "bench/peers.py", *shown])
    invocations = b.out / "invocations.jsonl"
    if computed:  # the invocations that did the work, for the wall time of a run resumed several times
        with invocations.open("a") as fh:
            fh.write(json.dumps({"date": datetime.datetime.now().isoformat(timespec="seconds"), "wall_s": wall,
                                 "cpu_s": cpu, "computed": computed, "command": command}) + "\n")
    runs = [json.loads(line) for line in invocations.read_text().splitlines()] if invocations.exists() else []
    if not args.no_docs:
        full = parse_args([])
        fb = dataclasses.replace(b, limit_train=full.limit_train, prototype_epochs=full.epochs_prototype,
                                 final_epochs=full.epochs_final, cycles=full.cycles, per_cycle=full.per_cycle,
                                 images=full.images)
        full_estimate = estimate(fb, full, len(fb.dataset().train_y), fresh=True)
        write_section(section(b, args, command, lines, n_train, n_val, n_test, runs, protos, results, full_estimate))
        plot(b, args, protos, results)
        log(f"updated {DOC.relative_to(ROOT)} and docs/{args.section}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
