"""Choose how an inherited network is fine-tuned: distillation weight and learning rate, on validation accuracy.

    python bench/finetune_recipe.py [--seeds 0] [--targets 4,8] [--no-docs]

Same data, prototype and budget as bench/peers.py (its prototypes are shared: a 20,000-image Fashion-MNIST pool,
P = 10 epochs with the standard recipe, F = 3 fine-tune epochs). The inherited network is the uniform-width
network at each MAC target with the prototype's highest-L2 channels (what Torch-Pruning L2 and random search
also start from), so only the fine-tune recipe varies. Every recipe sees the same seeds, so the same batches.
The choice is read from the validation column; test accuracy is printed for the record only. The section goes
to docs/benchmarks.md between the bench:finetune markers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import markers, mean_sd, write_section  # noqa: E402

START, END = markers("finetune")
# (label, distillation weight, learning rate, from scratch); lr 0.02 is inquire()'s finalist rate for SGD.
# The from-scratch recipes train P + F epochs with the standard recipe (lr 0.05), as uniform width does in
# bench/peers.py, with and without the prototype as teacher (labels only is the recipe of bench/peers.py's uniform width).
RECIPES = [("labels only, lr 0.02", 0.0, 0.02, False), ("labels only, lr 0.05", 0.0, 0.05, False),
           ("distill 0.5, lr 0.02", 0.5, 0.02, False), ("distill 0.9, lr 0.02", 0.9, 0.02, False),
           ("from scratch, P + F epochs, distill 0.5", 0.5, 0.05, True),
           ("from scratch, P + F epochs, labels only", 0.0, 0.05, True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--targets", default="4,8")
    ap.add_argument("--epochs-prototype", type=int, default=10)
    ap.add_argument("--epochs-final", type=int, default=3)
    ap.add_argument("--limit-train", type=int, default=20000)
    ap.add_argument("--out", default="runs/peers")
    ap.add_argument("--recipes", action="append", help="run only this recipe (by label; repeatable)")
    ap.add_argument("--cached", action="store_true", help="compute nothing: tabulate the results already on disk")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import torch
    from peer_methods import fashion_bench, l2_kept, log, prototype, scores, uniform_widths, without_test, write_json
    from safetensors.torch import load_file

    from compiler.backend.lower import lower_to_torch
    from compiler.cost import network_cost
    from compiler.rewrite.coupling import apply_widths
    from compiler.rewrite.transfer import transfer_weights
    from gensynth.inquisitor import Budget, fine_tune_config
    from gensynth.training.train import train

    b = fashion_bench(ROOT / args.out, args.limit_train, args.epochs_prototype, args.epochs_final)
    ds = b.dataset()
    seeds = [int(s) for s in args.seeds.split(",")]
    targets = [int(k) for k in args.targets.split(",")]
    out = b.root / f"finetune-{b.data_tag}-p{b.prototype_epochs}-f{b.final_epochs}"
    results: dict[tuple, dict] = {}
    for seed in seeds:
        proto = prototype(b, seed)
        state = load_file(proto["weights"])
        teacher = lower_to_torch(b.net)
        teacher.load_state_dict(state)
        for k in targets:
            widths, _ = uniform_widths(b, b.prototype_cost.macs // k)
            child = apply_widths(b.net, widths, b.plan)
            kept = l2_kept(b, state, widths)
            for label, distill, lr, scratch in RECIPES:
                if args.recipes and label not in args.recipes:
                    continue
                path = out / f"{k}x-s{seed}-d{distill}-lr{lr}{'-scratch' if scratch else ''}.json"
                if path.exists():
                    results[(k, label, seed)] = json.loads(path.read_text())
                    continue
                if args.cached:
                    continue
                t0 = time.perf_counter()
                torch.manual_seed(seed)
                model = lower_to_torch(child)
                if not scratch:
                    model.load_state_dict(transfer_weights(b.net, state, child, kept), strict=False)
                cfg = dataclasses.replace(fine_tune_config(Budget(distill=distill), ds.task, seed, final=True),
                                          epochs=b.final_epochs + (b.prototype_epochs if scratch else 0), lr=lr)
                device = train(model, without_test(ds), cfg, teacher=teacher if distill else None).device
                val, test = scores(model, ds, device)
                res = {"val_acc": val, "test_acc": test, "macs": network_cost(child).macs,
                       "wall_s": time.perf_counter() - t0}
                write_json(path, res)
                results[(k, label, seed)] = res
                log(f"{k}x seed {seed} {label}: val {val:.2%} test {test:.2%} ({res['wall_s']:.0f} s)")

    def cell(k: int, label: str, key: str, done: list[int]) -> str:
        return mean_sd([results[(k, label, s)][key] * 100 for s in done])

    lines = ["| target | recipe | val acc % | test acc % | seeds |", "|---|---|---:|---:|---|"]
    for k in targets:
        for label, *_ in RECIPES:  # each row over the seeds it has results for (--cached tabulates partial runs)
            done = [s for s in seeds if (k, label, s) in results]
            if done:
                lines.append(f"| {k}x | {label} | {cell(k, label, 'val_acc', done)} | "
                             f"{cell(k, label, 'test_acc', done)} | {', '.join(map(str, done))} |")
    print("\n".join(lines))
    if not args.no_docs:
        command = "python bench/finetune_recipe.py " + " ".join(sys.argv[1:])
        write_section("\n".join([
            START, "## Fine-tuning an inherited network: distillation and learning rate (`bench/finetune_recipe.py`)",
            "", f"Command: `{command.strip()}`. Prototype `examples/fashion_cnn.net` trained P = {b.prototype_epochs} "
            f"epochs on {len(ds.train_y):,} images (bench/peers.py's cached prototypes); the uniform-width network at "
            f"each target inherits the highest-L2 channels and is fine-tuned F = {b.final_epochs} epochs (SGD, "
            "cosine). Distillation: temperature 4, teacher = the trained prototype. Mean ± sd over the seeds "
            "listed where more than one. Choose on the validation column.", "",
            *lines, END]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
