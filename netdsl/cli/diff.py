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
from netdsl.cli.cost import human


def register(sub) -> None:
    p = sub.add_parser("diff", help="compare two networks layer by layer", description=__doc__)
    p.add_argument("a", metavar="A", help="the first .net file (the prototype)")
    p.add_argument("b", metavar="B", help="the second .net file (a FermiNet)")
    p.add_argument("--all", action="store_true", help="list unchanged layers too (default: only what changed)")
    add_json_argument(p, "every layer, block and total")
    p.set_defaults(run=run)


def short(n: int) -> str:
    """A count in 3 significant digits without a space: 7.23M."""
    return human(n).replace(" ", "")


def arrow(a, b, show=str) -> str:
    """'a→b', or 'a' when they are equal."""
    return show(a) if a == b else f"{show(a)}→{show(b)}"


def change(x: int, y: int) -> str:
    """B against A in per cent."""
    return "" if x == 0 or x == y else f"{(y - x) / x:+.0%}"


def layer_cells(d) -> list[str]:
    """The cells of one layer row: layer, op, channels, k, stride, MACs, params, status."""
    a, b = d.a, d.b
    if a is None or b is None:
        s = a or b
        return [d.name, s.op, str(s.channels), str(s.kernel or ""), str(s.stride or ""),
                short(s.macs), short(s.params), d.status]
    return [d.name, arrow(a.op, b.op), arrow(a.channels, b.channels), arrow(a.kernel or "", b.kernel or ""),
            arrow(a.stride or "", b.stride or ""), arrow(a.macs, b.macs, short), arrow(a.params, b.params, short),
            ""]


def run(args) -> int:
    from compiler.cost.diff import network_diff  # numba loads only for the commands that count
    from netdsl.loader import load_network

    a, b = load_network(args.a), load_network(args.b)
    diff = network_diff(a, b)
    if args.json:
        print_json({"a_file": args.a, "b_file": args.b, **diff.to_json()})
        return 0
    console = Console(highlight=False)
    rows = diff.layers if args.all else diff.changed()
    table = Table(title=f"{diff.a} → {diff.b}: layers", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("layer", "op", "channels", "k", "stride", "MACs", "params", ""):
        table.add_column(col, justify="right" if col in ("MACs", "params") else "left", overflow="fold")
    for d in rows:
        table.add_row(*layer_cells(d))
    if rows:
        console.print(table)
    else:
        console.print("no layer changed")
    blocks = Table(title="blocks", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("block", "MACs", "", "params", ""):
        blocks.add_column(col, justify="left" if col == "block" else "right")
    for blk in diff.blocks:
        blocks.add_row(blk.name + (" (removed)" if blk.removed else ""), arrow(*blk.macs, short), change(*blk.macs),
                       arrow(*blk.params, short), change(*blk.params))
    blocks.add_row("total", arrow(*diff.macs, short), change(*diff.macs), arrow(*diff.params, short),
                   change(*diff.params))
    console.print(blocks)
    return 0
