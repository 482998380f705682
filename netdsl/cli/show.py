"""netdsl show: look at a network as a tree of blocks and layers (optionally collapsed to a depth, with block
subtotals), a flat table, JSON or Graphviz DOT."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from compiler.diagnostics import NetError
from compiler.ir import to_dict, topo_order
from compiler.printer import key_attrs
from netdsl.cli.arguments import add_json_argument, add_network_arguments, load_from_args, print_json, write_output
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import Column, emit, figure, table, wrap_items
from netdsl.cli.paths import output_file


def register(sub) -> None:
    p = sub.add_parser("show", help="show a network's layers and shapes", description=__doc__)
    add_network_arguments(p)
    p.add_argument("--depth", type=int, metavar="N",
                   help="collapse blocks below N levels of names into one row with their subtotals "
                        "(default: every layer)")
    p.add_argument("--flat", action="store_true", help="one row per layer, full names, instead of a tree")
    add_json_argument(p, "nodes, edges, shapes, per-node and total costs (docs/schemas/show.json)")
    p.add_argument("--dot", metavar="OUT", help="write Graphviz DOT (blocks as nested clusters) to OUT ('-' for "
                                                "stdout) instead of printing the tree; render with dot -Tsvg (default: print the tree)")
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


def layer_count(g) -> int:
    """Layers: every node but the inputs (what check, show and their JSON call layers)."""
    return sum(1 for _, d in g.nodes(data=True) if d["op"] != "input")


def summary_items(g, costs: dict) -> list[str]:
    inputs = ", ".join(f"{i} {fmt_shape(g.nodes[i]['shape'])}" for i in g.graph["inputs"])
    outputs = ", ".join(f"{o} {fmt_shape(g.nodes[n]['shape'])}" for o, n in g.graph["outputs"].items())
    items = [f"{g.graph['name']}: {layer_count(g)} layers", f"inputs {inputs}", f"outputs {outputs}"]
    if costs:
        items += [figure(sum(c["macs"] for c in costs.values()), "MACs"),
                  figure(sum(c["params"] for c in costs.values()), "params")]
    return items


def call_text(g, name: str, previous: str | None, full_names: bool = False) -> str:
    """A layer as it would be called: op(args), with its inputs as @names (relative to its block, as the language
    resolves them, or full) unless it only reads the row above."""
    d = g.nodes[name]
    if d["op"] == "input":
        return "input"
    args = key_attrs(g, name)
    operands = []
    if d["inputs"] != [previous]:
        prefix = name.rpartition(".")[0] + "."
        operands = ["@" + (i[len(prefix):] if not full_names and prefix != "." and i.startswith(prefix) else i)
                    for i in d["inputs"]]
    inner = ", ".join([*operands, *([args] if args else [])])
    text = f"{d['op']}({inner})" if inner else d["op"]
    return ("fixed " if d.get("fixed") else "") + text


@dataclass
class Branch:
    """A name prefix in the tree (a block call's scope, or a group such as `layer2`): its items in order."""

    prefix: str
    items: list  # ("node", name) or ("branch", prefix)
    nodes: list[str]  # every node below it, in topological order


def branches(g, order: list[str]) -> dict[str, Branch]:
    """Every name prefix with its direct items and all its nodes, built without recursion."""
    tree = {"": Branch("", [], [])}
    for name in order:
        parts = name.split(".")
        for depth in range(len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in tree:
                tree[prefix] = Branch(prefix, [], [])
                tree[".".join(parts[:depth - 1])].items.append(("branch", prefix))
            tree[prefix].nodes.append(name)
        tree[".".join(parts[:-1])].items.append(("node", name))
    return tree


def group_kind(g, prefix: str, names: list[str]) -> str:
    """What the layers `names` under a name prefix are: its block's name; for a group of block calls
    (`layer3`), their blocks with counts (`bottleneck_down + 5 × bottleneck`); or nothing."""
    scopes = g.graph.get("scopes", {})
    if prefix in scopes:
        return scopes[prefix]
    depth = prefix.count(".") + 1 if prefix else 0
    children = list(dict.fromkeys(".".join(n.split(".")[:depth + 1]) for n in names))
    kinds = [scopes.get(c) for c in children]
    if not kinds or None in kinds:
        return ""
    runs: list[list] = []
    for k in kinds:
        if runs and runs[-1][0] == k:
            runs[-1][1] += 1
        else:
            runs.append([k, 1])
    return " + ".join(f"{n} × {k}" if n > 1 else k for k, n in runs)


COLUMNS = [Column("layer"), Column("call", wrap=True, min_width=16, style="cyan"), Column("shape", style="green"),
           Column("params", right=True), Column("MACs", right=True)]


def tree_rows(g, costs: dict, depth: int | None = None) -> Iterator[list]:
    """The tree's rows: guides and name, call (or block), output shape, params and MACs (subtotals for blocks);
    blocks deeper than `depth` name levels are one collapsed row."""
    order = topo_order(g)
    tree = branches(g, order)
    previous = {name: (order[i - 1] if i else None) for i, name in enumerate(order)}

    def figures(names: list[str]) -> list[str]:
        macs = sum(costs.get(n, {}).get("macs", 0) for n in names)
        params = sum(costs.get(n, {}).get("params", 0) for n in names)
        return [figure(params) if params else "", figure(macs) if macs else ""]

    stack = [(iter(tree[""].items), "")]
    while stack:
        items, guides = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        kind, key = item
        parent = key.rpartition(".")[0]
        last = item is tree[parent].items[-1]
        leaf = key.rpartition(".")[2]
        guide = guides + ("└─ " if last else "├─ ")
        if kind == "node":
            d = g.nodes[key]
            yield [guide + leaf, call_text(g, key, previous[key]), fmt_shape(d["shape"]), *figures([key])]
            continue
        nodes = tree[key].nodes
        collapsed = depth is not None and key.count(".") + 1 >= depth
        label = group_kind(g, key, nodes)
        yield [(guide + leaf + (" …" if collapsed else ""), "bold yellow"), (label, "yellow"),
               fmt_shape(g.nodes[nodes[-1]]["shape"]), *figures(nodes)]
        if not collapsed:
            stack.append((iter(tree[key].items), guides + ("  " if last else "│ ")))


FLAT_COLUMNS = [Column("layer"), Column("call", wrap=True, min_width=16, stack=True, style="cyan"),
                Column("shape", style="green"), Column("params", right=True), Column("MACs", right=True)]


def flat_rows(g, costs: dict) -> list[list]:
    """One row per layer in topological order, with full names and every input."""
    rows, previous = [], None
    for name in topo_order(g):
        c = costs.get(name, {})
        rows.append([name, call_text(g, name, previous, full_names=True), fmt_shape(g.nodes[name]["shape"]),
                     figure(c["params"]) if c.get("params") else "", figure(c["macs"]) if c.get("macs") else ""])
        previous = name
    return rows


def show_json(g, costs: dict) -> dict:
    """The documented JSON (docs/schemas/show.json): the IR's nodes and edges, per-node costs and totals."""
    data = to_dict(g)
    for node in data["nodes"]:
        c = costs.get(node["name"])
        node["macs"] = c["macs"] if c else None
        node["params"] = c["params"] if c else None
    data["totals"] = {"layers": layer_count(g),
                      "macs": sum(c["macs"] for c in costs.values()) if costs else None,
                      "params": sum(c["params"] for c in costs.values()) if costs else None}
    return data


def run(args) -> int:
    if args.depth is not None and args.depth < 1:
        raise NetError(f"--depth must be at least 1, got {args.depth}")
    chosen = [flag for flag, on in (("--json", args.json), ("--flat", args.flat), ("--depth", args.depth)) if on]
    if args.dot and chosen:
        raise NetError(f"--dot writes Graphviz DOT only; leave out {' and '.join(chosen)}")
    if args.flat and args.depth:
        raise NetError("--depth collapses the tree; --flat has no blocks to collapse")
    if args.dot and args.dot != "-":
        output_file(args.dot, "DOT file")  # before any work
    g = load_from_args(args)
    if args.dot:
        from compiler.dot import to_dot

        write_output(args.dot, to_dot(g, node_costs(g)), "DOT file")
        if args.dot != "-" and not args.json:
            make_console(stderr=True).print(f"wrote {args.dot}: render it with dot -Tsvg {args.dot} -o graph.svg",
                                            markup=False)
        return 0
    costs = node_costs(g)
    if args.json:
        print_json(show_json(g, costs))
        return 0
    console = make_console()
    width = console.width
    if args.flat:
        emit(console, table(FLAT_COLUMNS, flat_rows(g, costs), width, title=g.graph["name"]))
    else:
        emit(console, table(COLUMNS, list(tree_rows(g, costs, args.depth)), width, title=g.graph["name"]))
    console.print(wrap_items(summary_items(g, costs), width, sep="; "), markup=False)
    return 0
