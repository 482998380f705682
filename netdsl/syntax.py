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
class Ref:
    """A name or dotted path: a variable, a parameter, an op or block, or a node's full name."""

    path: tuple[str, ...]
    span: Span

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class NodeRef:
    """@path: the IR node with that (scope-relative or full) name, never a variable or an op."""

    path: tuple[str, ...]
    span: Span

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class BinOp:
    op: str
    left: object
    right: object
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: object
    span: Span


@dataclass(frozen=True)
class ListExpr:
    items: tuple
    span: Span


@dataclass(frozen=True)
class Arg:
    """A call argument: positional when name is None."""

    name: str | None
    value: object
    span: Span


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Step:
    """One link of a chain: an expression, optionally fixed, repeated and named."""

    expr: object
    span: Span
    fixed: bool = False
    repeat: object | None = None
    name: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Chain:
    steps: tuple[Step, ...]
    span: Span


@dataclass(frozen=True)
class InputStmt:
    name: str
    shape: object
    span: Span


@dataclass(frozen=True)
class OutputStmt:
    name: str
    value: Chain
    span: Span


@dataclass(frozen=True)
class LetStmt:
    name: str
    value: object
    span: Span


@dataclass(frozen=True)
class AssignStmt:
    targets: tuple[str, ...]
    value: Chain
    span: Span


@dataclass(frozen=True)
class ChainStmt:
    value: Chain
    span: Span


@dataclass(frozen=True)
class Param:
    name: str
    default: object | None
    span: Span


@dataclass(frozen=True)
class BlockDef:
    name: str
    inputs: tuple[str, ...]
    params: tuple[Param, ...]
    body: tuple
    span: Span
    file: str = ""


@dataclass(frozen=True)
class NetworkDef:
    name: str
    params: tuple[Param, ...]
    body: tuple
    span: Span


@dataclass(frozen=True)
class Import:
    module: str
    is_file: bool
    names: tuple[str, ...] | None
    span: Span


@dataclass
class Module:
    """One parsed file: its imports, blocks and networks in source order."""

    file: str
    imports: list[Import] = field(default_factory=list)
    blocks: dict[str, BlockDef] = field(default_factory=dict)
    networks: dict[str, NetworkDef] = field(default_factory=dict)
