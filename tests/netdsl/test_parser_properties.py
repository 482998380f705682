"""Property tests of the parser: any syntax tree hypothesis draws, written out as .net text, parses back to the same
tree (spans aside), and writing the parsed tree gives the same text again. The writer here is independent of the
parser: it knows only the grammar's surface (grammars/netdsl.lark)."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdsl import syntax as ast
from netdsl.parser import KEYWORDS, parse_text

S = None  # spans are not compared

# ---- drawing syntax trees --------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
numbers = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False, allow_infinity=False).map(abs),
                    st.sampled_from([1e-3, 2.5e-05, 1e15]))  # literals lie within +-2**53
strings = st.from_regex(r'[A-Za-z0-9 _.,:;+\-]{0,8}', fullmatch=True)


def leaves() -> st.SearchStrategy:
    return st.one_of(
        numbers.map(lambda v: ast.Number(v, S)),
        strings.map(lambda v: ast.String(v, S)),
        st.sampled_from([True, False, None]).map(lambda v: ast.Const(v, S)),
        st.just(ast.BlockInput(S)),
        st.lists(st.one_of(names, st.integers(0, 9).map(str)), min_size=0, max_size=2).flatmap(
            lambda rest: names.map(lambda head: ast.Ref((head, *rest), S))),
        st.lists(names, min_size=1, max_size=3).map(lambda p: ast.NodeRef(tuple(p), S)),
        names.map(lambda n: ast.NetworkParam(n, S)),
    )


def extend(children: st.SearchStrategy) -> st.SearchStrategy:
    args = st.lists(st.tuples(st.one_of(st.none(), names), children), max_size=3).map(
        lambda items: tuple(ast.Arg(n, v, S) for n, v in sorted(items, key=lambda a: a[0] is not None)))
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/", "//", "%"]), children, children).map(
            lambda t: ast.BinOp(t[0], t[1], t[2], S)),
        children.map(lambda c: ast.Neg(c, S)),
        st.lists(children, max_size=3).map(lambda items: ast.ListExpr(tuple(items), S)),
        st.tuples(children, children).map(lambda t: ast.Index(t[0], t[1], S)),
        st.tuples(names, args).map(lambda t: ast.Call(t[0], t[1], S, S)),
    )


expressions = st.recursive(leaves(), extend, max_leaves=8)


@st.composite
def chains(draw) -> ast.Chain:
    steps = []
    for i in range(draw(st.integers(1, 3))):
        expr = draw(expressions) if i == 0 else ast.Call(draw(names), draw(st.lists(
            expressions.map(lambda v: ast.Arg(None, v, S)), max_size=2).map(tuple)), S, S)
        repeat = draw(st.one_of(st.none(), expressions)) if isinstance(expr, ast.Call) else None
        start = draw(st.one_of(st.none(), expressions)) if repeat is not None else None
        fixed = draw(st.booleans()) if isinstance(expr, ast.Call) else False
        path = draw(st.one_of(st.none(), st.lists(names, min_size=1, max_size=2).map(tuple))) \
            if isinstance(expr, ast.Call) else None
        steps.append(ast.Step(expr, S, fixed, repeat, path, start))
    return ast.Chain(tuple(steps), S)


@st.composite
def statements(draw, in_network: bool):
    kinds = ["let", "assign", "unpack", "chain"] + (["input", "output"] if in_network else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "let":
        return ast.LetStmt(draw(names), draw(expressions), S)
    if kind == "input":
        return ast.InputStmt(draw(names), draw(expressions), S)
    if kind == "output":
        return ast.OutputStmt(draw(names), draw(chains()), S)
    if kind == "chain":
        # newlines are not significant: a statement that began with '-', '[' or '(' would continue the one before
        chain = draw(chains().filter(lambda c: write(c)[0] not in "-[("))
        return ast.ChainStmt(chain, S)
    targets = draw(st.lists(names, min_size=2 if kind == "unpack" else 1, max_size=3 if kind == "unpack" else 1))
    return ast.AssignStmt(tuple(targets), draw(chains()), S)


params = st.lists(st.tuples(names, st.one_of(st.none(), expressions)), max_size=3, unique_by=lambda p: p[0]).map(
    lambda ps: tuple(ast.Param(n, d, S) for n, d in ps))


@st.composite
def modules(draw) -> ast.Module:
    module = ast.Module("t.net")
    for _ in range(draw(st.integers(0, 2))):
        module.imports.append(ast.Import(draw(names), False, draw(st.one_of(
            st.none(), st.lists(names, min_size=1, max_size=2).map(tuple))), S))
    for name in draw(st.lists(names, max_size=2, unique=True)):
        module.lets.append(ast.LetStmt(name, draw(expressions), S))
    for name in draw(st.lists(names, max_size=2, unique=True)):
        inputs = tuple(draw(st.lists(names, max_size=2)))
        ps = draw(params)
        if inputs:
            ps = tuple(ast.Param(p.name, p.default, S) for p in ps)
        body = tuple(draw(st.lists(statements(False), max_size=3)))
        module.blocks[name] = ast.BlockDef(name, inputs, ps, body, S, "t.net")
    for name in draw(st.lists(names, max_size=2, unique=True)):
        body = tuple(draw(st.lists(statements(True), max_size=3)))
        module.networks[name] = ast.NetworkDef(name, draw(params), body, S)
    return module


# ---- writing them as text (the grammar's surface, with parentheses where precedence needs them) ------

PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def bare(e):
    """A parenthesised expression is written as the expression (its parentheses are the writer's to choose)."""
    while isinstance(e, ast.Chain) and len(e.steps) == 1 and not (
            e.steps[0].fixed or e.steps[0].repeat is not None or e.steps[0].name):
        e = e.steps[0].expr
    return e


def write(e) -> str:
    e = bare(e)
    if isinstance(e, ast.Number):
        return repr(e.value)
    if isinstance(e, ast.String):
        return f'"{e.value}"'
    if isinstance(e, ast.Const):
        return {True: "true", False: "false", None: "none"}[e.value]
    if isinstance(e, ast.BlockInput):
        return "in"
    if isinstance(e, ast.Ref):
        return ".".join(e.path)
    if isinstance(e, ast.NodeRef):
        return "@" + ".".join(e.path)
    if isinstance(e, ast.NetworkParam):
        return f"network.{e.name}"
    if isinstance(e, ast.BinOp):
        return f"{operand(e.left, e.op, False)} {e.op} {operand(e.right, e.op, True)}"
    if isinstance(e, ast.Neg):
        inner = write(e.operand)
        return f"-{inner}" if not isinstance(bare(e.operand), ast.BinOp) else f"-({inner})"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(write(i) for i in e.items) + "]"
    if isinstance(e, ast.Index):
        base = write(e.base)
        if isinstance(bare(e.base), (ast.BinOp, ast.Neg)):
            base = f"({base})"
        return f"{base}[{write(e.index)}]"
    if isinstance(e, ast.Call):
        return f"{e.name}(" + ", ".join((f"{a.name}=" if a.name else "") + write(a.value) for a in e.args) + ")"
    if isinstance(e, ast.Chain):
        return " -> ".join(write_step(s) for s in e.steps)
    raise AssertionError(e)


def operand(e, op: str, right: bool) -> str:
    """A binary operand, parenthesised where the grammar would group it otherwise (left-associative)."""
    text, e = write(e), bare(e)
    if isinstance(e, ast.BinOp) and (PRECEDENCE[e.op] < PRECEDENCE[op] or (right and PRECEDENCE[e.op] == PRECEDENCE[op])):
        return f"({text})"
    return text


def write_step(s: ast.Step) -> str:
    text = write(s.expr)
    if s.repeat is not None:
        text = f"repeat({write(s.repeat)}" + (f", start={write(s.start)}" if s.start is not None else "") + f") {text}"
    if s.fixed:
        text = "fixed " + text
    return text + (f" as {'.'.join(s.name)}" if s.name else "")


def write_statement(s) -> str:
    if isinstance(s, ast.LetStmt):
        return f"let {s.name} = {write(s.value)}"
    if isinstance(s, ast.InputStmt):
        return f"input {s.name}: {write(s.shape)}"
    if isinstance(s, ast.OutputStmt):
        return f"output {s.name} = {write(s.value)}"
    if isinstance(s, ast.AssignStmt):
        return f"{', '.join(s.targets)} = {write(s.value)}"
    return write(s.value)


def write_params(ps) -> str:
    return ", ".join(p.name + (f"={write(p.default)}" if p.default is not None else "") for p in ps)


def write_module(m: ast.Module) -> str:
    lines = []
    for imp in m.imports:
        lines.append(f"from {imp.module} import {', '.join(imp.names)}" if imp.names else f"import {imp.module}")
    lines += [write_statement(let) for let in m.lets]
    for b in m.blocks.values():
        sig = write_params(b.params) if not b.inputs else f"{', '.join(b.inputs)}; {write_params(b.params)}"
        lines.append(f"block {b.name}({sig}) {{")
        lines += ["    " + write_statement(s) for s in b.body]
        lines.append("}")
    for n in m.networks.values():
        lines.append(f"network {n.name}({write_params(n.params)}) {{")
        lines += ["    " + write_statement(s) for s in n.body]
        lines.append("}")
    return "\n".join(lines) + "\n"


# ---- comparing trees -------------------------------------------------------------------------------

def plain(x):
    """A tree as nested tuples without spans; a parenthesised expression (a one-step chain) is the expression."""
    if isinstance(x, ast.Chain) and len(x.steps) == 1:
        s = x.steps[0]
        if not (s.fixed or s.repeat is not None or s.name):
            return plain(s.expr)
    if isinstance(x, ast.Module):
        return (plain(x.imports), plain(x.lets), plain(list(x.blocks.values())), plain(list(x.networks.values())))
    if dataclasses.is_dataclass(x):
        return (type(x).__name__, *(plain(getattr(x, f.name)) for f in dataclasses.fields(x)
                                    if f.name not in ("span", "name_span", "file")))
    if isinstance(x, (list, tuple)):
        return tuple(plain(i) for i in x)
    return (type(x).__name__, x)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_written_trees_parse_back_to_themselves(module):
    text = write_module(module)
    parsed = parse_text(text, "t.net")
    assert plain(parsed) == plain(module), text
    assert write_module(parsed) == text  # and writing what was parsed is a fixed point


@settings(max_examples=100, deadline=None)
@given(expressions)
def test_every_expression_round_trips_alone(e):
    text = f"let v = {write(e)}\n"
    parsed = parse_text(text, "t.net").lets[0].value
    assert plain(parsed) == plain(e), text


@settings(max_examples=100, deadline=None)
@given(modules())
def test_spans_point_inside_the_text(module):
    text = write_module(module)
    parsed = parse_text(text, "t.net")
    lines = text.split("\n")

    def visit(x):
        span = getattr(x, "span", None)
        if span is not None:
            assert 1 <= span.line <= span.end_line <= len(lines)
            assert 1 <= span.column <= len(lines[span.line - 1]) + 1
        if dataclasses.is_dataclass(x):
            for f in dataclasses.fields(x):
                visit(getattr(x, f.name))
        elif isinstance(x, (list, tuple)):
            for i in x:
                visit(i)
        elif isinstance(x, dict):
            for i in x.values():
                visit(i)

    visit(parsed)
