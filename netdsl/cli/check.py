"""netdsl check: validate a .net file (exit 0), or print located errors (exit 2)."""

from __future__ import annotations

from rich.console import Console

from netdsl.cli.arguments import add_json_argument, add_network_arguments, load_from_args, print_json


def register(sub) -> None:
    p = sub.add_parser("check", help="validate a .net file", description=__doc__)
    add_network_arguments(p)
    add_json_argument(p)
    p.set_defaults(run=run)


def run(args) -> int:
    g = load_from_args(args)
    outputs = {o: list(g.nodes[n]["shape"]) for o, n in g.graph["outputs"].items()}
    if args.json:
        print_json({"ok": True, "network": g.graph["name"], "layers": g.number_of_nodes(), "outputs": outputs})
    else:
        shapes = ", ".join(f"{o} {s}" for o, s in outputs.items())
        Console(highlight=False).print(f"[green]ok[/green] {args.file}: network {g.graph['name']}, "
                                       f"{g.number_of_nodes()} nodes, outputs {shapes}")
    return 0
