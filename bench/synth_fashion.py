"""Synthesis on real Fashion-MNIST: a FermiNet from examples/fashion_cnn.net, and 20 networks from the generator.

    python bench/synth_fashion.py [--out runs/bench-fermi] [--device cpu]

Runs (or resumes) `netdsl synth` and `netdsl generate --train` as whole processes, measures the batch-1 CPU
latency of the prototype and the best FermiNet side by side, prints a table and writes it to
docs/benchmarks.md between the bench:synth markers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdoc import markers, write_section  # noqa: E402
from latency import latency_side_by_side  # noqa: E402

START, END = markers("synth")



def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-fermi")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--macs", default="5.5M", help="MAC requirement (the prototype has 21.9 M)")
    ap.add_argument("--acc", default="0.90")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--generate-epochs", type=int, default=2)
    ap.add_argument("--weights", help="trained prototype weights (e.g. from bench/train_fashion.py --full)")
    ap.add_argument("--stride", type=float, help="netdsl synth --stride P (default: netdsl's, 0)")
    ap.add_argument("--no-docs", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    netdsl = str(Path(sys.executable).parent / "netdsl")
    out = ROOT / args.out
    reqs = ["--req", f"acc>={args.acc}", "--req", f"macs<={args.macs}"]
    synth = [netdsl, "synth", "examples/fashion_cnn.net", "--data", "fashion-mnist", *reqs, "--device", args.device]
    synth += ["--weights", args.weights] if args.weights else []
    synth += ["--stride", f"{args.stride:g}"] if args.stride is not None else []
    synth += ["--resume", str(out)] if (out / "journal.sqlite").exists() else ["--out", str(out)]
    synth_s = run(synth)
    from gensynth.journal import Journal

    journal = Journal(out / "journal.sqlite")
    prototype = journal.candidate("prototype").to_json()
    finals = [r.to_json() for r in journal.candidates() if r.final and r.key.startswith("final:")]
    searched = journal.searched()
    wall = journal.get_meta("wall_s")
    journal.close()
    gen_dir = ROOT / (args.out + "-generated")
    generate = [netdsl, "generate", str(out / "generator.json"), "--seed", "1000", "--count", str(args.count),
                "-o", str(gen_dir), "--train", "--data", "fashion-mnist", "--epochs", str(args.generate_epochs),
                "--device", args.device, "--json"]
    gen_s = run(generate)
    generated = json.loads((gen_dir / "generated.json").read_text())
    best = max(finals, key=lambda r: (r.get("meets", False), r["utility"]))
    best_file = out / f"{best['name']}.net"
    proto_file = ROOT / "examples" / "fashion_cnn.net"
    lat_proto, lat_best = latency_side_by_side([Path(proto_file).read_text(), Path(best_file).read_text()])
    macs_bound = float(args.macs.rstrip("M")) * 1e6
    distinct = len({g["arch"] for g in generated})
    within = sum(g["macs"] <= macs_bound for g in generated)
    meets_acc = sum(g["val_acc"] >= float(args.acc) for g in generated)
    cores = os.cpu_count()
    lines = [
        "## Generative synthesis on Fashion-MNIST (issue: synth and generate)",
        "",
        f"Command: `python bench/synth_fashion.py --out {args.out}"
        + (f" --stride {args.stride:g}" if args.stride is not None else "")
        + (f" --weights {args.weights}` (the prototype trained by bench/train_fashion.py --full)" if args.weights
           else "`") + " — which runs "
        f"`netdsl synth examples/fashion_cnn.net --data fashion-mnist --req \"acc>={args.acc}\" "
        f"--req \"macs<={args.macs}\"" + (f" --stride {args.stride:g}" if args.stride is not None else "")
        + "` (defaults: prototype 8 epochs, 4 cycles x 6 candidates, 12k-image "
        f"fine-tunes, 2 finalists x 10 epochs) and `netdsl generate ... --seed 1000 --count {args.count} --train "
        f"--epochs {args.generate_epochs}`. Machine: {cores} CPU cores, device {args.device}. Accuracies: validation "
        "split chooses, test split is reported.",
        "",
        "| network | val acc | test acc | MACs | params | NetScore | density | latency (batch 1, side by side) |",
        "|---|---|---|---|---|---|---|---|",
        f"| prototype fashion_cnn | {prototype['val_acc']:.2%} | {prototype['test_acc']:.2%} | "
        f"{prototype['macs'] / 1e6:.2f} M | {prototype['params'] / 1e3:.1f} K | {prototype['netscore']:.1f} | "
        f"{prototype['density']:.1f} | {lat_proto * 1e3:.3f} ms |",
        f"| {best['name']} (best FermiNet) | {best['val_acc']:.2%} | {best['test_acc']:.2%} | "
        f"{best['macs'] / 1e6:.2f} M | {best['params'] / 1e3:.1f} K | {best['netscore']:.1f} | {best['density']:.1f} "
        f"| {lat_best * 1e3:.3f} ms |",
        "",
        f"- MACs: {prototype['macs'] / best['macs']:.2f}x fewer; latency ratio prototype/FermiNet "
        f"{lat_proto / lat_best:.2f}; FermiNet meets every requirement: {'yes' if best.get('meets') else 'no'}.",
        f"- Search: {len(searched)} candidates; synth wall time {synth_s / 60:.1f} min for this invocation "
        f"({(wall or 0) / 60:.1f} min journaled over the whole run).",
        f"- Generator: {args.count} seeds gave {distinct} distinct architectures, {within}/{args.count} within "
        f"macs<={args.macs}, {meets_acc}/{args.count} with validation accuracy >= {args.acc} after the "
        f"{args.generate_epochs}-epoch fine-tune; generate wall time {gen_s / 60:.1f} min.",
        "",
        "| seed | MACs | params | val acc | test acc |",
        "|---|---|---|---|---|",
        *(f"| {g['seed']} | {g['macs'] / 1e6:.2f} M | {g['params'] / 1e3:.1f} K | {g['val_acc']:.2%} | "
          f"{g['test_acc']:.2%} |" for g in generated),
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_docs:
        write_section(f"{START}\n{text}\n{END}")


if __name__ == "__main__":
    main()
