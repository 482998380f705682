"""netdsl show: look at a network as a tree of blocks and layers, a flat table, JSON or Graphviz DOT."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from compiler.diagnostics import NetError
from compiler.dot import to_dot
from compiler.ir import to_dict, topo_order
from compiler.printer import key_attrs
from netdsl.cli.arguments import add_json_argument, add_network_arguments, load_from_args, print_json
from netdsl.cli.cost import human


def register(sub) -> None:
    p = sub.add_parser("show", help="show a network's layers and shapes", description=__doc__)
    add_network_arguments(p)
    p.add_argument("--flat", action="store_true", help="one row per layer instead of a tree")
    add_json_argument(p, "nodes, edges, shapes and names")
    p.add_argument("--dot", metavar="OUT", help="write Graphviz DOT to OUT ('-' for stdout)")
    p.set_defaults(run=run)


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]" if shape is not None else "?"


def node_costs(g) -> dict[str, dict]:
    """MACs and params by node name ({} when the cost model cannot count the network, e.g. on overflow)."""
    from compiler.cost import network_cost  # numba loads only when a command shows costs

    try:
        report = network_cost(g)
    except NetError:
        return {}
    return {n["name"]: n for n in report.nodes()}


def summary(g, costs: dict | None = None) -> str:
    inputs = ", ".join(f"{i} {fmt_shape(g.nodes[i]['shape'])}" for i in g.graph["inputs"])
    outputs = ", ".join(f"{o} {fmt_shape(g.nodes[n]['shape'])}" for o, n in g.graph["outputs"].items())
    layers = sum(1 for _, d in g.nodes(data=True) if d["op"] != "input")
    cost = ""
    if costs:
        macs, params = (sum(c[f] for c in costs.values()) for f in ("macs", "params"))
        cost = f"; {human(macs, 'MACs')}, {human(params, 'params')}"
    return f"{g.graph['name']}: {layers} layers; inputs {inputs}; outputs {outputs}{cost}"


def cost_label(costs: dict, name: str) -> str:
    c = costs.get(name)
    parts = [human(c[f], unit) for f, unit in (("macs", "MACs"), ("params", "params")) if c and c[f]]
    return f"  [dim]{', '.join(parts)}[/dim]" if parts else ""


def layer_label(g, name: str, leaf: str, costs: dict | None = None) -> str:
    d = g.nodes[name]
    args = key_attrs(g, name)
    call = f"{d['op']}({args})" if args else d["op"]
    flag = " [magenta]fixed[/magenta]" if d.get("fixed") else ""
    return (f"[bold]{leaf}[/bold]  [cyan]{call}[/cyan]  [green]{fmt_shape(d['shape'])}[/green]{flag}"
            + cost_label(costs or {}, name))


def render_tree(g, costs: dict | None = None) -> Tree:
    """Blocks as branches (labelled with their block name), layers as leaves, in topological order."""
    root = Tree(f"[bold]{g.graph['name']}[/bold]")
    branches: dict[str, Tree] = {"": root}
    scopes = g.graph.get("scopes", {})

    def branch(prefix: str) -> Tree:
        if prefix not in branches:
            parent, _, leaf = prefix.rpartition(".")
            kind = scopes.get(prefix)
            label = f"[bold yellow]{leaf}[/bold yellow]" + (f" ({kind})" if kind else "")
            branches[prefix] = branch(parent).add(label)
        return branches[prefix]

    for name in topo_order(g):
        prefix, _, leaf = name.rpartition(".")
        branch(prefix).add(layer_label(g, name, leaf, costs))
    return root


def render_table(g, costs: dict | None = None) -> Table:
    table = Table(title=g.graph["name"], show_lines=False)
    for col in ("layer", "op", "parameters", "inputs", "shape"):
        table.add_column(col)
    table.add_column("MACs", justify="right")
    table.add_column("params", justify="right")
    costs = costs or {}
    for name in topo_order(g):
        d = g.nodes[name]
        c = costs.get(name, {})
        table.add_row(name, d["op"], key_attrs(g, name), ", ".join(d["inputs"]), fmt_shape(d["shape"]),
                      human(c["macs"]) if c.get("macs") else "", human(c["params"]) if c.get("params") else "")
    return table


def run(args) -> int:
    g = load_from_args(args)
    if args.dot:
        text = to_dot(g)
        if args.dot == "-":
            print(text, end="")
        else:
            Path(args.dot).write_text(text)
    costs = node_costs(g)
    if args.json:
        data = to_dict(g)
        for node in data["nodes"]:
            node.update({f: costs[node["name"]][f] for f in ("macs", "params")} if costs else {})
        print_json(data)
        return 0
    if args.dot == "-":
        return 0
    console = Console(highlight=False)
    console.print(render_table(g, costs) if args.flat else render_tree(g, costs))
    console.print(summary(g, costs))
    return 0
