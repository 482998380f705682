"""Does the split of a MAC budget between the prototype's layers (and its depth) matter? Same training for each.

    python bench/width_allocation.py [--seeds 0] [--targets 4,8] [--recipe inherit|scratch] [--no-docs]

bench/peers.py's setting (its cached prototypes: a 20,000-image Fashion-MNIST pool, P = 10 epochs; F = 3
fine-tune epochs, SGD lr 0.02, cosine, labels only). examples/fashion_cnn.net has three free channel groups
(stage 1 at 28x28, stage 2 at 14x14, stage 3 at 7x7). At each MAC target, three allocations with the
prototype's highest-L2 channels: every group at one fraction (uniform, what Torch-Pruning's default local
ranking and uniform scaling give), stage 3 kept whole (its MACs are the cheapest per channel) with stages 1
and 2 at one fraction, stage 1 at half the uniform fraction with stages 2 and 3 at one fraction, and the
network without stage 1's residual conv (a skippable block: 7.2 M MACs, a third of the prototype's) at one
fraction everywhere, the same with stage 3 kept whole, the network without both residual convs at one
fraction, the network whose four 3x3 convs after the stem are factorized into depthwise 3x3 + 1x1
(compiler/rewrite/factorize.py; synthesis with --factorize) at one fraction, and the networks with the stem at stride 2
(every layer after it at half the resolution, a quarter of the MACs per channel) and with the stem and stage 2's
first conv at stride 2 (compiler/rewrite/striding.py; synthesis with --stride) at one fraction. `--recipe inherit` (the default) fine-tunes the highest-L2 channels of the prototype F epochs;
`--recipe scratch` trains each network from scratch for P + F epochs (bench/peers.py's finalist recipe). If the
allocations differ by more than the noise, a search over them has something to find. Choose on validation.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import markers, mean_sd, write_section  # noqa: E402


def fit(g, groups, target: int, fractions) -> tuple[dict[int, int], object]:
    """Widths of g's free groups (matched to the prototype's `groups` by their first writer) at fractions(t),
    for the largest t in [0, 1] whose network has <= target MACs; and g's channel plan."""
    import numpy as np

    from compiler.cost import batched_costs, compile_costs

    program = compile_costs(g)
    plan = program.plan
    writer_of = {grp.writers[0]: i for i, grp in enumerate(groups)}
    index = {gid: next(writer_of[w] for w in plan.groups[gid].writers if w in writer_of)
             for gid in program.width_groups if not plan.groups[gid].fixed}

    def row(t: float) -> np.ndarray:
        f = fractions(t)
        return np.array([[max(1, round(f[index[gid]] * plan.groups[gid].channels)) if gid in index
                          else plan.groups[gid].channels for gid in program.width_groups]], dtype=np.int64)

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if int(batched_costs(program, row(mid))[0][0]) <= target else (lo, mid)
    return {gid: int(w) for gid, w in zip(program.width_groups, row(lo)[0]) if gid in index}, plan


