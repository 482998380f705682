"""netdsl cost: MACs, parameters and activation memory per layer (or per block) and in total."""

from __future__ import annotations

import re

from compiler.diagnostics import NetError, printable
from netdsl.cli.arguments import (
    add_json_argument,
    add_latency_arguments,
    add_network_arguments,
    load_from_args,
    print_json,
)
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import Column, emit, figure, size, table, wrap_items

BAR_WIDTH = 20


def register(sub) -> None:
    p = sub.add_parser("cost", help="count MACs, parameters and activation memory", description=__doc__)
    add_network_arguments(p)
    p.add_argument("--input", action="append", default=[], metavar="[NAME=]NxCxHxW",
                   help="cost at another input size, e.g. 1x3x160x160 (name the input when there are several; "
                        "N scales MACs, other ops and activations; default: the network's own input shapes, batch 1)")
    p.add_argument("--depth", type=int, metavar="N", help="one row per block: group layers by their first N name parts (default: one row per layer)")
    p.add_argument("--dtype-bytes", type=int, default=4, metavar="B", help="bytes per activation element (default 4)")
    p.add_argument("--latency", action="store_true",
                   help="also measure the latency on this machine at the input's batch size (loads PyTorch; "
                        "--runtime, --threads and --clock say how)")
    add_latency_arguments(p)
    add_json_argument(p, "per-node and total figures")
    p.set_defaults(run=run)


def human(n: int, unit: str = "") -> str:
    """3 significant digits with k/M/G/T: (1814073344, "MACs") -> '1.81 G MACs'."""
    return figure(n, unit)


def human_bytes(n: int) -> str:
    """Decimal units: 1 MB = 10**6 bytes."""
    return size(n)


def parse_input(text: str, inputs: list[str], shapes: dict[str, list[int]]) -> tuple[str, int, tuple[int, ...]]:
    """'[NAME=]NxCxHxW' -> (input name, batch, per-sample shape); NetError for a bad size."""
    name, _, dims = text.rpartition("=")
    if not name:
        if len(inputs) != 1:
            raise NetError(f"--input {text}: the network has {len(inputs)} inputs ({', '.join(inputs)}); "
                           "name one: --input NAME=NxCxHxW")
        name = inputs[0]
    if name not in inputs:
        raise NetError(f"--input {text}: the network has no input '{name}' (inputs: {', '.join(inputs)})")
    want = "NxCxHxW" if len(shapes[name]) == 3 else "Nx" + "x".join(f"D{i + 1}" for i in range(len(shapes[name])))
    if not re.fullmatch(r"-?\d{1,12}(x-?\d{1,12})*", dims.strip()):
        raise NetError(f"--input {printable(text, 80)}: expected {want}, e.g. 1x3x224x224 (sizes of at most 12 digits)")
    sizes = [int(s) for s in dims.strip().split("x")]
    if len(sizes) != len(shapes[name]) + 1:
        raise NetError(f"--input {text}: expected {want} ({len(shapes[name]) + 1} sizes) for input '{name}' "
                       f"{shapes[name]}, got {len(sizes)} sizes")
    if any(s <= 0 for s in sizes):
        raise NetError(f"--input {text}: sizes must be positive")
    return name, sizes[0], tuple(sizes[1:])


def resize(g, specs: list[str]):
    """The network at the --input sizes, and the batch size (1 unless given)."""
    from compiler.cost import with_input_shapes

    shapes = {n: g.nodes[n]["attrs"]["shape"] for n in g.graph["inputs"]}
    parsed = [parse_input(s, list(g.graph["inputs"]), shapes) for s in specs]
    batches = {b for _, b, _ in parsed}
    if len(batches) > 1:
        raise NetError(f"--input: every input needs the same batch size, got {sorted(batches)}")
    if not parsed:
        return g, 1
    return with_input_shapes(g, {name: shape for name, _, shape in parsed}), batches.pop()


