"""netdsl check: validate a .net file (exit 0), or print located errors (exit 2; with --json, an error document)."""

from __future__ import annotations

from netdsl.cli.arguments import add_json_argument, add_network_arguments, load_from_args, print_json
from netdsl.cli.console import console, escape
from netdsl.cli.layout import wrap_items
from netdsl.cli.show import fmt_shape, layer_count


def register(sub) -> None:
    p = sub.add_parser("check", help="validate a .net file", description=__doc__)
    add_network_arguments(p)
    add_json_argument(p, "the verdict: network, layers, inputs and outputs, or the error (docs/schemas/check.json)")
    p.set_defaults(run=run)


def run(args) -> int:
    g = load_from_args(args)
    outputs = {o: list(g.nodes[n]["shape"]) for o, n in g.graph["outputs"].items()}
    inputs = {i: list(g.nodes[i]["shape"]) for i in g.graph["inputs"]}
    if args.json:
        print_json({"ok": True, "file": args.file, "network": g.graph["name"], "layers": layer_count(g),
                    "inputs": inputs, "outputs": outputs})
        return 0
    out = console()
    items = [f"ok {args.file}: network {g.graph['name']}", f"{layer_count(g)} layers",
             "outputs " + ", ".join(f"{o} {fmt_shape(s)}" for o, s in outputs.items())]
    text = escape(wrap_items(items, out.width))
    out.print("[green]ok[/green]" + text[2:])
    return 0
