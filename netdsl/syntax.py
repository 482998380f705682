"""The syntax tree of a .net file: plain dataclasses, each carrying its source span."""

from __future__ import annotations

from dataclasses import dataclass, field

from compiler.diagnostics import Span


@dataclass(frozen=True)
class Number:
    value: int | float
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class Const:
    """true, false or none."""

    value: bool | None
    span: Span


@dataclass(frozen=True)
class BlockInput:
    """The keyword `in`: a block's (first) input."""

    span: Span


@dataclass(frozen=True)
class DottedName:
    """A name or a dotted path as written (a.b.c), and where."""

    path: tuple[str, ...]
    span: Span

    @property
    def text(self) -> str:
        return ".".join(self.path)


class Ref(DottedName):
    """A name or dotted path: a variable, a parameter, an op or block, or a node's full name."""


class NodeRef(DottedName):
    """@path: the IR node with that (scope-relative or full) name, never a variable or an op."""


@dataclass(frozen=True)
class BinOp:
    """A binary arithmetic expression: left op right."""

    op: str
    left: object
    right: object
    span: Span


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    operand: object
    span: Span


@dataclass(frozen=True)
class ListExpr:
    """A bracketed list [a, b, ...] (a shape, or a list argument)."""

    items: tuple
    span: Span


@dataclass(frozen=True)
class Index:
    """base[index]: an item of a list (0-based; negative counts from the end)."""

    base: object
    index: object
    span: Span


@dataclass(frozen=True)
class NetworkParam:
    """network.NAME: a parameter of the network being built, read explicitly (from a block or the network)."""

    name: str
    span: Span


@dataclass(frozen=True)
class Arg:
    """A call argument: positional when name is None."""

    name: str | None
    value: object
    span: Span


@dataclass(frozen=True)
class Call:
    """name(args): an op, a block or a built-in function applied to arguments."""

    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Step:
    """One link of a chain: an expression, optionally fixed, repeated (numbering its names from `start`) and named."""

    expr: object
    span: Span
    fixed: bool = False
    repeat: object | None = None
    name: tuple[str, ...] | None = None
    start: object | None = None


@dataclass(frozen=True)
class Chain:
    """a -> b -> c: steps applied one after another."""

    steps: tuple[Step, ...]
    span: Span


@dataclass(frozen=True)
class InputStmt:
    """input name: [shape]"""

    name: str
    shape: object
    span: Span


@dataclass(frozen=True)
class OutputStmt:
    """output name = chain"""

    name: str
    value: Chain
    span: Span


@dataclass(frozen=True)
class LetStmt:
    """name = expression (a value, not a tensor)."""

    name: str
    value: object
    span: Span


@dataclass(frozen=True)
class AssignStmt:
    """a, b = chain: name the tensors a chain produces."""

    targets: tuple[str, ...]
    value: Chain
    span: Span


@dataclass(frozen=True)
class ChainStmt:
    """A chain on its own line: continues from the last tensor."""

    value: Chain
    span: Span


@dataclass(frozen=True)
class Param:
    """A network or block parameter, with its default if any."""

    name: str
    default: object | None
    span: Span


@dataclass(frozen=True)
class BlockDef:
    """block name(inputs; params) { body }: a reusable piece of network."""

    name: str
    inputs: tuple[str, ...]
    params: tuple[Param, ...]
    body: tuple
    span: Span
    file: str = ""


@dataclass(frozen=True)
class NetworkDef:
    """network name(params) { body }"""

    name: str
    params: tuple[Param, ...]
    body: tuple
    span: Span


@dataclass(frozen=True)
class Import:
    """from module import names (a stdlib module or a file)."""

    module: str
    is_file: bool
    names: tuple[str, ...] | None
    span: Span


@dataclass
class Module:
    """One parsed file: its imports, constants (file-level `let`s), blocks and networks in source order."""

    file: str
    imports: list[Import] = field(default_factory=list)
    lets: list[LetStmt] = field(default_factory=list)
    blocks: dict[str, BlockDef] = field(default_factory=dict)
    networks: dict[str, NetworkDef] = field(default_factory=dict)