def allocations_at(f: float) -> dict[str, tuple]:
    """Allocation name -> (group fractions at scale t, how many of the prototype's skippable blocks to drop,
    whether its 3x3 convs are factorized, how many of its stridable convs to stride, in order); f is uniform
    width's fraction at the target."""
    return {"uniform": (lambda t: [t, t, t], 0, False, 0), "stage 3 whole": (lambda t: [t, t, 1.0], 0, False, 0),
            "stage 1 at half": (lambda t: [f / 2, t, t], 0, False, 0),
            "stage 1 residual conv dropped, uniform": (lambda t: [t, t, t], 1, False, 0),
            "stage 1 residual conv dropped, stage 3 whole": (lambda t: [t, t, 1.0], 1, False, 0),
            "both residual convs dropped, uniform": (lambda t: [t, t, t], 2, False, 0),
            "every 3x3 conv factorized, uniform": (lambda t: [t, t, t], 0, True, 0),
            "stem strided, uniform": (lambda t: [t, t, t], 0, False, 1),
            "stem and stage 2 strided, uniform": (lambda t: [t, t, t], 0, False, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--targets", default="4,8")
    ap.add_argument("--recipe", choices=("inherit", "scratch"), default="inherit")
    ap.add_argument("--allocations", default="all",
                    help="allocation names separated by semicolons (see the docstring), or all")
    ap.add_argument("--out", default="runs/peers")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import json

    import torch
    from peer_methods import (
        fashion_bench,
        fine_tune,
        l2_kept,
        log,
        prototype,
        train_from_scratch,
        uniform_widths,
        write_json,
    )
    from safetensors.torch import load_file

    from compiler.backend.lower import lower_to_torch
    from compiler.cost import network_cost
    from compiler.rewrite.coupling import apply_widths
    from compiler.rewrite.factorize import factorizable_convs, factorize_convs
    from compiler.rewrite.residual import drop_blocks
    from compiler.rewrite.striding import stride_convs
    from compiler.rewrite.transfer import transfer_weights

    b = fashion_bench(ROOT / args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = list(allocations_at(1.0)) if args.allocations == "all" else args.allocations.split(";")
    unknown = sorted(set(chosen) - set(allocations_at(1.0)))
    if unknown:
        ap.error(f"unknown allocation(s) {unknown}; choose from {list(allocations_at(1.0))}")
    targets = [int(k) for k in args.targets.split(",")]
    suffix = "-scratch" if args.recipe == "scratch" else ""
    out = b.root / f"allocation-{b.data_tag}-p{b.prototype_epochs}-f{b.final_epochs}{suffix}"
    results, widths_of = {}, {}
    for seed in seeds:
        state = load_file(prototype(b, seed)["weights"])
        for k in targets:
            target = b.prototype_cost.macs // k
            _, f = uniform_widths(b, target)
            allocations = {name: v for name, v in allocations_at(f).items() if name in chosen}
            for name, (fractions, dropped, factorized, strided) in allocations.items():
                g = drop_blocks(b.net, b.space.blocks[:dropped]) if dropped else b.net
                g = factorize_convs(g, factorizable_convs(g)) if factorized else g
                g = stride_convs(g, list(b.space.stridable[:strided]))[0] if strided else g
                widths, plan = fit(g, b.space.groups, target, fractions)
                widths_of[(k, name)] = [widths[gid] for gid in sorted(widths)]
                path = out / f"{k}x-s{seed}-{name.replace(' ', '-')}.json"
                if path.exists():
                    results[(k, name, seed)] = json.loads(path.read_text())
                    continue
                t0 = time.perf_counter()
                child = apply_widths(g, widths, plan)
                torch.manual_seed(seed)
                model = lower_to_torch(child)
                if args.recipe == "scratch":
                    val, test = train_from_scratch(b, model, seed)
                else:
                    kept = l2_kept(b, state, {grp.id: widths[gid] for grp in b.space.groups for gid in widths
                                              if grp.writers[0] in plan.groups[gid].writers})
                    model.load_state_dict(transfer_weights(b.net, state, child, {n: c for n, c in kept.items()
                                                                                 if n in child}), strict=False)
                    val, test = fine_tune(model, b.dataset(), b.final_epochs, seed, b.device)
                res = {"val_acc": val, "test_acc": test, "macs": network_cost(child).macs,
                       "widths": widths_of[(k, name)], "wall_s": time.perf_counter() - t0}
                write_json(path, res)
                results[(k, name, seed)] = res
                log(f"{k}x seed {seed} {name} {widths_of[(k, name)]}: val {val:.2%} test {test:.2%}")

    def cell(k, name, key):
        return mean_sd([results[(k, name, s)][key] * 100 for s in seeds])

    lines = ["| target | allocation | widths (stage 1, 2, 3) | MACs | val acc % | test acc % |",
             "|---|---|---|---:|---:|---:|"]
    for k in targets:
        for name in chosen:
            macs = results[(k, name, seeds[0])]["macs"]
            lines.append(f"| {k}x | {name} | {widths_of[(k, name)]} | {macs / 1e6:.2f} M | {cell(k, name, 'val_acc')} "
                         f"| {cell(k, name, 'test_acc')} |")
    print("\n".join(lines))
    if not args.no_docs:
        start, end = markers("allocation" + suffix)
        command = shlex.join(["python", "bench/width_allocation.py", *sys.argv[1:]])
        title = "## Splitting a MAC budget between layers" + (", trained from scratch" if args.recipe == "scratch" else "")
        write_section("\n".join([start, f"{title} (`bench/width_allocation.py`)", "",
                                 f"Command: `{command}`. Recipe: {args.recipe}. Seeds {', '.join(map(str, seeds))}; see the script's "
                                 "docstring for the setting. Choose on the validation column.", "", *lines, end]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
