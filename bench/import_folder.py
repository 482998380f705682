"""Bring-your-own model and data: `netdsl import` time, folder:DIR decoding throughput, and an epoch from a folder.

    OMP_NUM_THREADS=1 python bench/import_folder.py [--reps 5] [--images 1500] [--workers 2]

1. Import of a ResNet-50-sized PyTorch model (the torchvision-style ResNet of tests/netdsl/importers/user_models.py,
   25.6 M parameters, 3x224x224) as a whole `netdsl import` process, with and without the output check, and of
   the same network exported to ONNX. Target: under 5 s.
2. Decoding an image folder (JPEG, mixed sizes) to 3x96x96 with gensynth.data.folder.decode_all, against a plain
   PIL + DataLoader loop doing the same decoding (open, convert, resize to cover, centre crop), same worker
   count, interleaved. Target: at least 0.9x the plain loop's images/s.
3. One training epoch of a small CNN from folder:DIR (images kept as uint8, normalised batch by batch) against the
   same images from an .npz (held as float32), interleaved; and from the folder when the images do not fit in
   memory (decoded again each epoch by the workers).

Prints a table and writes docs/benchmarks.md between the bench:import_folder markers.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import markers, write_section  # noqa: E402

START, END = markers("import_folder")
SMALL_NET = """
network Small {
    input image: [3, 32, 32]
    image -> conv(32, k=3, padding=1, bias=false) -> bn -> relu -> maxpool(2)
        -> conv(64, k=3, padding=1, bias=false) -> bn -> relu -> maxpool(2)
        -> conv(128, k=3, padding=1, bias=false) -> bn -> relu
    output logits = gap -> linear(4)
}
"""


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """median (min-max)"""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def timed_process(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one process: on a shared machine the CPU time is what the process
    would take alone (the import runs on one thread)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


IN_PROCESS = """
import sys, time
from pathlib import Path
t0 = time.perf_counter()
import torch
from netdsl.importers.importer import ImportRequest, import_model
t1 = time.perf_counter()
times = []
for _ in range(2):
    t = time.perf_counter()
    import_model(ImportRequest(sys.argv[1], Path(sys.argv[2]), input_shapes=((3, 224, 224),), force=True))
    times.append(time.perf_counter() - t)
print(t1 - t0, *times)
"""


def bench_import(reps: int, tmp: Path) -> list[str]:
    netdsl = str(Path(sys.executable).parent / "netdsl")
    model = f"{ROOT / 'tests' / 'netdsl' / 'importers' / 'user_models.py'}:resnet50"
    onnx_file = tmp / "resnet50.onnx"
    subprocess.run([netdsl, "export", "examples/resnet50.net", "--to", "onnx", "-o", str(onnx_file)], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    runs = {"PyTorch, with the output check": [], "PyTorch, --no-verify": [], "ONNX, with the output check": []}
    cpu = {what: [] for what in runs}
    phases: dict[str, list[float]] = {"starting Python, importing torch and netdsl": [],
                                      "first import in the process (torch.export's set-up included)": [],
                                      "a second import in the same process": []}
    for _ in range(reps):  # interleaved: the machine is shared
        base = [netdsl, "import", "-o", str(tmp / "r50.net"), "--force"]
        for what, argv in (("PyTorch, with the output check", [*base, model, "--input", "3x224x224"]),
                           ("PyTorch, --no-verify", [*base, model, "--input", "3x224x224", "--no-verify"]),
                           ("ONNX, with the output check", [*base, str(onnx_file)])):
            wall, seconds = timed_process(argv)
            runs[what].append(wall)
            cpu[what].append(seconds)
        out = subprocess.run([sys.executable, "-c", IN_PROCESS, model, str(tmp / "r50b.net")], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
        for key, value in zip(phases, out):
            phases[key].append(float(value))
    lines = [f"| {what} | {spread(t)} s | {spread(cpu[what])} s | < 5 s |" for what, t in runs.items()]
    lines += [f"| PyTorch in one process: {what} | {spread(t)} s | | |" for what, t in phases.items()]
    medians = {what: statistics.median(t) for what, t in {**runs, **phases}.items()}
    medians |= {f"cpu {what}": statistics.median(t) for what, t in cpu.items()}
    return ["| import of ResNet-50 (25.6 M params, 3x224x224) | wall, median (min-max) | CPU (user + system) | "
            "target |", "|---|---|---|---|", *lines], medians


def write_images(root: Path, count: int) -> None:
    """Smooth random pictures (JPEG, quality 90) from 160 to 400 pixels a side, in four class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(160, 401, 2))
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        noisy = np.asarray(img, dtype=np.int16) + rng.integers(-20, 21, (h, w, 3))
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


class PlainDecode:
    """The loop a user would write: PIL open, convert, resize so the picture covers the size, centre crop."""

    def __init__(self, files, size):
        self.files, self.size = files, size

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import torch
        from PIL import Image

        with Image.open(self.files[i]) as img:
            img = img.convert("RGB")
            scale = max(self.size / img.height, self.size / img.width)
            w, h = max(self.size, round(img.width * scale)), max(self.size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BILINEAR)
            left, top = (w - self.size) // 2, (h - self.size) // 2
            img = img.crop((left, top, left + self.size, top + self.size))
            return torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())


