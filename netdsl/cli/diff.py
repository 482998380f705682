"""netdsl diff: what network B changed of network A (a FermiNet against its prototype, say), layer by layer.

Per layer that computes (convs, linears): output channels, kernel and stride before and after, removed or added,
MACs and params before and after; then the MACs and params of every block, and the totals. Layers are matched by
name; blocks are the first part of dotted names, or a flat network's stages by resolution.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from netdsl.cli.arguments import add_json_argument, print_json


def register(sub) -> None:
    p = sub.add_parser("diff", help="compare two networks layer by layer", description=__doc__)
    p.add_argument("a", metavar="A", help="the first .net file (the prototype)")
    p.add_argument("b", metavar="B", help="the second .net file (a FermiNet)")
    p.add_argument("--all", action="store_true", help="list unchanged layers too (default: only what changed)")
    add_json_argument(p, "every layer, block and total")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.cost.diff import (  # numba loads only for commands that count
        BLOCK_COLUMNS,
        LAYER_COLUMNS,
        network_diff,
    )
    from netdsl.loader import load_network

    a, b = load_network(args.a), load_network(args.b)
    diff = network_diff(a, b)
    if args.json:
        print_json({"a_file": args.a, "b_file": args.b, **diff.to_json()})
        return 0
    console = Console(highlight=False)
    rows = diff.layers if args.all else diff.changed()
    table = Table(title=f"{diff.a} → {diff.b}: layers", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in LAYER_COLUMNS:
        table.add_column(col, justify="right" if col in ("MACs", "params") else "left", overflow="fold")
    for d in rows:
        table.add_row(*d.cells())
    if rows:
        console.print(table)
    else:
        console.print("no layer changed")
    blocks = Table(title="blocks", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in BLOCK_COLUMNS:
        blocks.add_column(col, justify="left" if col == "block" else "right")
    for blk in diff.blocks:
        blocks.add_row(*blk.cells())
    blocks.add_row(*diff.total_cells())
    console.print(blocks)
    return 0
