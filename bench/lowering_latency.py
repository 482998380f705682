"""Forward latency of lowered networks against hand-written PyTorch modules of the same architecture.

    .venv/bin/python bench/lowering_latency.py [--seconds S] [--no-compile] [--no-docs]

ResNet-18 and MobileNetV2 from examples/ are lowered with compiler.backend.lower.lower_to_torch and timed side by side
with torchvision-style modules written below (weights copied across and outputs checked equal first), in eval
mode under torch.inference_mode, at batch 1 and 32, with the one measurement netdsl uses everywhere
(gensynth.latency.measure: interleaved rounds whose order alternates, until each median's 95% interval is within
±2% or a time cap); medians are reported, on the wall clock and on process CPU time. With torch.compile both get
the same treatment. Prints a rich table and rewrites the section between `<!-- bench:lowering:start -->` and
`<!-- bench:lowering:end -->` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdoc import DOC, write_section  # noqa: E402

from compiler.backend.lower import lower_to_torch  # noqa: E402
from gensynth.latency.measure import Runner, measure  # noqa: E402
from netdsl.loader import load_network  # noqa: E402

START, END = "<!-- bench:lowering:start -->", "<!-- bench:lowering:end -->"


# ---- hand-written reference modules (torchvision's structure and forward) ------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin, layers = (64, 128, 256, 512), 64, []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res_connect = stride == 1 and cin == cout
        layers = [conv_bn_relu6(cin, hidden, k=1)] if expand_ratio != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1)]
        features, cin = [conv_bn_relu6(3, 32, stride=2)], 32
        for t, c, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(conv_bn_relu6(cin, 1280, k=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


NETWORKS = {"resnet18": ResNet18, "mobilenet_v2": MobileNetV2}


# ---- measurement ----------------------------------------------------------------------------------------------
def paired_models(stem: str) -> tuple[nn.Module, nn.Module]:
    """The lowered example and its hand-written twin holding the same weights (checked: same outputs)."""
    lowered = lower_to_torch(load_network(str(ROOT / "examples" / f"{stem}.net"))).eval()
    hand = NETWORKS[stem]().eval()
    ours, theirs = lowered.state_dict(), hand.state_dict()
    if [v.shape for v in ours.values()] != [v.shape for v in theirs.values()]:
        raise SystemExit(f"{stem}: the hand-written module's tensors do not line up with the lowered module's")
    hand.load_state_dict(dict(zip(theirs, ours.values())))
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(hand(x), lowered(x), rtol=1e-4, atol=1e-4)
    return lowered, hand


def timed(models: dict[str, nn.Module], x: torch.Tensor, seconds: float) -> dict[str, dict]:
    """Wall and process-CPU Latency of each model, measured interleaved (gensynth.latency.measure)."""
    threads = torch.get_num_threads()

    def forward(model):
        def call():
            with torch.inference_mode():
                return model(x)
        return call

    runners = [Runner(forward(m), "torch", threads, name) for name, m in models.items()]
    wall = measure(runners, max_seconds=seconds)
    cpu = measure(runners, max_seconds=seconds, clock="cpu")
    return {name: {"wall": w, "cpu": c} for name, w, c in zip(models, wall, cpu)}


def compiled(module: nn.Module, x: torch.Tensor) -> tuple[nn.Module, float]:
    """torch.compile'd module and the seconds its first (compiling) call took."""
    fast = torch.compile(module)
    start = time.perf_counter()
    with torch.inference_mode():
        fast(x)
    return fast, time.perf_counter() - start


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.machine()} {platform.processor() or platform.system()}, {cores} CPU cores available, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads")


def load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def run(seconds: dict[int, float], with_compile: bool, console: Console) -> list[dict]:
    rows = []
    for stem in NETWORKS:
        lowered, hand = paired_models(stem)
        for batch, cap in seconds.items():
            x = torch.randn(batch, 3, 224, 224)
            modes = [("eager", {"lowered": lowered, "hand-written": hand}, None)]
            if with_compile:
                a, ta = compiled(lowered, x)
                b, tb = compiled(hand, x)
                modes.append(("torch.compile", {"lowered": a, "hand-written": b}, (ta, tb)))
            for mode, models, compile_s in modes:
                t = timed(models, x, cap)
                ours, theirs = t["lowered"], t["hand-written"]
                row = {"network": stem, "batch": batch, "mode": mode, "reps": ours["wall"].runs,
                       "threads": torch.get_num_threads(), "lowered": ours["wall"].median,
                       "hand": theirs["wall"].median, "compile_s": compile_s,
                       "ratio": ours["wall"].median / theirs["wall"].median,
                       "ratio_low": ours["wall"].low / theirs["wall"].high,
                       "ratio_high": ours["wall"].high / theirs["wall"].low,
                       "cpu_ratio": ours["cpu"].median / theirs["cpu"].median}
                rows.append(row)
                console.print(f"{stem} batch {batch} {mode} {row['threads']} threads: wall {row['lowered'] * 1e3:.1f} "
                              f"vs {row['hand'] * 1e3:.1f} ms ({row['ratio']:.3f}, 95% {row['ratio_low']:.3f}-"
                              f"{row['ratio_high']:.3f}), CPU ratio {row['cpu_ratio']:.3f}, load {load()}")
    return rows


