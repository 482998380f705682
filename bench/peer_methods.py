"""The methods bench/peers.py compares; each turns (trained prototype, MAC target, seed) into one trained network.

Every runner returns a JSON-ready record: the network as .net text, MACs and parameters (netdsl's cost model,
the same yardstick for every method), validation and test accuracy, wall time and what it spent. Choices use the
validation split only; the test split is evaluated once, on the final network.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import version
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch.nn import functional

from compiler.backend.atomic import atomic_write
from compiler.backend.lower import lower_to_torch
from compiler.backend.weights import load_weights_file, save_weights
from compiler.cost import batched_costs, compile_costs, network_cost
from compiler.ir import architecture_hash
from compiler.printer import print_network
from compiler.rewrite.coupling import apply_widths
from gensynth.data import Dataset, load_dataset
from gensynth.generator import ALLOCATION_SPREAD, FACTORIZE, STRIDE, Sample
from gensynth.inquisitor import Budget, fine_tune_config, inquire
from gensynth.journal import Journal
from gensynth.loop import JOURNAL, SynthConfig, candidate_seed, make_task, synthesize
from gensynth.space import search_space
from gensynth.training.preprocessing import metadata_for
from gensynth.training.train import TrainConfig, evaluate, train
from gensynth.update import UPDATE_RATE

INQUIRING = ("synth", "random", "gen-random")  # the methods whose fine-tunes run in gensynth's inquisitor
GENERATING = ("synth", "gen-random")  # the methods that run netdsl synthesis (gen-random: with θG never updated)
MIN_FRACTION = 0.1  # the narrowest a channel group may get, for every method (SynthConfig's default)
RANDOM_WINDOW = 0.9  # random search keeps samples with MACs in [0.9 target, target], as synthesis lands near it
TP_STEPS = 95  # Torch-Pruning removes 1% of each group's channels per step (pruning_ratio 0.95 in 95 steps)
TAYLOR_BATCH = 128  # training images (one batch) whose loss gradient feeds each Taylor importance step


@dataclass
class Bench:
    """One comparison's shared settings: prototype, data, epochs, search budget, where results go."""

    net: nx.DiGraph
    data: str
    limit_train: int | None
    prototype_epochs: int
    final_epochs: int
    cycles: int
    per_cycle: int
    images: int
    device: str
    root: Path  # --out: prototypes/ is shared between configurations, each configuration has its own folder
    synth_utility: str = "accuracy"  # what synthesis maximises under macs<=T (the peers' objective too)
    distill: float = 0.0  # synth and random (the methods that run the inquisitor): distillation weight of every fine-tune
    final_from: str = "inherit"  # synth and random: finalists fine-tune F epochs, or train from "scratch" P + F epochs
    search_from: str = "inherit"  # synth and random: search candidates fine-tune inherited weights or train from scratch
    spread: float = ALLOCATION_SPREAD  # synth: the generator's per-sample spread of each group's log width factor
    factorize: float = FACTORIZE  # synth: the generator's starting probability of factorizing each conv
    stride: float = STRIDE  # synth: the generator's starting probability of giving each conv stride 2
    widen: float = 1.0  # synth: how far the generator may widen each free group (netdsl synth --widen; 1: narrow only)
    screen: int = 1  # synth: G's samples per candidate that the predictor screens (netdsl synth --screen; 1: off)
    update_rate: float = UPDATE_RATE  # synth: θG's step per cycle (netdsl synth --update-rate)
    update_temperature: float = 1.0  # synth: the update's softmax temperature (netdsl synth --update-temperature)

    @property
    def data_options(self) -> dict:
        return {"limit_train": self.limit_train} if self.limit_train else {}

    def dataset(self) -> Dataset:
        return load_dataset(self.data, **self.data_options)  # cached in-process, shared with inquire()

    @property
    def candidates(self) -> int:
        return self.cycles * self.per_cycle

    def budget(self) -> Budget:
        scratch = self.final_from == "scratch"  # then the finalist gets uniform width's budget, P + F from scratch
        return Budget(images=self.images, epochs=1, device=self.device, distill=self.distill,
                      final_epochs=self.final_epochs + (self.prototype_epochs if scratch else 0),
                      final_init=self.final_from, search_init=self.search_from)

    def tag(self, method: str) -> str:
        """The method's name in result files: synth and random results of other recipes are kept apart."""
        if method not in INQUIRING:
            return method
        generating = method in GENERATING
        spread = f"-a{self.spread:g}" if generating and self.spread != ALLOCATION_SPREAD else ""
        factorize = f"-f{self.factorize:g}" if generating and self.factorize != FACTORIZE else ""
        stride = f"-st{self.stride:g}" if generating and self.stride else ""  # 0: the results before it
        widen = f"-w{self.widen:g}" if generating and self.widen > 1 else ""
        screen = f"-gp{self.screen}" if method == "synth" and self.screen > 1 else ""  # gen-random does not learn
        update = (f"-r{self.update_rate:g}t{self.update_temperature:g}" if method == "synth" and
                  (self.update_rate, self.update_temperature) != (UPDATE_RATE, 1.0) else "")
        return (method + (f"-d{self.distill:g}" if self.distill else "") + spread + factorize + stride + widen + screen
                + update
                + ("-ss" if self.search_from == "scratch" else "") + ("-scratch" if self.final_from == "scratch" else ""))

    def prototype_record(self, seed: int) -> Path:
        """Where the trained prototype of a seed is recorded (its weights beside it, .safetensors)."""
        return self.root / "prototypes" / f"{self.data_tag}-p{self.prototype_epochs}-s{seed}.json"

    @property
    def data_tag(self) -> str:
        slug = "".join(c if c.isalnum() else "-" for c in self.data).strip("-")
        return f"{slug}-n{self.limit_train or 'all'}"

    @property
    def out(self) -> Path:
        """Results of this configuration (a changed budget never mixes with older results)."""
        return self.root / (f"{self.data_tag}-p{self.prototype_epochs}-f{self.final_epochs}-"
                            f"c{self.cycles}x{self.per_cycle}-i{self.images}-u{self.synth_utility}")

    @cached_property
    def space(self):
        return search_space(self.net)

    @property
    def plan(self):
        return self.space.plan

    @cached_property
    def program(self):
        return compile_costs(self.net)

    @cached_property
    def prototype_cost(self):
        return network_cost(self.net)

    def input_shape(self) -> tuple:
        return tuple(self.net.nodes[self.net.graph["inputs"][0]]["shape"])


