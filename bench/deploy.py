"""Float against int8 ONNX for the fashion_cnn prototype and the README's FermiNet, from the exported files.

    .venv/bin/python bench/deploy.py [--run runs/fermi] [--repeats 5] [--calibration 512] [--no-docs]
    .venv/bin/python bench/deploy.py --prototype-weights W --fermi NET W [--fermi-label TEXT]

The run directory is the README's main job (`netdsl synth examples/fashion_cnn.net --data fashion-mnist --req
"acc>=0.90" --req "macs<=5.5M" --out runs/fermi`, with `--finalists 1 --export onnx-int8`: fermi-1 is the same
either way), made first if it is missing: its prototype.safetensors (the prototype as synthesis trained it, 8
epochs) and fermi-1.safetensors (the FermiNet, fully trained). `--prototype-weights` and `--fermi` take other
trained files instead (the run is then not needed; `--fermi-label` says in the table what that FermiNet is). Each is
exported complete (`netdsl export --to onnx`, and `--int8 --data fashion-mnist`), every file is scored on the
10,000 test images as a deployer runs it (onnxruntime, raw [0, 1] pixels) and the four files are timed side by
side at batch 1 on one onnxruntime thread (the one measurement, gensynth.latency.measure: interleaved, warm-up
until settled, repetitions until each median is known within ±2%),
`--repeats` times; the table gives the median of the repeats' medians and their range. Accuracy differences come
with the standard error of a paired difference on the same images (sqrt(disagreements) / n). Prints a table and
rewrites the section between `<!-- bench:deploy:start -->` and `<!-- bench:deploy:end -->` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdoc import write_section  # noqa: E402

from compiler.cost import network_cost  # noqa: E402
from compiler.diagnostics import NetWarning  # noqa: E402
from gensynth.data import load_dataset  # noqa: E402
from gensynth.deploy.package import export_model  # noqa: E402
from gensynth.latency.measure import file_runner, measure  # noqa: E402
from netdsl.loader import load_network  # noqa: E402

START, END = "<!-- bench:deploy:start -->", "<!-- bench:deploy:end -->"
DATA = "fashion-mnist"
README_JOB = ["examples/fashion_cnn.net", "--data", DATA, "--req", "acc>=0.90", "--req", "macs<=5.5M"]
# fermi-1 is the same network, trained the same way, with one finalist or two: the second is not needed here
ONE_FINALIST = ["--finalists", "1", "--export", "onnx-int8"]


def ensure_run(run: Path) -> None:
    """Run the README's synthesis into `run` unless it already holds a finished one."""
    if (run / "fermi-1.safetensors").exists() and (run / "report.md").exists():
        return
    from netdsl.cli.main import main

    resume = ["--resume", str(run)] if (run / "journal.sqlite").exists() else ["--out", str(run)]
    if main(["synth", *README_JOB, *ONE_FINALIST, *resume]) != 0:
        raise SystemExit("the README's synthesis failed")


