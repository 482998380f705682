"""netdsl diff: what network B changed of network A (a FermiNet against its prototype, say), layer by layer.

Per layer that computes (convs, linears): output channels, kernel and stride before and after, removed or added,
MACs and params before and after; then the MACs and params of every block, and the totals. Layers are matched by
name; blocks are the first part of dotted names, or a flat network's stages by resolution.
"""

from __future__ import annotations

from netdsl.cli.arguments import add_json_argument, print_json
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import Column, emit, table

# how the diff's columns give way on a narrow screen: the op first, then stride and kernel
LAYER_LAYOUT = {"op": 1, "stride": 2, "k": 3}


def register(sub) -> None:
    p = sub.add_parser("diff", help="compare two networks layer by layer", description=__doc__)
    p.add_argument("a", metavar="A", help="the first .net file (the prototype)")
    p.add_argument("b", metavar="B", help="the second .net file (a FermiNet)")
    p.add_argument("--all", action="store_true", help="list unchanged layers too (default: only what changed)")
    add_json_argument(p, "every layer, block and total")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.cost.diff import BLOCK_COLUMNS, LAYER_COLUMNS, network_diff  # no torch: like show and cost
    from netdsl.loader import load_network

    a, b = load_network(args.a), load_network(args.b)
    diff = network_diff(a, b)
    if args.json:
        print_json({"ok": True, "a_file": args.a, "b_file": args.b, **diff.to_json()})
        return 0
    console = make_console()
    width = console.width
    rows = diff.layers if args.all else diff.changed()
    if rows:
        columns = [Column(h, right=h in ("MACs", "params"), drop=LAYER_LAYOUT.get(h)) for h in LAYER_COLUMNS]
        emit(console, table(columns, [d.cells() for d in rows], width, title=f"{diff.a} → {diff.b}: layers"))
    else:
        console.print("no layer changed", markup=False)
    console.print()
    columns = [Column(h, right=h != "block") for h in BLOCK_COLUMNS]
    emit(console, table(columns, [blk.cells() for blk in diff.blocks], width, title="blocks",
                        footer=diff.total_cells()))
    return 0
