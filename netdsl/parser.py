"""Parse .net text into a syntax tree (lark LALR), turning lark's errors into located NetErrors."""

from __future__ import annotations

from functools import cache

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from compiler.diagnostics import NetError, Span, register_source
from grammars import grammar_text
from netdsl import syntax as ast
from netdsl.values import RANGE, check_number

# Levels of the parse tree a file may nest (the examples need 23; a call adds 5, a bracket 2): deeper text is
# refused with its location before any recursive pass could run out of stack.
MAX_DEPTH = 200
# Names and numbers in one file: a network has at most 100,000 nodes (netdsl.builder.MAX_NODES), and a long
# chain is written with repeat(N), so a file with more is refused as soon as the lexer gets there.
MAX_NAMES = 100_000

# Words for the terminals a user may be told were expected.
TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "an integer",
    "STRING": "a string",
    "FIXED": "'fixed'",
    "AS": "'as'",
    "$END": "end of file",
}

# The words the grammar reserves: none can name a layer, variable, parameter, block or network.
KEYWORDS = ("fixed", "as", "in", "input", "output", "let", "block", "network", "import", "from", "repeat", "true",
            "false", "none")
CLOSING = {"(": ")", "[": "]", "{": "}"}

OPERATOR_WORDS = frozenset({"'+'", "'-'", "'*'", "'/'", "'//'", "'%'"})
# The words most likely to be the fix come first (a missing bracket, arrow or comma), so that they
# survive the cut to eight; the rest follow alphabetically.
WORD_RANK = {w: i for i, w in enumerate(
    ["'}'", "')'", "']'", "'->'", "','", "'='", "':'", "'{'", "'('", "a name", "a number", "a string", "'['"]
)}


class _TooManyNamesError(Exception):
    pass


class _NameBudget:
    """Counts the names and numbers the lexer makes, so a file of millions of them stops at MAX_NAMES (in
    seconds) instead of being parsed in full first."""

    left = MAX_NAMES

    def __call__(self, tok: Token) -> Token:
        self.left -= 1
        if self.left < 0:
            raise _TooManyNamesError(tok)
        return tok


_NAMES = _NameBudget()


@cache
def _parser() -> Lark:
    return Lark(grammar_text("netdsl.lark"), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                lexer_callbacks={"NAME": _NAMES, "NUMBER": _NAMES})


def describe_expected(parser: Lark, names: set[str]) -> str:
    """Turn lark terminal names into words: "a name, '(' or '->'"."""
    by_name = {t.name: t for t in parser.terminals}
    words = set()
    for n in names:
        if n in TERMINAL_WORDS:
            words.add(TERMINAL_WORDS[n])
        elif n in by_name and isinstance(by_name[n].pattern, PatternStr):
            words.add(f"'{by_name[n].pattern.value}'")
        else:
            words.add(n.lower())
    operators = words & OPERATOR_WORDS
    if len(operators) > 2:  # after a value, any arithmetic operator may follow: say so once
        words = (words - operators) | {"an operator"}
    ordered = sorted(words, key=lambda w: (WORD_RANK.get(w, len(WORD_RANK)), w))
    if len(ordered) > 8:
        ordered = ordered[:8] + ["..."]
    return ", ".join(ordered[:-1]) + (" or " if len(ordered) > 1 else "") + ordered[-1] if ordered else "nothing"


def _span_of(file: str, meta_or_token) -> Span:
    m = meta_or_token
    return Span(file, m.line, m.column, m.end_line, m.end_column)


def open_brackets(text: str, end: int) -> list[tuple[str, int, int]]:
    """The brackets still open at offset `end` of the text: (bracket, line, column), innermost last.

    Strings and comments are skipped as the lexer skips them; a closer pops the innermost bracket."""
    stack: list[tuple[str, int, int]] = []
    line, column, i = 1, 1, 0
    in_string = in_comment = False
    while i < min(end, len(text)):
        ch = text[i]
        if ch == "\n":
            line, column, in_string, in_comment = line + 1, 1, False, False
            i += 1
            continue
        if in_comment:
            pass
        elif in_string:
            in_string = ch != '"'
        elif ch == '"':
            in_string = True
        elif ch == "#":
            in_comment = True
        elif ch in CLOSING:
            stack.append((ch, line, column))
        elif ch in CLOSING.values() and stack:
            stack.pop()
        i += 1
        column += 1
    return stack


def word_before(text: str, offset: int) -> str:
    """The word that ends, before blanks, at `offset` ('' if none). A scan back from the offset: a regex searched
    over text[:offset] for a word and blanks at its end backtracked at every word, for 15 s of CPU on a 50 kB file."""
    end = offset
    while end > 0 and text[end - 1] in " \t\r\n":
        end -= 1
    start = end
    while start > 0 and (text[start - 1].isascii() and (text[start - 1].isalnum() or text[start - 1] == "_")):
        start -= 1
    return text[start:end]


