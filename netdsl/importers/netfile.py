"""Write an imported network as .net text a person would read: recovered blocks first, then the network, each body
as chains of layers; a name is written (`as conv1`) only where the language would not give it by itself."""

from __future__ import annotations

import networkx as nx

from compiler.diagnostics import NetError
from compiler.ir import structure
from compiler.ops import OPS, REQUIRED
from compiler.printer import PRINTED_BY_POSITION, format_value, print_network
from netdsl.importers.blocks import Block, Item, Recovery, block_graph
from netdsl.importers.imported import ImportedModel
from netdsl.loader import load_network_text

LINE_WIDTH = 100
INDENT = "    "


class _Names:
    """Replays the builder's automatic naming (netdsl.builder.Builder.fresh) for one scope."""

    def __init__(self):
        self.used: set[str] = set()
        self.next: dict[str, int] = {}

    def claim(self, base: str, wanted: str) -> bool:
        """Record `wanted`; True when the builder would give it to an unnamed `base` op (no `as` needed)."""
        i = self.next.get(base, 0)
        auto = base if i == 0 else f"{base}_{i}"
        while auto in self.used:
            i += 1
            auto = f"{base}_{i}"
        if auto == wanted:
            self.next[base] = i
            self.used.add(auto)
            return True
        self.used.add(wanted)
        return False


class _Body:
    """Renders the items of one scope (the network's or a block's representative instance) as statements."""

    def __init__(self, rec: Recovery, scope: str, inputs: dict[str, str], block: Block | None):
        self.rec, self.g, self.scope, self.inputs, self.block = rec, rec.g, scope, inputs, block
        self.names = _Names()
        self.statements: list[tuple[str, list[str], str]] = []  # (head, steps, the IR node it ends with)

    def ref(self, node: str) -> str:
        if node in self.inputs:
            return self.inputs[node]
        return "@" + self.rec.local(self.scope, node)

    def value(self, local: str, attr: str, value) -> tuple[str, bool]:
        """The text of one attribute or argument, and whether it is a parameter expression."""
        if self.block is not None and (local, attr) in self.block.exprs:
            return self.block.exprs[(local, attr)], True
        return format_value(value), False

    def op_args(self, item: Item, local: str) -> list[str]:
        spec = OPS[item.op]
        args: list[str] = []
        for i, p in enumerate(spec.params):
            if p.name not in item.values:
                continue
            text, is_expr = self.value(local, p.name, item.values[p.name])
            if not is_expr and p.default is not REQUIRED and item.values[p.name] == p.default:
                continue
            by_position = i == 0 and not args and (p.name in PRINTED_BY_POSITION or p.name in spec.positional)
            args.append(text if by_position else f"{p.name}={text}")
        return args

    def call_args(self, item: Item, local: str) -> list[str]:
        callee = next(b for b in self.rec.blocks.values() if b.name == item.block)
        args = []
        for i, (name, default) in enumerate(callee.params.items()):
            text, is_expr = self.value(local, name, item.values[name])
            if not is_expr and default is not None and item.values[name] == default:
                continue
            args.append(text if i == 0 and name in callee.channel_params else f"{name}={text}")
        return args

    def step(self, item: Item, tensors: list[str], repeat: int = 1, name: str | None = None) -> str:
        local = self.rec.local(self.scope, item.name)
        if item.block is not None:
            args = tensors + self.call_args(item, local)
            text = f"{item.block}({', '.join(args)})" if args else item.block
            as_name = name or local
            self.names.used.add(as_name)
            return (f"repeat({repeat}) " if repeat > 1 else "") + f"{text} as {as_name}"
        args = tensors + self.op_args(item, local)
        text = f"{item.op}({', '.join(args)})" if args else item.op
        return text if self.names.claim(item.op, local) else f"{text} as {local}"

    def sole_reader(self, node: str, item: Item) -> bool:
        """Whether `item` is the only reader of `node` (so the chain may flow into it)."""
        if node in self.g.graph["outputs"].values() or node in self.inputs:
            return False
        return all(s in item.covers for s in self.g.successors(node))

    def render(self, items: list[Item]) -> None:
        current: list[str] | None = None
        end = None
        i = 0
        while i < len(items):
            item = items[i]
            run = self._repeat_run(items, i)
            continues = current is not None and item.inputs and item.inputs[0] == end and self.sole_reader(end, item)
            if continues:
                current.append(self.step(item, [self.ref(x) for x in item.inputs[1:]], *run))
            else:
                if len(item.inputs) == 1:
                    head = self.ref(item.inputs[0])
                    current = [self.step(item, [], *run)]
                else:
                    head = ""
                    current = [self.step(item, [self.ref(x) for x in item.inputs], *run)]
                self.statements.append((head, current, ""))
            last = items[i + run[0] - 1] if run[0] > 1 else item
            end = last.output
            head, steps, _ = self.statements[-1]
            self.statements[-1] = (head, steps, end)
            i += run[0]

    def _repeat_run(self, items: list[Item], i: int) -> tuple[int, str | None]:
        """(n, P) when items i.. are calls of one block with the same arguments named P.0, P.1, ... P.n-1."""
        first = items[i]
        local = self.rec.local(self.scope, first.name)
        if first.block is None or not local.endswith(".0"):
            return 1, None
        prefix = local[:-2]
        n = 1
        while (i + n < len(items) and items[i + n].block == first.block and items[i + n].values == first.values
               and self.rec.local(self.scope, items[i + n].name) == f"{prefix}.{n}"
               and items[i + n].inputs[:1] == [items[i + n - 1].output]
               and self.sole_reader(items[i + n - 1].output, items[i + n])):
            n += 1
        taken = any(self.rec.local(self.scope, x.name).startswith(prefix + ".") for x in items[i + n:])
        return (n, prefix) if n > 1 and not taken else (1, None)

    def lines(self, outputs: dict[str, str] | None = None) -> list[str]:
        out = []
        pending = dict(outputs or {})
        for index, (head, steps, end) in enumerate(self.statements):
            label = ""
            if index == len(self.statements) - 1 and pending and end == next(iter(pending.values())):
                name = next(iter(pending))  # the first output only: the outputs keep their order
                label = f"output {name} = "
                del pending[name]
            out.extend(_wrap(label + (f"{head} -> " if head else ""), steps))
        for name, node in pending.items():
            out.append(f"{INDENT}output {name} = {self.ref(node)}")
        return out