def block_rows(g, report, depth: int | None, batch: int) -> list[dict]:
    """Per-node figures, or summed per name prefix of `depth` parts; MACs/other ops/activations times batch."""
    from netdsl.cli.show import group_kind

    rows: dict[str, dict] = {}
    members: dict[str, list[str]] = {}
    for node in report.nodes():
        name = node["name"]
        key = ".".join(name.split(".")[:depth]) if depth else name
        row = rows.get(key)
        if row is None:
            row = rows[key] = {"name": key, "op": node["op"], "layers": 0, "macs": 0, "params": 0,
                               "buffers": 0, "other_ops": 0, "activation_elements": 0, "activation_bytes": 0}
            members[key] = []
        row["layers"] += 1
        members[key].append(name)
        if key != name:
            row["op"] = group_kind(g, key, members[key]) or f"{row['layers']} layers"
        row["shape"] = list(g.nodes[name]["shape"])
        for f in ("macs", "other_ops", "activation_elements", "activation_bytes"):
            row[f] += node[f] * batch
        row["params"] += node["params"]
        row["buffers"] += node["buffers"]
    return list(rows.values())


def totals(report, batch: int) -> dict:
    t = report.totals()
    for f in ("macs", "other_ops", "activation_elements", "activation_bytes", "peak_activation_elements",
              "peak_activation_bytes"):
        t[f] *= batch
    return t


def columns(label: str) -> list[Column]:
    """The cost table's columns; at a narrow width the share bar goes first, then the op, then the output size."""
    return [Column(label), Column("op", wrap=True, min_width=10, drop=2), Column("shape", style="green"),
            Column("MACs", right=True), Column("params", right=True), Column("output", right=True, drop=3),
            Column("share", right=True), Column("", drop=1, style="magenta")]


def render(g, rows: list[dict], total: dict, label: str, width: int):
    """The table as laid-out text: one row per layer (or block), a total row."""
    body = []
    for row in rows:
        share = row["macs"] / total["macs"] if total["macs"] else 0.0
        body.append([row["name"], row["op"], "x".join(map(str, row["shape"])),
                     human(row["macs"]) if row["macs"] else "", human(row["params"]) if row["params"] else "",
                     human_bytes(row["activation_bytes"]), f"{share:.1%}", "█" * round(share * BAR_WIDTH)])
    footer = ["total", "", "", human(total["macs"]), human(total["params"]), human_bytes(total["activation_bytes"]),
              "100%", ""]
    return table(columns(label), body, width, title=g.graph["name"], footer=footer)


def summary(g, total: dict, inputs: str, dtype_bytes: int) -> list[str]:
    """The totals as items a line may break between."""
    return [f"{g.graph['name']}: {human(total['macs'], 'MACs')}", human(total["params"], "params"),
            f"+{human(total['buffers'], 'buffer elements')}", human(total["other_ops"], "other ops"),
            f"peak activations {human_bytes(total['peak_activation_bytes'])} ({dtype_bytes} B/element)",
            f"input {inputs}"]


def run(args) -> int:
    if not 1 <= args.dtype_bytes <= 16:
        raise NetError(f"--dtype-bytes must be 1 to 16 (bytes per activation element), got {args.dtype_bytes}")
    if args.depth is not None and args.depth <= 0:
        raise NetError(f"--depth must be positive, got {args.depth}")
    from compiler.cost import compile_costs, cost_of  # numba loads only for the commands that count

    g, batch = resize(load_from_args(args), args.input)
    report = cost_of(compile_costs(g), args.dtype_bytes)
    total = totals(report, batch)
    inputs = ", ".join(f"{n} " + "x".join(map(str, (batch, *g.nodes[n]["shape"]))) for n in g.graph["inputs"])
    latency = None
    if args.latency:  # only now: the counting commands never import torch
        from gensynth.latency.measure import measure, runner

        latency = measure([runner(g, args.runtime, args.threads, batch=batch)], clock=args.clock)[0]
    if args.json:
        data = {"network": g.graph["name"], "inputs": {n: [batch, *g.nodes[n]["shape"]] for n in g.graph["inputs"]},
                "dtype_bytes": args.dtype_bytes, "totals": total, "nodes": block_rows(g, report, None, batch)}
        if args.depth:
            data["blocks"] = block_rows(g, report, args.depth, batch)
        if latency is not None:
            data["latency"] = latency.to_json()
        print_json(data)
        return 0
    console = make_console()
    rows = block_rows(g, report, args.depth, batch)
    emit(console, render(g, rows, total, "block" if args.depth else "layer", console.width))
    console.print(wrap_items(summary(g, total, inputs, args.dtype_bytes), console.width), markup=False)
    if latency is not None:
        items = latency.items()
        console.print(wrap_items([f"latency (batch {batch}, this machine): {items[0]}", *items[1:]], console.width),
                      markup=False)
    return 0