def fashion_bench(root: Path, limit_train: int = 20000, prototype_epochs: int = 10, final_epochs: int = 3) -> Bench:
    """bench/peers.py's Fashion-MNIST setting without a search: for side studies that reuse its prototypes."""
    from netdsl.loader import load_network

    net = load_network(str(Path(__file__).resolve().parent.parent / "examples" / "fashion_cnn.net"))
    return Bench(net=net, data="fashion-mnist", limit_train=limit_train, prototype_epochs=prototype_epochs,
                 final_epochs=final_epochs, cycles=1, per_cycle=1, images=1, device="auto", root=root)


# ---------------------------------------------------------------------------------------------- widths


def _free(b: Bench) -> dict[int, object]:
    return {grp.id: grp for grp in b.space.groups}


def width_rows(b: Bench, fractions: np.ndarray) -> np.ndarray:
    """Rows of widths (columns = the cost program's width groups) with each free group at fraction x channels.

    fractions has one column per free group (in b.space.groups order); widths are rounded to the group's
    multiple and never below its minimum (MIN_FRACTION of the prototype's, as synthesis)."""
    fractions = np.atleast_2d(fractions)
    free = _free(b)
    order = [grp.id for grp in b.space.groups]
    rows = np.empty((len(fractions), len(b.program.width_groups)), dtype=np.int64)
    for j, gid in enumerate(b.program.width_groups):
        if gid not in free:
            rows[:, j] = b.plan.groups[gid].channels
            continue
        grp = free[gid]
        m = grp.multiple_of
        w = np.rint(fractions[:, order.index(gid)] * grp.channels / m).astype(np.int64) * m
        rows[:, j] = np.clip(w, b.space.min_width(grp, MIN_FRACTION), grp.channels // m * m)
    return rows


def row_widths(b: Bench, row: np.ndarray) -> dict[int, int]:
    free = _free(b)
    return {int(gid): int(w) for gid, w in zip(b.program.width_groups, row) if gid in free}


def widths_macs(b: Bench, widths: dict[int, int]) -> int:
    row = [widths.get(gid, b.plan.groups[gid].channels) for gid in b.program.width_groups]
    return int(batched_costs(b.program, np.array([row], dtype=np.int64))[0][0])


def uniform_widths(b: Bench, target: int) -> tuple[dict[int, int], float]:
    """The largest single factor on every free group whose network has <= target MACs (binary search)."""
    n = len(b.space.groups)

    def macs(f: float) -> int:
        return int(batched_costs(b.program, width_rows(b, np.full((1, n), f)))[0][0])

    if macs(0.0) > target:
        raise SystemExit(f"uniform width: even the narrowest widths exceed {target:,} MACs")
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs(mid) <= target else (lo, mid)
    return row_widths(b, width_rows(b, np.full((1, n), lo))[0]), lo


def random_widths(b: Bench, target: int, count: int, seed: int) -> list[dict[int, int]]:
    """count random per-group widths (fraction ~ U(MIN_FRACTION, 1) per group) with MACs in the window under target."""
    rng = np.random.default_rng([seed, target, 0x72616E64])
    found: list[np.ndarray] = []
    for _ in range(200):
        rows = width_rows(b, rng.uniform(MIN_FRACTION, 1.0, size=(4096, len(b.space.groups))))
        macs, _ = batched_costs(b.program, rows)
        found.extend(rows[(macs <= target) & (macs >= RANDOM_WINDOW * target)])
        if len(found) >= count:
            return [row_widths(b, r) for r in found[:count]]
    raise SystemExit(f"random search: fewer than {count} of 819,200 random widths fall in "
                     f"[{RANDOM_WINDOW:.0%}, 100%] of {target:,} MACs")


def l2_kept(b: Bench, state: dict, widths: dict[int, int]) -> dict[str, list[int]]:
    """Per node, the prototype channels kept: the highest summed L2 norm of the group's writers' filters."""
    kept = {}
    for gid, w in widths.items():
        grp = b.plan.groups[gid]
        score = 0
        for writer in grp.writers:
            weight = state[f"{writer}.weight"]
            if b.net.nodes[writer]["op"] == "conv_transpose":
                weight = weight.transpose(0, 1)
            score = score + weight.flatten(1).pow(2).sum(1)
        keep = sorted(torch.argsort(score, descending=True, stable=True)[:w].tolist())
        for member in grp.members:
            kept[member] = keep
    return kept


# ---------------------------------------------------------------------------------------------- common


def without_test(ds: Dataset) -> Dataset:
    return dataclasses.replace(ds, test_x=ds.test_x[:0], test_y=ds.test_y[:0])


def record(method: str, g: nx.DiGraph, val: float, test: float, wall: float, **extra) -> dict:
    cost = network_cost(g)
    return {"method": method, "net": print_network(g), "arch": architecture_hash(g), "macs": cost.macs,
            "params": cost.params, "val_acc": val, "test_acc": test, "wall_s": wall, **extra}


def scores(model: torch.nn.Module, ds: Dataset, device: str) -> tuple[float, float]:
    """(validation, test) accuracy."""
    return (evaluate(model, ds.val_x, ds.val_y, device=device).accuracy,
            evaluate(model, ds.test_x, ds.test_y, device=device).accuracy)


def fine_tune(model: torch.nn.Module, ds: Dataset, epochs: int, seed: int, device: str) -> tuple[float, float]:
    """The final fine-tune of an inherited network, configured exactly as inquire() does for a finalist."""
    cfg = dataclasses.replace(fine_tune_config(Budget(device=device), ds.task, seed, final=True), epochs=epochs)
    return scores(model, ds, train(model, without_test(ds), cfg).device)


def train_from_scratch(b: Bench, model: torch.nn.Module, seed: int) -> tuple[float, float]:
    """(validation, test) accuracy after the standard recipe for P + F epochs: uniform width's budget."""
    ds = b.dataset()
    result = train(model, without_test(ds), TrainConfig(epochs=b.prototype_epochs + b.final_epochs, seed=seed,
                                                        device=b.device))
    return scores(model, ds, result.device)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1)
    atomic_write(path, text)


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines log (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------- prototype


def prototype(b: Bench, seed: int) -> dict:
    """The prototype trained P epochs with the standard recipe (TrainConfig defaults); cached on disk."""
    meta = b.prototype_record(seed)
    path = meta.with_suffix(".safetensors")
    if path.exists() and meta.exists():
        return json.loads(meta.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = b.dataset()
    log(f"prototype seed {seed}: training {b.prototype_epochs} epochs on {len(ds.train_y):,} images")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = lower_to_torch(b.net)
    result = train(model, without_test(ds), TrainConfig(epochs=b.prototype_epochs, seed=seed, device=b.device),
                   on_epoch=lambda e: log(f"  epoch {e.epoch}: val {e.val_acc:.2%} ({e.wall_s:.0f} s)"))
    save_weights(model, path, metadata_for(b.net, ds))  # says how its inputs were normalised, as netdsl train's do
    val, test = scores(model, ds, result.device)
    rec = record("prototype", b.net, val, test, time.perf_counter() - t0, seed=seed, weights=str(path),
                 epochs=b.prototype_epochs)
    write_json(meta, rec)
    return rec


# ---------------------------------------------------------------------------------------------- methods


def run_synthesis(b: Bench, proto: dict, target: int, k: int, seed: int, learn: bool = True) -> dict:
    """netdsl generative synthesis with --req macs<=target from the cached prototype; one finalist. learn=False:
    the same run with θG never updated (netdsl synth --no-learn), i.e. random search in the generator's space."""
    method = "synth" if learn else "gen-random"
    out = b.out / f"{b.tag(method)}-{k}x-s{seed}"
    cfg = SynthConfig(data=b.data, requirements=[f"macs<={target}"], cycles=b.cycles, per_cycle=b.per_cycle,
                      budget=b.budget(), seed=seed, prototype_epochs=b.prototype_epochs, utility=b.synth_utility,
                      prototype_weights=proto["weights"], finalists=1, min_fraction=MIN_FRACTION,
                      data_options=b.data_options, allocation_spread=b.spread, factorize=b.factorize,
                      stride=b.stride, learn=learn, widen=b.widen, screen=b.screen, update_rate=b.update_rate,
                      update_temperature=b.update_temperature)

    def event(kind: str, payload: dict) -> None:
        if kind in ("candidate", "final"):
            log(f"  {kind} {payload.key}: {payload.macs / 1e6:.2f} M MACs, val {payload.val['acc']:.2%}")

    result = synthesize(b.net, cfg, out, resume=(out / JOURNAL).exists(), on_event=event)
    final = result.finals[0]
    journal = Journal(out / JOURNAL)
    wall = journal.get_meta("wall_s")
    journal.close()
    from netdsl.loader import load_network

    g = load_network(str(out / f"{final.name}.net"))
    return record(method, g, final.val["acc"], final.test["acc"], wall, search_candidates=len(result.candidates),
                  run=str(out))


def run_random(b: Bench, proto: dict, target: int, k: int, seed: int) -> dict:
    """N random per-group widths under the target, L2-inherited and fine-tuned like synthesis candidates."""
    from safetensors.torch import load_file

    out = b.out / f"{b.tag('random')}-{k}x-s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "candidates.jsonl"
    done = {r["key"]: r for r in read_jsonl(journal)}
    state = load_file(proto["weights"])
    weights = Path(proto["weights"])
    cfg = SynthConfig(data=b.data, requirements=[f"macs<={target}"], budget=b.budget(), seed=seed,
                      data_options=b.data_options)

    def sample(i: int, widths: dict[int, int]) -> Sample:
        child = apply_widths(b.net, widths, b.plan)
        cost = network_cost(child)
        # the fine-tune seed (hence subset and batch order) of the synthesis candidate in the same position
        s = candidate_seed(seed, i // b.per_cycle, i % b.per_cycle)
        return Sample(seed=s, graph=child, kept=l2_kept(b, state, widths), widths={str(g): w for g, w in widths.items()},
                      dropped=(), picks={}, macs=cost.macs, params=cost.params, memory=cost.peak_activation_bytes,
                      meets=cost.macs <= target, arch=architecture_hash(child))

    all_widths = random_widths(b, target, b.candidates, seed)
    for i, widths in enumerate(all_widths):
        key = f"random:{i}"
        if key in done:
            continue
        rec = inquire(make_task(key, 0, sample(i, widths), b.space, cfg, weights)).to_json()
        rec.pop("importance", None)
        rec["index"] = i
        done[key] = rec
        with journal.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        log(f"  candidate {key}: {rec['macs'] / 1e6:.2f} M MACs, val {rec['val_acc']:.2%}")
    best = max((done[f"random:{i}"] for i in range(len(all_widths))), key=lambda r: r["val_acc"])
    s = sample(best["index"], all_widths[best["index"]])
    final = inquire(make_task("final", 0, s, b.space, cfg, weights, final=True,
                              save_to=str(out / "final.safetensors"))).to_json()
    log(f"  final: {final['macs'] / 1e6:.2f} M MACs, val {final['val_acc']:.2%}, test {final['test_acc']:.2%}")
    wall = sum(done[f"random:{i}"]["wall_s"] for i in range(len(all_widths))) + final["wall_s"]
    return record("random", s.graph, final["val_acc"], final["test_acc"], wall, search_candidates=len(all_widths),
                  widths={str(g): w for g, w in all_widths[best["index"]].items()}, inherit="highest-L2 channels")


def import_torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise SystemExit("Torch-Pruning is not installed; install it without touching torch:\n"
                         "    .venv/bin/pip install --no-deps torch-pruning\n"
                         "or leave its methods out (--methods synth,uniform,random)") from None
    return torch_pruning


def run_torch_pruning(b: Bench, proto: dict, target: int, k: int, seed: int, importance: str,
                      global_pruning: bool = False) -> dict:
    """Torch-Pruning (DepGraph) on the lowered, trained prototype, 1% steps until <= target MACs, then fine-tuned."""
    tp = import_torch_pruning()
    t0 = time.perf_counter()
    ds = b.dataset()
    model = lower_to_torch(b.net)
    load_weights_file(model, proto["weights"])
    model.eval()
    example = torch.randn(1, *b.input_shape())
    # keep what netdsl keeps fixed (the classifier: its outputs are the classes)
    ignored = [model.get_submodule(w) for grp in b.plan.groups if grp.fixed for w in grp.writers]
    scorer = (tp.importance.MagnitudeImportance(p=2) if importance == "l2" else tp.importance.TaylorImportance())
    pruner = tp.pruner.MetaPruner(model, example, importance=scorer, pruning_ratio=TP_STEPS / 100,
                                  iterative_steps=TP_STEPS, ignored_layers=ignored, global_pruning=global_pruning)
    idx = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(seed))[:TAYLOR_BATCH]
    xb, yb = ds.train_x[idx], ds.train_y[idx]

    def widths() -> dict[int, int]:
        out = {}
        for grp in b.space.groups:
            sizes = set()
            for w in grp.writers:
                mod = model.get_submodule(w)
                sizes.add(mod.out_features if isinstance(mod, torch.nn.Linear) else mod.out_channels)
            if len(sizes) != 1:
                raise SystemExit(f"Torch-Pruning pruned the coupled layers {grp.writers} to different widths {sizes}")
            out[grp.id] = sizes.pop()
        return out

    steps = 0
    while widths_macs(b, widths()) > target:
        if steps == TP_STEPS:
            raise SystemExit(f"Torch-Pruning did not reach {target:,} MACs in {TP_STEPS} steps")
        if importance == "taylor":  # TaylorImportance reads the weights' gradients
            model.zero_grad()
            functional.cross_entropy(model(xb), yb).backward()
        pruner.step()
        steps += 1
    model.zero_grad(set_to_none=True)
    tp_ops, tp_params = tp.utils.count_ops_and_params(model, example)
    child = apply_widths(b.net, widths(), b.plan)
    net = lower_to_torch(child)
    net.load_state_dict(model.state_dict(), strict=True)  # the pruned model is exactly the netdsl network
    prune_s = time.perf_counter() - t0
    val, test = fine_tune(net, ds, b.final_epochs, seed, b.device)
    method = f"tp-{importance}" + ("-global" if global_pruning else "")
    return record(method, child, val, test, time.perf_counter() - t0, prune_steps=steps, prune_s=prune_s,
                  tp_ops=float(tp_ops), tp_params=int(tp_params), widths={str(g): w for g, w in widths().items()},
                  torch_pruning=version("torch-pruning"))


def run_uniform(b: Bench, proto: dict, target: int, k: int, seed: int) -> dict:
    """Every free group scaled by one factor, trained from scratch for P + F epochs (the standard recipe)."""
    t0 = time.perf_counter()
    widths, factor = uniform_widths(b, target)
    child = apply_widths(b.net, widths, b.plan)
    torch.manual_seed(seed)
    val, test = train_from_scratch(b, lower_to_torch(child), seed)
    return record("uniform", child, val, test, time.perf_counter() - t0, factor=factor,
                  widths={str(g): w for g, w in widths.items()}, epochs=b.prototype_epochs + b.final_epochs)


RUNNERS: dict[str, Callable[..., dict]] = {
    "synth": run_synthesis,
    "gen-random": lambda *a: run_synthesis(*a, learn=False),
    "tp-l2": lambda *a: run_torch_pruning(*a, importance="l2"),
    "tp-taylor": lambda *a: run_torch_pruning(*a, importance="taylor"),
    "tp-l2-global": lambda *a: run_torch_pruning(*a, importance="l2", global_pruning=True),
    "tp-taylor-global": lambda *a: run_torch_pruning(*a, importance="taylor", global_pruning=True),
    "uniform": run_uniform,
    "random": run_random,
}