def _wrap(start: str, steps: list[str]) -> list[str]:
    lines, line = [], INDENT + start + steps[0]
    for step in steps[1:]:
        if len(line) + 4 + len(step) > LINE_WIDTH:
            lines.append(line)
            line = INDENT * 2 + "-> " + step
        else:
            line += " -> " + step
    return [*lines, line]


def _block_text(rec: Recovery, block: Block) -> list[str]:
    instance = block.instances[0]
    inputs = dict(zip(rec.externals[instance], block.input_names))
    body = _Body(rec, instance, inputs, block)
    body.render(rec.items(instance))
    params = [name if default is None else f"{name}={format_value(default)}" for name, default in block.params.items()]
    signature = ", ".join(params)
    if block.input_names != ("in",):
        signature = ", ".join(block.input_names) + "; " + signature
    uses = ", ".join(block.instances[:3]) + (", ..." if len(block.instances) > 3 else "")
    return [f"# {block.cls}, {len(block.instances)} instances ({uses})", f"block {block.name}({signature}) {{",
            *body.lines(), "}", ""]


def net_text(imported: ImportedModel, header: list[str] | None = None) -> str:
    """The .net text of an imported network, blocks recovered; parse(text) gives exactly imported.graph."""
    g = imported.graph
    rec = Recovery(imported)
    lines = [f"# {line}" if line else "#" for line in header or []]
    if lines:
        lines.append("")
    order = nx.lexicographical_topological_sort(block_graph(rec))
    by_name = {b.name: b for b in rec.blocks.values()}
    for name in order:
        lines += _block_text(rec, by_name[name])
    inputs = {}
    for i in g.graph["inputs"]:
        bare = i not in OPS and all(b.name != i for b in rec.blocks.values())
        inputs[i] = i if bare else "@" + i
    body = _Body(rec, "", inputs, None)
    body.render(rec.items(""))
    lines.append(f"network {g.graph['name']} {{")
    lines += [f"{INDENT}input {i}: {format_value(list(g.nodes[i]['shape']))}" for i in g.graph["inputs"]]
    lines += body.lines(dict(g.graph["outputs"]))
    lines.append("}")
    return "\n".join(lines) + "\n"


def same_network(a: nx.DiGraph, b: nx.DiGraph) -> list[str]:
    """The differences between two networks' structures (names, ops, attributes, inputs, shapes), at most five."""
    sa, sb = structure(a), structure(b)
    na, nb = ({n["name"]: n for n in s["nodes"]} for s in (sa, sb))
    diffs = [f"only in one: {n}" for n in sorted(set(na) ^ set(nb))]
    diffs += [f"{n}: {na[n]} != {nb[n]}" for n in sorted(set(na) & set(nb)) if na[n] != nb[n]]
    for key in ("inputs", "outputs", "name"):
        if sa[key] != sb[key]:
            diffs.append(f"{key}: {sa[key]} != {sb[key]}")
    return diffs[:5]


def write_checked(imported: ImportedModel, file: str, header: list[str] | None = None) -> tuple[str, bool]:
    """The readable text, checked by loading it back; the flat canonical text (and False) if blocks went wrong."""
    text = net_text(imported, header)
    try:
        diffs = same_network(load_network_text(text, file), imported.graph)
    except NetError as err:
        diffs = [err.message]
    if not diffs:
        return text, True
    imported.notes.append("blocks could not be recovered exactly (" + "; ".join(diffs)[:300] + "); the network is "
                          "written flat")
    flat = "\n".join(f"# {line}" for line in header or []) + ("\n\n" if header else "") + print_network(imported.graph)
    return flat, False