def predictions(path: Path, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Class predictions of an ONNX file on raw pixels (onnxruntime, its default threads)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0].argmax(1) for i in range(0, len(x), batch)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/fermi", help="a finished README synthesis (made if missing)")
    ap.add_argument("--out", default="runs/bench-deploy", help="where the exported files go")
    ap.add_argument("--repeats", type=int, default=5, help="latency measurements, side by side each (default 5)")
    ap.add_argument("--calibration", type=int, default=512, help="int8 calibration images (default 512)")
    ap.add_argument("--prototype-weights", help="the trained prototype (default: RUN/prototype.safetensors)")
    ap.add_argument("--fermi", nargs=2, metavar=("NET", "WEIGHTS"),
                    help="a trained FermiNet (default: RUN/fermi-1.net and RUN/fermi-1.safetensors)")
    ap.add_argument("--fermi-label", default="fermi-1 (README FermiNet)", help="its name in the table")
    ap.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    run, out = Path(args.run), Path(args.out)
    if not (args.prototype_weights and args.fermi):
        ensure_run(run)
    out.mkdir(parents=True, exist_ok=True)
    fermi_net, fermi_weights = args.fermi or (run / "fermi-1.net", run / "fermi-1.safetensors")
    networks = {"prototype fashion_cnn": (load_network(str(ROOT / "examples" / "fashion_cnn.net")),
                                          Path(args.prototype_weights or run / "prototype.safetensors")),
                args.fermi_label: (load_network(str(fermi_net)), Path(fermi_weights))}
    files: dict[str, tuple[Path, Path]] = {}
    float_ops: dict[str, str] = {}
    for name, (g, weights) in networks.items():
        stem = out / ("prototype" if name.startswith("prototype") else "fermi")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NetWarning)
            export_model(g, "onnx", stem.with_suffix(".onnx"), weights=weights, data=DATA)
            shipped = export_model(g, "onnx", stem.with_suffix(".int8.onnx"), weights=weights, data=DATA, int8=True,
                                   calibration=args.calibration)
        files[name] = (stem.with_suffix(".onnx"), stem.with_suffix(".int8.onnx"))
        float_ops[name] = ", ".join(shipped.int8.float_ops) or "none"
    data = load_dataset(DATA, mean=(0.0,), std=(1.0,))  # raw [0, 1] pixels, as the exported files take them
    x, y = data.test_x.numpy(), data.test_y.numpy()
    paths = [p for pair in files.values() for p in pair]
    medians: dict[Path, list[float]] = {p: [] for p in paths}
    for _ in range(args.repeats):
        for path, lat in zip(paths, measure([file_runner(p, threads=1, sample=x[:1]) for p in paths])):
            medians[path].append(lat.median)
    rows = []
    for name, (f32, i8) in files.items():
        p32, p8 = predictions(f32, x), predictions(i8, x)
        a32, a8 = float((p32 == y).mean()), float((p8 == y).mean())
        se = math.sqrt(float((p32 != p8).sum())) / len(y)
        t32, t8 = statistics.median(medians[f32]), statistics.median(medians[i8])
        ratios = [a / b for a, b in zip(medians[f32], medians[i8])]
        cost = network_cost(networks[name][0])
        rows.append([name, f"{cost.macs / 1e6:.2f} M", f"{a32:.2%}", f"{a8:.2%}",
                     f"{(a8 - a32) * 100:+.2f} ± {se * 100:.2f}",
                     f"{t32 * 1e3:.3f} ({min(medians[f32]) * 1e3:.3f}-{max(medians[f32]) * 1e3:.3f})",
                     f"{t8 * 1e3:.3f} ({min(medians[i8]) * 1e3:.3f}-{max(medians[i8]) * 1e3:.3f})",
                     f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})", float_ops[name]])
    columns = ["network", "MACs", "float test acc", "int8 test acc", "int8 - float (points ± SE)",
               "float latency ms", "int8 latency ms", "float / int8", "kept float"]
    table = Table(title="float against int8 ONNX (onnxruntime, batch 1, 1 thread)")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    Console(width=200).print(table)
    import onnxruntime

    command = "python bench/deploy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [START, "## Float and int8 exports (`bench/deploy.py`) — issue #19", "",
             f"Command: `{command.strip()}`; "
             + (f"the weights given: {args.prototype_weights} (prototype) and {fermi_weights} ({args.fermi_label}). "
                if args.prototype_weights and args.fermi else
                f"the run is the README's main job (`netdsl synth "
                f"{' '.join(shlex.quote(a) for a in README_JOB + ONE_FINALIST)} --out runs/fermi`; its prototype "
                f"trained 8 epochs, fermi-1 fully trained). ")
             + f"Exported with `netdsl export --to onnx` and `--int8 --data {DATA} "
             f"--calibration {args.calibration}` (QDQ, per-channel int8 weights, uint8 activations, min-max). "
             f"Accuracy: the exported files on the 10,000 test images, raw [0, 1] pixels, onnxruntime "
             f"{onnxruntime.__version__}; ± is the standard error of the paired difference. Latency: batch 1, one "
             f"onnxruntime thread, the four files timed side by side (interleaved, order alternating), "
             f"{args.repeats} repeats of 200 runs each: median of the repeats' medians (range). Machine: "
             f"{platform.machine()}, shared by other jobs.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
             *("| " + " | ".join(r) + " |" for r in rows), "", END]
    if not args.no_docs:
        write_section("\n".join(lines))


if __name__ == "__main__":
    main()