COLUMNS = ("network", "batch", "threads", "mode", "runs", "lowered ms", "hand-written ms", "ratio", "ratio 95%",
           "CPU ratio", "compile s (lowered / hand)")


def cells(r: dict) -> list[str]:
    comp = f"{r['compile_s'][0]:.0f} / {r['compile_s'][1]:.0f}" if r["compile_s"] else ""
    return [r["network"], str(r["batch"]), str(r["threads"]), r["mode"], str(r["reps"]), f"{r['lowered'] * 1e3:.1f}",
            f"{r['hand'] * 1e3:.1f}", f"{r['ratio']:.3f}", f"{r['ratio_low']:.3f}-{r['ratio_high']:.3f}",
            f"{r['cpu_ratio']:.3f}", comp]


def table(rows: list[dict]) -> Table:
    t = Table(title="forward latency, eval, inference_mode (medians)")
    for col in COLUMNS:
        t.add_column(col, justify="left" if col in ("network", "mode") else "right")
    for r in rows:
        t.add_row(*cells(r))
    return t


def section(command: str, rows: list[dict], load_before: str, load_after: str) -> str:
    lines = [START, "## Lowering latency (`bench/lowering_latency.py`)", "",
             f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Load average (1/5/15 min) before / after: {load_before} — {load_after}  ",
             f"Date: {datetime.date.today().isoformat()}", "",
             "Forward latency of `lower_to_torch(examples/X.net)` against a hand-written torchvision-style module of "
             "the same architecture holding the same weights, 3x224x224 inputs, eval mode, `torch.inference_mode`, "
             "measured by `gensynth.latency.measure` (interleaved rounds, order alternating per round, until each "
             "median's 95% interval is within ±2% or the time cap). Ratio = median lowered / median hand-written "
             "wall time (requirement: at most 1.05); ratio 95% = the range the two medians' intervals allow; CPU "
             "ratio = the same as ratio with process CPU time; compile s = the first compiled call, compilation "
             "included (inductor's on-disk cache may be warm from earlier runs).", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if c in ("network", "mode") else "---:" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    for threads in sorted({r["threads"] for r in rows}):
        mine = [r for r in rows if r["threads"] == threads]
        lines += ["", f"{threads} thread(s): worst ratio {max(r['ratio'] for r in mine):.3f} (95% up to "
                      f"{max(r['ratio_high'] for r in mine):.3f}), worst CPU ratio "
                      f"{max(r['cpu_ratio'] for r in mine):.3f}."]
    busiest = max(float(v) for v in (load_before + " / " + load_after).replace("—", "/").split("/"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if busiest > cores:
        lines += ["", f"Other processes kept the load average (up to {busiest:.1f}) above the {cores} cores during "
                      "this run, so wall times are inflated and noisy, most at more than one thread, where OpenMP "
                      "workers wait on descheduled peers; the single-thread rows and the CPU ratios are the "
                      "fairest comparison here."]
    return "\n".join(lines + [END])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0,
                   help="time cap of each side-by-side measurement at batch 1 (batch 32 gets four times as long)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
    p.add_argument("--threads", default=str(torch.get_num_threads()),
                   help="comma-separated torch thread counts to measure at (default: torch's, here %(default)s)")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args(argv)
    console = Console(highlight=False, width=200)
    command = shlex.join([".venv/bin/python", "bench/lowering_latency.py", *(sys.argv[1:] if argv is None else argv)])
    console.print(machine())
    before = load()
    torch.manual_seed(0)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        rows += run({1: args.seconds, 32: 4 * args.seconds}, not args.no_compile, console)
    console.print(table(rows))
    if not args.no_docs:
        write_section(section(command, rows, before, load()))
        console.print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