def bench_decoding(root: Path, reps: int, workers: int) -> tuple[list[str], float]:
    import torch

    from gensynth.data.folder import decode_all

    files = tuple(sorted(root.rglob("*.jpg")))
    ours, plain = [], []
    for _ in range(reps):
        t = time.perf_counter()
        decoded = decode_all(files, (3, 96, 96), workers)
        ours.append(len(files) / (time.perf_counter() - t))
        t = time.perf_counter()
        loader = torch.utils.data.DataLoader(PlainDecode(files, 96), batch_size=64, num_workers=workers)
        reference = torch.cat(list(loader)).numpy()
        plain.append(len(files) / (time.perf_counter() - t))
    assert (decoded == reference).all(), "the two loops must decode the same pixels"
    ratios = [a / b for a, b in zip(ours, plain)]
    return [f"| folder decoding to 3x96x96, {len(files)} JPEGs (160-400 px), {workers} workers | "
            f"{spread(ours, '{:.0f}')} img/s | {spread(plain, '{:.0f}')} img/s | {spread(ratios)}x | >= 0.9x |"], \
        statistics.median(ratios)


def bench_epoch(root: Path, reps: int, tmp: Path) -> list[str]:
    import torch

    import gensynth.data.folder as folder
    from compiler.backend.lower import lower_to_torch
    from gensynth.data import clear_dataset_cache, load_dataset
    from gensynth.training.train import TrainConfig, train
    from netdsl.loader import load_network_text

    g = load_network_text(SMALL_NET)
    spec = f"folder:{root}"
    cached = load_dataset(spec, input_shape=(3, 32, 32), val_fraction=0.0)
    x = np.concatenate([cached.train_x.store.numpy()[cached.train_x.index], cached.val_x.store.numpy()[cached.val_x.index]])
    y = np.concatenate([cached.train_y.numpy(), cached.val_y.numpy()])
    np.savez(tmp / "same.npz", x=x, y=y, x_test=cached.test_x.store.numpy()[cached.test_x.index],
             y_test=cached.test_y.numpy())

    def epoch(data) -> float:
        torch.manual_seed(0)
        model = lower_to_torch(g)
        config = TrainConfig(epochs=1, batch_size=128, device="cpu", channels_last=False)
        return train(model, data, config).epochs[0].train_s

    npz = load_dataset(f"npz:{tmp / 'same.npz'}")
    clear_dataset_cache()
    free = folder.free_memory
    folder.free_memory = lambda: 0  # nothing fits: decode every epoch
    lazy = load_dataset(spec, input_shape=(3, 32, 32))
    folder.free_memory = free
    times = {"folder (uint8 in memory)": [], "npz (float32 in memory)": [], "folder (decoded each epoch)": []}
    for _ in range(reps):
        times["folder (uint8 in memory)"].append(epoch(cached))
        times["npz (float32 in memory)"].append(epoch(npz))
        times["folder (decoded each epoch)"].append(epoch(lazy))
    base = times["npz (float32 in memory)"]
    rows = [f"| one epoch, {len(cached.train_y)} images at 3x32x32, from {what} | {spread(t)} s | "
            f"{spread([a / b for a, b in zip(t, base)])}x the npz epoch |" for what, t in times.items()]
    return ["| training | median (min-max) | ratio |", "|---|---|---|", *rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        write_images(tmp / "pictures", args.images)
        load_before = os.getloadavg()[0]
        decoding, ratio = bench_decoding(tmp / "pictures", args.reps, args.workers)
        epoch = bench_epoch(tmp / "pictures", args.reps, tmp)
        imports, medians = bench_import(args.reps, tmp)
        load_after = os.getloadavg()[0]
    lines = [
        "## Bring your own model and data (`bench/import_folder.py`) — issue #18",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python bench/import_folder.py --reps "
        f"{args.reps} --images {args.images} --workers {args.workers}`; {os.cpu_count()} CPU cores shared with other "
        f"work (load average {load_before:.1f} at the start, {load_after:.1f} at the end), so every comparison is "
        "interleaved and repeated; medians with the range over the repetitions.",
        "",
        *imports,
        "",
        "| decoding | netdsl | plain PIL + DataLoader | ratio | target |",
        "|---|---|---|---|---|",
        *decoding,
        "",
        *epoch,
        "",
        f"Decoding {'meets' if ratio >= 0.9 else 'misses'} its target (at least 0.9x the plain loop). The import "
        f"{'meets' if medians['PyTorch, --no-verify'] < 5 else 'misses'} its 5 s target in wall time on this shared "
        f"machine, and {'meets' if medians['cpu PyTorch, --no-verify'] < 5 else 'misses'} it in CPU time (what the "
        f"one-thread process takes alone: {medians['cpu PyTorch, --no-verify']:.1f} s without the output check, "
        f"{medians['cpu PyTorch, with the output check']:.1f} s with it). Of the wall time, starting Python and "
        f"importing torch take "
        f"{medians['starting Python, importing torch and netdsl']:.1f} s, and the first import in a process "
        f"{medians['first import in the process (torch.export' + chr(39) + 's set-up included)']:.1f} s against "
        f"{medians['a second import in the same process']:.1f} s for the next: torch.export imports and sets up "
        "torch._dynamo on its first call. The output check runs the original and the imported network once each on "
        "one random image. An epoch from a folder whose images do not fit in memory decodes every picture again "
        "in the workers.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(f"{START}\n{text}\n{END}")


if __name__ == "__main__":
    main()