def _notes(file: str, text: str, offset: int, expected: set[str], found: Token | None) -> list[str]:
    """What may help with a syntax error: a keyword used as a name; the bracket left open on an earlier line
    (the parser notices a missing ')' only where the next statement begins) or, at the end, a '{'."""
    notes = []
    before = word_before(text, offset)  # `in=3`: the keyword parsed, then '='
    if found is not None and str(found) in KEYWORDS and found.type != "NAME" and "NAME" in expected:
        word = str(found)
    elif found is not None and str(found) in ("=", ":") and before in KEYWORDS:
        word = before
    else:
        word = None
    if word is not None:
        notes.append(f"'{word}' is a keyword: it cannot name a variable, parameter, block or network "
                     f"(a layer may take it with `as {word}`)")
    still_open = open_brackets(text, offset)
    if still_open:
        bracket, line, column = still_open[-1]
        here = text.count("\n", 0, offset) + 1
        at_end = not text[offset:].strip()
        wanted = any(describe_expected(_parser(), {name}) == f"'{CLOSING[bracket]}'" for name in expected)
        if wanted and (at_end or (bracket != "{" and line < here)):
            notes.append(f"the '{bracket}' opened at {file}:{line}:{column} is not closed")
    return notes


def syntax_error(parser: Lark, err: UnexpectedInput, file: str, text: str) -> NetError:
    """A NetError for a lark parse failure, pointing at the offending character or token."""
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        span = Span(file, err.line, err.column, err.line, err.column + 1)
        what = f"unexpected character {ch!r}"
        allowed = set(err.allowed or ())
        expected = describe_expected(parser, allowed)
        return NetError(f"{what}; expected {expected}", span, _notes(file, text, err.pos_in_stream, allowed, None))
    if isinstance(err, UnexpectedEOF):
        lines = text.splitlines() or [""]
        span = Span(file, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
        return NetError(f"unexpected end of file; expected {describe_expected(parser, set(err.expected))}", span,
                        _notes(file, text, len(text), set(err.expected), None))
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    if tok.type == "$END":
        lines = text.splitlines() or [""]
        span = Span(file, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
        found, offset = "end of file", len(text)
    else:
        span = Span(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1)
        keyword = str(tok) in KEYWORDS and tok.type != "NAME"
        shown = repr(tok.value) if len(tok.value) <= 40 else repr(tok.value[:30]) + f"... ({len(tok.value)} characters)"
        found, offset = f"{'keyword ' if keyword else ''}{shown}", tok.start_pos
    expected = set(err.expected)
    return NetError(f"unexpected {found}; expected {describe_expected(parser, expected)}", span,
                    _notes(file, text, offset, expected, tok if tok.type != "$END" else None))


@v_args(meta=True, inline=True)
class _ToSyntax(Transformer):
    """lark tree -> netdsl.syntax dataclasses (one method per grammar alias)."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, meta) -> Span:
        return _span_of(self.file, meta)

    # expressions
    def number(self, meta, tok):
        text = str(tok)
        if len(text) > 40:  # int() of thousands of digits is slow or refused; no real size has 40 digits
            raise NetError(f"the number {text[:12]}... ({len(text)} characters) is out of range: {RANGE}",
                           self._s(meta))
        value = float(text) if any(c in text for c in ".eE") else int(text)
        return ast.Number(check_number(value, self._s(meta), f"the number {text}"), self._s(meta))

    def string(self, meta, tok):
        return ast.String(str(tok)[1:-1], self._s(meta))

    def true(self, meta):
        return ast.Const(True, self._s(meta))

    def false(self, meta):
        return ast.Const(False, self._s(meta))

    def none(self, meta):
        return ast.Const(None, self._s(meta))

    def block_input(self, meta):
        return ast.BlockInput(self._s(meta))

    def path(self, meta, *parts):
        return tuple(str(p) for p in parts)

    node_path = path

    def ref(self, meta, path):
        return ast.Ref(path, self._s(meta))

    def node_ref(self, meta, path):
        return ast.NodeRef(path, self._s(meta))

    def network_param(self, meta, name):
        return ast.NetworkParam(str(name), self._s(meta))

    def index(self, meta, base, index):
        return ast.Index(base, index, self._s(meta))

    def _bin(op):  # noqa: N805 - a small factory used at class creation
        def method(self, meta, left, right):
            return ast.BinOp(op, left, right, self._s(meta))

        return method

    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    floordiv = _bin("//")
    mod = _bin("%")

    def neg(self, meta, operand):
        return ast.Neg(operand, self._s(meta))

    def list(self, meta, *items):
        return ast.ListExpr(tuple(i for i in items if i is not None), self._s(meta))

    def call(self, meta, name, args):
        name_span = _span_of(self.file, name)
        return ast.Call(str(name), tuple(args or ()), self._s(meta), name_span)

    def args(self, meta, *items):
        return items

    def pos_arg(self, meta, value):
        return ast.Arg(None, value, self._s(meta))

    def kw_arg(self, meta, name, value):
        return ast.Arg(str(name), value, self._s(meta))

    # chains
    def repeat(self, meta, count, start):
        return count, start

    def step(self, meta, fixed, repeat, expr, as_tok, path):
        count, start = repeat if repeat is not None else (None, None)
        return ast.Step(expr, self._s(meta), fixed is not None, count, path, start)

    def chain(self, meta, *steps):
        return ast.Chain(tuple(steps), self._s(meta))

    # statements
    def input_stmt(self, meta, name, shape):
        return ast.InputStmt(str(name), shape, self._s(meta))

    def output_stmt(self, meta, name, value):
        return ast.OutputStmt(str(name), value, self._s(meta))

    def let_stmt(self, meta, name, value):
        return ast.LetStmt(str(name), value, self._s(meta))

    def unpack_stmt(self, meta, *items):
        *names, value = items
        return ast.AssignStmt(tuple(str(n) for n in names), value, self._s(meta))

    def assign_stmt(self, meta, name, value):
        return ast.AssignStmt((str(name),), value, self._s(meta))

    def chain_stmt(self, meta, value):
        return ast.ChainStmt(value, self._s(meta))

    # definitions
    def param(self, meta, name, default):
        return ast.Param(str(name), default, self._s(meta))

    def params(self, meta, *items):
        return tuple(items)

    def sig_params(self, meta, params):
        return ((), params)

    def sig_inputs(self, meta, inputs, params):
        for p in inputs:
            if p.default is not None:
                raise NetError(f"block input '{p.name}' cannot have a default; inputs come before ';'", p.span)
        return (tuple(p.name for p in inputs), params or ())

    def block_def(self, meta, name, signature, *body):
        inputs, params = signature if signature is not None else ((), ())
        return ast.BlockDef(str(name), tuple(inputs), tuple(params), tuple(body), self._s(meta), self.file)

    def network_def(self, meta, name, params, *body):
        return ast.NetworkDef(str(name), tuple(params or ()), tuple(body), self._s(meta))

    def network_def_noparams(self, meta, name, *body):
        return ast.NetworkDef(str(name), (), tuple(body), self._s(meta))

    def module_file(self, meta, tok):
        return (str(tok)[1:-1], True)

    def module_name(self, meta, tok):
        return (str(tok), False)

    def import_names(self, meta, module, *names):
        return ast.Import(module[0], module[1], tuple(str(n) for n in names), self._s(meta))

    def import_all(self, meta, module):
        return ast.Import(module[0], module[1], None, self._s(meta))

    def start(self, meta, *items):
        mod = ast.Module(self.file)
        for item in items:
            if isinstance(item, ast.Import):
                mod.imports.append(item)
            elif isinstance(item, ast.LetStmt):
                if any(let.name == item.name for let in mod.lets):
                    raise NetError(f"'{item.name}' is already defined in this file", item.span)
                mod.lets.append(item)
            elif isinstance(item, ast.BlockDef):
                if item.name in mod.blocks:
                    raise NetError(f"block '{item.name}' is defined twice", item.span)
                mod.blocks[item.name] = item
            else:
                if item.name in mod.networks:
                    raise NetError(f"network '{item.name}' is defined twice", item.span)
                mod.networks[item.name] = item
        return mod


def too_deep(tree: Tree, file: str) -> NetError | None:
    """A located error for the first place the tree nests deeper than MAX_DEPTH (found without recursion)."""
    stack = [(tree, 1, None)]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, Token):
            where = node
        elif not node.meta.empty:
            where = node.meta
        if depth > MAX_DEPTH:
            span = _span_of(file, where) if where is not None else Span(file, 1, 1, 1, 2)
            return NetError(f"brackets, calls or operators are nested too deeply here (more than {MAX_DEPTH} "
                            "levels of the syntax tree)", Span(file, span.line, span.column, span.line, span.column + 1),
                            ["split the expression with `let` or intermediate names"])
        if isinstance(node, Tree):
            stack.extend((child, depth + 1, where) for child in reversed(node.children) if child is not None)
    return None


def parse_text(text: str, file: str = "<text>") -> ast.Module:
    """Parse .net source; raise NetError (never a lark error) on bad input."""
    register_source(file, text)
    parser = _parser()
    _NAMES.left = MAX_NAMES
    try:
        tree = parser.parse(text)
    except UnexpectedInput as err:
        raise syntax_error(parser, err, file, text) from None
    except _TooManyNamesError as err:
        tok = err.args[0]
        raise NetError(f"this file holds more than {MAX_NAMES:,} names and numbers; netdsl reads at most that many",
                       token_span(file, tok), ["a long chain of layers is written `x -> repeat(N) layer`"]) from None
    deep = too_deep(tree, file)
    if deep is not None:
        raise deep
    try:
        return _ToSyntax(file).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, NetError):
            raise err.orig_exc from None
        raise


def token_span(file: str, tok: Token) -> Span:
    """The span of one lark token."""
    return _span_of(file, tok)
