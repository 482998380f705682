"""Segmentation and detection on fashion-seg / fashion-det: prototype, a FermiNet with >= 3x fewer MACs, and
uniform width scaling at the FermiNet's MAC budget, side by side.

    python bench/tasks_fashion.py [--tasks segment,detect] [--limit-train 4000] [--seeds 0,1,2] [--out runs/bench-tasks]

Per task: the prototype (examples/unet_small.net, examples/detector_small.net) is trained P epochs with the
standard recipe; `synthesize` runs from its weights with --req macs<=prototype/3 and --req METRIC>=prototype's
validation METRIC - 0.01, and its finalist gets F fine-tune epochs; uniform width scaling (one factor on every
free channel group, the largest whose network fits the FermiNet's MACs) trains from scratch for P + F epochs, the
same epochs per final network (with --final-from scratch the FermiNet too trains from scratch, P + F epochs). Test
metrics are reported; every choice uses the validation split. Batch-1 CPU latency is measured side by side. Each
seed trains its own prototype, search and baseline; the table gives the mean and sample standard deviation over
the seeds, and the FermiNet's difference from uniform width in points and standard errors. Results resume from
runs/ (each step writes a JSON when done) and land in docs/benchmarks.md between the bench:tasks markers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from benchdoc import markers, write_section  # noqa: E402
from latency import latency_side_by_side  # noqa: E402
from peer_methods import Bench, log, uniform_widths, without_test, write_json  # noqa: E402

from compiler.backend.lower import lower_to_torch  # noqa: E402
from compiler.backend.weights import save_weights  # noqa: E402
from compiler.cost import network_cost  # noqa: E402
from compiler.printer import print_network  # noqa: E402
from compiler.rewrite.coupling import apply_widths  # noqa: E402
from gensynth.inquisitor import Budget  # noqa: E402
from gensynth.loop import JOURNAL, SynthConfig, synthesize  # noqa: E402
from gensynth.tasks.objectives import objective_for  # noqa: E402
from gensynth.training.evaluate import evaluate  # noqa: E402
from gensynth.training.preprocessing import metadata_for  # noqa: E402
from gensynth.training.train import TrainConfig, train  # noqa: E402
from netdsl.loader import load_network  # noqa: E402

START, END = markers("tasks")
BATCH_SIZE = 32  # every training here: a few thousand canvases at 128 a batch are too few steps
TASKS = {"segment": ("examples/unet_small.net", "fashion-seg", "miou", "mIoU"),
         "detect": ("examples/detector_small.net", "fashion-det", "map50", "mAP@0.5")}


def scores(model, ds, device) -> dict:
    """Validation and test metrics of the task, e.g. {"val_miou": ..., "test_pixel_acc": ...}."""
    objective = objective_for(ds)
    out = {}
    for split, x, y in (("val", ds.val_x, ds.val_y), ("test", ds.test_x, ds.test_y)):
        result = evaluate(model, x, y, device=device, objective=objective)
        out.update({f"{split}_{k}": v for k, v in result.metrics.items()})
    return out


def cached(path: Path, make) -> dict:
    """The JSON result at path, computed (and written atomically) only if it is missing."""
    if path.exists():
        return json.loads(path.read_text())
    result = make()
    write_json(path, result)
    return result


def trained_from_scratch(b: Bench, g, epochs: int, seed: int, save: Path | None = None) -> dict:
    ds = b.dataset()
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = lower_to_torch(g)
    result = train(model, without_test(ds), TrainConfig(epochs=epochs, seed=seed, device=b.device,
                                                   batch_size=BATCH_SIZE),
                   on_epoch=lambda e: log(f"  epoch {e.epoch}: val {e.val_metrics} ({e.wall_s:.0f} s)"))
    if save is not None:
        save_weights(model, save, metadata_for(g, ds))
    cost = network_cost(g)
    return {"net": print_network(g), "macs": cost.macs, "params": cost.params, "epochs": epochs,
            "wall_s": time.perf_counter() - t0, **scores(model, ds, result.device)}


def run_task(task: str, args, seed: int) -> dict:
    path, data, metric, _ = TASKS[task]
    net = load_network(str(ROOT / path))
    # the prototype is shared by every search/final budget; each budget keeps its own results
    base = Path(args.out) / f"{task}-n{args.limit_train}-p{args.epochs_prototype}-s{seed}"
    scratch = args.final_from == "scratch"
    variant = ("-scratch" if scratch else "") + \
        (f"-m{args.min_fraction:g}" if args.min_fraction != SynthConfig.min_fraction else "")
    out = base / f"f{args.epochs_final}-c{args.cycles}x{args.per_cycle}-i{args.images}{variant}"
    out.mkdir(parents=True, exist_ok=True)
    b = Bench(net=net, data=data, limit_train=args.limit_train, prototype_epochs=args.epochs_prototype,
              final_epochs=args.epochs_final, cycles=args.cycles, per_cycle=args.per_cycle, images=args.images,
              device=args.device, root=out)
    log(f"{task}: {path} on {data} ({len(b.dataset().train_y):,} training images)")
    weights = base / "prototype.safetensors"
    proto = cached(base / "prototype.json", lambda: trained_from_scratch(
        b, net, args.epochs_prototype, seed, save=weights))
    target = int(proto["macs"] / args.reduction)
    floor = max(proto[f"val_{metric}"] - 0.01, 0.0)

    def synth() -> dict:
        cfg = SynthConfig(data=data, requirements=[f"macs<={target}", f"{metric}>={floor:.4f}"], cycles=args.cycles,
                          per_cycle=args.per_cycle, seed=seed, prototype_weights=str(weights), finalists=1,
                          min_fraction=args.min_fraction,
                          budget=Budget(images=args.images, epochs=1, final_init=args.final_from,
                                        final_epochs=args.epochs_final + (args.epochs_prototype if scratch else 0),
                                        batch_size=BATCH_SIZE, device=args.device),
                          data_options=b.data_options)
        run = out / "synth"
        t0 = time.perf_counter()
        result = synthesize(net, cfg, run, resume=(run / JOURNAL).exists(), on_event=lambda kind, r: log(
            f"  {kind} {r.key}: {r.macs / 1e6:.1f} M MACs, val {metric} {r.score:.2%}")
            if kind in ("candidate", "final") else None)
        final = result.finals[0].to_json()
        return {"net": (run / f"{final['name']}.net").read_text(), "macs": final["macs"], "params": final["params"],
                "wall_s": time.perf_counter() - t0, "candidates": len(result.candidates), "meets": final["meets"],
                **{k: v for k, v in final.items() if k.startswith(("val_", "test_"))}}

    fermi = cached(out / "synth.json", synth)

    def uniform() -> dict:
        widths, factor = uniform_widths(b, fermi["macs"])
        child = apply_widths(net, widths, b.plan)
        return {**trained_from_scratch(b, child, args.epochs_prototype + args.epochs_final, seed),
                "factor": factor}

    uni = cached(out / "uniform.json", uniform)
    lat = latency_side_by_side([proto["net"], fermi["net"], uni["net"]])
    return {"task": task, "data": data, "metric": metric, "prototype": proto, "fermi": fermi, "uniform": uni,
            "latency": lat, "target": target}


def cell(values: list[float], label: str) -> str:
    """'mIoU 70.61% ± 0.52' (the sample sd over seeds when there are several)."""
    sd = f" ± {statistics.stdev(values) * 100:.2f}" if len(values) > 1 else ""
    return f"{label} {statistics.fmean(values):.2%}{sd}"


def table(results: list[list[dict]], args, wall: float) -> list[str]:
    seeds = len(results[0]) if results else 0
    lines = [
        "## Segmentation and detection (`bench/tasks_fashion.py`) — issues #8, #22",
        "",
        f"Command: `python bench/tasks_fashion.py --tasks {args.tasks} --limit-train {args.limit_train} --epochs-prototype "
        f"{args.epochs_prototype} --epochs-final {args.epochs_final} --cycles {args.cycles} --per-cycle "
        f"{args.per_cycle} --images {args.images} --seeds {args.seeds}` ({wall / 60:.0f} min wall on this machine's "
        f"CPU for what this invocation computed). "
        f"Training canvases: {args.limit_train} (minus 10% validation); test: 2,000 canvases from the "
        "Fashion-MNIST test images. The prototype trains P epochs; the FermiNet inherits its weights, is searched "
        f"with {args.cycles * args.per_cycle} candidates ({args.images} images, 1 epoch each) and fine-tuned F "
        "epochs; uniform width trains from scratch P + F epochs. Batch size 32; the task's default optimizer "
        f"(AdamW for segmentation, SGD for detection; docs/tasks.md). Mean ± sd over {seeds} seed(s).",
        "",
        "| task | network | val | test | other test metric | MACs | params | latency (batch 1, CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for runs in results:
        r0 = runs[0]
        m = r0["metric"]
        other = {"miou": "pixel_acc", "map50": "map"}[m]
        label = TASKS[r0["task"]][3]
        factor = statistics.fmean(r["uniform"]["factor"] for r in runs)
        for i, (name, key) in enumerate((("prototype", "prototype"), ("FermiNet (synthesis)", "fermi"),
                                         (f"uniform width x{factor:.2f}", "uniform"))):
            recs = [r[key] for r in runs]
            macs = statistics.fmean(rec["macs"] for rec in recs)
            ratio = statistics.fmean(r["prototype"]["macs"] / r[key]["macs"] for r in runs)
            lat = statistics.fmean(r["latency"][i] for r in runs)
            lines.append(f"| {r0['task']} ({r0['data']}) | {name} | {cell([x[f'val_{m}'] for x in recs], label)} | "
                         f"{cell([x[f'test_{m}'] for x in recs], label)} | "
                         f"{cell([x[f'test_{other}'] for x in recs], other)} | "
                         f"{macs / 1e6:.1f} M ({ratio:.2f}x fewer) | "
                         f"{statistics.fmean(x['params'] for x in recs) / 1e3:.0f} K | {lat * 1e3:.2f} ms |")
        fermi, uni = [r["fermi"][f"test_{m}"] for r in runs], [r["uniform"][f"test_{m}"] for r in runs]
        per_seed = "; ".join(
            f"{r['prototype'][f'test_{m}']:.1%} / {r['fermi'][f'test_{m}']:.1%} at {r['fermi']['macs'] / 1e6:.1f} M MACs"
            f"{'' if r['fermi'].get('meets') else ' (missed the metric floor)'} / {r['uniform'][f'test_{m}']:.1%}"
            for r in runs)
        notes.append(f"- {r0['task']}, test {label} per seed (prototype / FermiNet / uniform width): {per_seed}.")
        diff = (statistics.fmean(fermi) - statistics.fmean(uni)) * 100
        if len(runs) > 1:
            se = (statistics.variance(fermi) / len(fermi) + statistics.variance(uni) / len(uni)) ** 0.5 * 100
            notes.append(f"- {r0['task']}: FermiNet minus uniform width {diff:+.2f} points of test {label} "
                         f"({diff / se:+.1f} SE, {len(runs)} seeds).")
        else:
            notes.append(f"- {r0['task']}: FermiNet minus uniform width {diff:+.2f} points of test {label} (one seed).")
    return lines + [""] + notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="segment,detect")
    p.add_argument("--limit-train", type=int, default=5000)
    p.add_argument("--epochs-prototype", type=int, default=8)
    p.add_argument("--epochs-final", type=int, default=4)
    p.add_argument("--cycles", type=int, default=2)
    p.add_argument("--per-cycle", type=int, default=4)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--reduction", type=float, default=3.0)
    p.add_argument("--min-fraction", type=float, default=SynthConfig.min_fraction,
                   help=f"the fewest channels synthesis keeps of a layer (default {SynthConfig.min_fraction})")
    p.add_argument("--final-from", choices=["inherit", "scratch"], default="inherit",
                   help="the FermiNet fine-tunes the prototype's weights F epochs (inherit, default), or trains "
                        "from scratch P + F epochs, as uniform width does (scratch)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/bench-tasks")
    p.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = [[run_task(t, args, seed) for seed in seeds] for t in args.tasks.split(",")]
    lines = table(results, args, time.perf_counter() - t0)
    print("\n".join(lines))
    if not args.no_doc:
        write_section("\n".join([START, *lines, END]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
