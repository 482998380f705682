"""Expand a parsed network (blocks, repetition, expressions) into the graph IR, inferring shapes as it goes."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from compiler.diagnostics import NetError, Span, did_you_mean
from compiler.ir import add_node, new_graph
from compiler.ops import OPS, REQUIRED, canonical, check_value
from compiler.shapes import infer_node_shape, split_sizes
from netdsl import syntax as ast
from netdsl.calls import Argument, split_arguments
from netdsl.origins import bare_name, refs_in, source_text, within
from netdsl.values import ARITH, FUNCTIONS, Choice, Value, check_number, describe, is_number

INTEGER_KINDS = frozenset({"pos", "nonneg", "int", "optpos", "pos2", "optpos2", "nonneg2", "padding"})
MAX_NODES = 100_000  # a guard against runaway repeat counts: real networks have a few thousand at most
MAX_BLOCK_DEPTH = 100  # blocks calling blocks: real networks nest a few levels


@dataclass
class Frame:
    """What a statement sees: its variables, name prefix, current value, visible blocks and its file's constants.

    `origins` maps a block parameter to the argument that passed it (followed through blocks that pass it on),
    so that a bad repeat count is reported at the call the user wrote."""

    env: dict
    prefix: str
    blocks: dict
    current: Value | None = None
    fixed: bool = False
    in_block: bool = False
    constants: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.env or name in self.constants

    def get(self, name: str):
        return self.env[name] if name in self.env else self.constants[name]

    def names(self) -> list[str]:
        return [*self.env, *self.constants]


@dataclass
class Builder:
    """Builds one network; `visible` maps a file to the blocks its definitions may call."""

    visible: dict[str, dict[str, ast.BlockDef]]
    lets: dict[str, list[ast.LetStmt]] = field(default_factory=dict)
    g: nx.DiGraph = field(default_factory=lambda: new_graph(""))
    used: set = field(default_factory=set)
    next_suffix: dict = field(default_factory=dict)
    stack: list = field(default_factory=list)
    network_params: dict = field(default_factory=dict)
    file_constants: dict = field(default_factory=dict)

    # ---- naming -------------------------------------------------------------------------
    def fresh(self, prefix: str, base: str) -> str:
        # Names are never freed, so the search resumes where the last one for this base stopped.
        i = self.next_suffix.get((prefix, base), 0)
        name = prefix + base if i == 0 else f"{prefix}{base}_{i}"
        while name in self.used:
            i += 1
            name = f"{prefix}{base}_{i}"
        self.next_suffix[(prefix, base)] = i
        self.used.add(name)
        return name

    def explicit(self, prefix: str, path: tuple[str, ...], span: Span) -> str:
        name = prefix + ".".join(path)
        if name in self.used:
            raise NetError(f"the name '{name}' is already used", span)
        self.used.add(name)
        return name

    # ---- networks and statements --------------------------------------------------------
    def constants(self, file: str) -> dict:
        """The file's constants (its top-level `let`s, in order; each sees those before it), computed once."""
        if file not in self.file_constants:
            frame = Frame({}, "", self.visible.get(file, {}))
            self.file_constants[file] = frame.env  # a let sees the ones before it
            for let in self.lets.get(file, ()):
                self.statement(let, frame)
        return self.file_constants[file]

    def build(self, net: ast.NetworkDef, file: str, overrides: dict | None = None) -> nx.DiGraph:
        self.g.graph["name"] = net.name
        frame = Frame({}, "", self.visible[file], constants=self.constants(file))
        overrides = dict(overrides or {})
        for p in net.params:
            if p.name in overrides:
                value = overrides.pop(p.name)
                frame.env[p.name] = check_number(value, p.span, f"parameter '{p.name}' = {value!r}")
            elif p.default is not None:
                frame.env[p.name] = self.expr(p.default, frame)
            else:
                raise NetError(f"network parameter '{p.name}' has no default; give it a value", p.span)
            self.network_params[p.name] = frame.env[p.name]
        if overrides:
            name = next(iter(overrides))
            raise NetError(f"network '{net.name}' has no parameter '{name}'", net.span,
                           did_you_mean(name, [p.name for p in net.params]))
        for stmt in net.body:
            self.statement(stmt, frame)
        if not self.g.graph["outputs"]:
            raise NetError(f"network '{net.name}' has no output; add `output NAME = ...`", net.span)
        return self.g

    def statement(self, stmt, frame: Frame) -> None:
        if isinstance(stmt, ast.InputStmt):
            if frame.in_block:
                raise NetError("inputs are declared in a network, not in a block (blocks use `in`)", stmt.span)
            shape = self.expr(stmt.shape, frame)
            if check_value("shape", shape):
                raise NetError(f"input '{stmt.name}' needs a shape like [3, 224, 224], got {describe(shape)}", stmt.span)
            self.bind(frame, stmt.name, None, stmt.span)
            node = self.node(frame, "input", {"shape": shape}, [], ("input",), None, stmt.span, (stmt.name,))
            frame.env[stmt.name] = node
            frame.current = frame.current or node
        elif isinstance(stmt, ast.OutputStmt):
            if frame.in_block:
                raise NetError("outputs are declared in a network; a block's value is its last statement", stmt.span)
            value = self.chain(stmt.value, frame)
            if not isinstance(value, Value):
                raise NetError(f"output '{stmt.name}' must be a tensor, not {describe(value)}", stmt.value.span)
            if self.g.nodes[value.node]["op"] == "input":
                raise NetError(f"output '{stmt.name}' is the input itself; it depends on no layer", stmt.value.span)
            if stmt.name in self.g.graph["outputs"]:
                raise NetError(f"output '{stmt.name}' is declared twice", stmt.span)
            self.g.graph["outputs"][stmt.name] = value.node
        elif isinstance(stmt, ast.LetStmt):
            value = self.expr(stmt.value, frame)
            if isinstance(value, Value):
                raise NetError("`let` binds numbers and other constants; bind tensors with `name = ...`", stmt.span)
            self.bind(frame, stmt.name, value, stmt.span)
        elif isinstance(stmt, ast.AssignStmt):
            parts = len(stmt.targets) if len(stmt.targets) > 1 else None
            value = self.chain(stmt.value, frame, parts)
            values = value if parts else (value,)
            for target, v in zip(stmt.targets, values):
                self.bind(frame, target, v, stmt.span, rebind=True)
            if isinstance(values[-1], Value):
                frame.current = values[-1]
        else:
            value = self.chain(stmt.value, frame)
            if isinstance(value, Value):
                frame.current = value

    def bind(self, frame: Frame, name: str, value, span: Span, rebind: bool = False) -> None:
        old = frame.env.get(name)
        if name in frame.env and not (rebind and isinstance(old, Value) and isinstance(value, Value)):
            raise NetError(f"'{name}' is already defined here; pick another name", span)
        frame.env[name] = value

    # ---- chains and steps ---------------------------------------------------------------
    def chain(self, chain: ast.Chain, frame: Frame, parts: int | None = None):
        value = None
        for i, step in enumerate(chain.steps):
            last = i == len(chain.steps) - 1
            value = self.step(step, frame, value, i == 0, parts if last else None)
        if parts and not (isinstance(value, tuple) and len(value) == parts):
            raise NetError(f"{parts} names need a split into {parts} parts, but this gives {describe(value)}", chain.span)
        return value

    def callable_name(self, name: str, frame: Frame) -> bool:
        return name in frame.blocks or (name in OPS and name != "input")

    def step(self, step: ast.Step, frame: Frame, source, head: bool, parts: int | None):
        expr = step.expr
        if isinstance(expr, ast.Ref) and len(expr.path) == 1 and self.callable_name(expr.path[0], frame):
            if not head or not frame.has(expr.path[0]):
                expr = ast.Call(expr.path[0], (), expr.span, expr.span)
        if not head and isinstance(expr, ast.Ref) and len(expr.path) == 1 and not frame.has(expr.path[0]):
            known = [*frame.blocks, *(o for o in OPS if o != "input")]
            raise NetError(f"unknown op or block '{expr.text}'", expr.span, did_you_mean(expr.text, known))
        is_layer = isinstance(expr, ast.Call) and expr.name not in FUNCTIONS and expr.name != "choice"
        if not is_layer:
            if step.repeat is not None or step.name is not None or step.fixed:
                raise NetError("'fixed', 'repeat' and 'as' apply to a layer or block call", step.span)
            if not head:
                raise NetError(f"only a layer or block can follow '->'; this is {describe(self.expr(expr, frame))}",
                               step.span)
            return self.expr(expr, frame)
        if source is not None and not isinstance(source, Value):
            raise NetError(f"only a tensor can flow into '{expr.name}' with '->'; this is {describe(source)}",
                           step.span)
        times, start = 1, 0
        if step.repeat is not None:
            times = self.count(step.repeat, frame, "repeat count")
            if times > MAX_NODES:
                raise NetError(f"repeat count {times} is too large (a network has at most {MAX_NODES} nodes)", step.span)
        if step.start is not None:
            start = self.count(step.start, frame, "repeat start")
            if step.name is None:
                raise NetError("start= numbers the names given by `as`; add `as NAME`", step.start.span)
        fixed = frame.fixed or step.fixed
        if times == 0:  # repeat(0): the call is applied no times; its input flows through
            return source if source is not None else self.call_inputs(expr, frame)[0]
        for r in range(times):
            name = step.name if step.name is None or step.repeat is None else step.name + (str(start + r),)
            source = self.call(expr, frame, source, name, fixed, parts if r == times - 1 else None)
        return source

    def count(self, e, frame: Frame, what: str) -> int:
        """A repeat count or start: a non-negative integer. A bad one that came from a block's argument is
        reported at the argument the user wrote, with a note of where the block uses it."""
        value = self.expr(e, frame)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        message = f"{what} must be a non-negative integer, got {describe(value)}"
        for name in refs_in(e):
            if name in frame.origins:
                text = source_text(e.span)
                used = f"{e.span.file}:{e.span.line}:{e.span.column}"
                raise NetError(f"{message} ({text} with {name} = {frame.get(name)!r})", frame.origins[name],
                               [f"'{name}' is used as the {what} at {used}"])
        raise NetError(message, e.span)

    # ---- expressions --------------------------------------------------------------------
    def expr(self, e, frame: Frame):
        if isinstance(e, (ast.Number, ast.String, ast.Const)):
            return e.value
        if isinstance(e, ast.Chain):
            return self.chain(e, frame)
        if isinstance(e, ast.Ref):
            return self.ref(e, frame)
        if isinstance(e, ast.NodeRef):
            for name in (frame.prefix + e.text, e.text):
                if name in self.g:
                    return Value(name)
            raise NetError(f"no node named '{e.text}'", e.span, did_you_mean(e.text, self.g.nodes))
        if isinstance(e, ast.BlockInput):
            if not frame.in_block:
                raise NetError("'in' (a block's input) is only defined inside a block", e.span)
            return frame.env["in"]
        if isinstance(e, ast.ListExpr):
            return [self.expr(i, frame) for i in e.items]
        if isinstance(e, ast.Index):
            return self.index(e, frame)
        if isinstance(e, ast.NetworkParam):
            if e.name not in self.network_params:
                known = list(self.network_params)
                raise NetError(f"network '{self.g.graph['name']}' has no parameter '{e.name}'", e.span,
                               did_you_mean(e.name, known) + [f"its parameters: {', '.join(known) or 'none'}"])
            return self.network_params[e.name]
        if isinstance(e, ast.Neg):
            v = self.expr(e.operand, frame)
            if not is_number(v):
                raise NetError(f"cannot negate {describe(v)}", e.span)
            return -v
        if isinstance(e, ast.BinOp):
            a, b = self.expr(e.left, frame), self.expr(e.right, frame)
            if isinstance(a, Value) or isinstance(b, Value):
                raise NetError("arithmetic on tensors is written add(a, b) or mul(a, b)", e.span)
            if not (is_number(a) and is_number(b)):
                raise NetError(f"'{e.op}' needs numbers, got {describe(a)} and {describe(b)}", e.span)
            if e.op in ("/", "//", "%") and b == 0:
                raise NetError("division by zero", e.span)
            return check_number(ARITH[e.op](a, b), e.span, f"the result of '{e.op}'")
        if isinstance(e, ast.Call):
            return self.call(e, frame, None, None, frame.fixed, None)
        raise NetError(f"unexpected expression {e!r}", getattr(e, "span", None))  # pragma: no cover

    def index(self, e: ast.Index, frame: Frame):
        items, i = self.expr(e.base, frame), self.expr(e.index, frame)
        if not isinstance(items, list):
            raise NetError(f"only a list can be indexed; this is {describe(items)}", e.base.span)
        if isinstance(i, float) and i.is_integer():
            i = int(i)
        if not isinstance(i, int) or isinstance(i, bool):
            raise NetError(f"a list index must be an integer, got {describe(i)}", e.index.span)
        if not -len(items) <= i < len(items):
            raise NetError(f"index {i} is out of range for a list of {len(items)} item{'s' * (len(items) != 1)}",
                           e.index.span)
        return items[i]

    def ref(self, e: ast.Ref, frame: Frame):
        if len(e.path) == 1 and frame.has(e.path[0]):
            return frame.get(e.path[0])
        for name in (frame.prefix + e.text, e.text):
            if name in self.g:
                return Value(name)
        if len(e.path) == 1 and self.callable_name(e.path[0], frame):
            raise NetError(f"'{e.text}' is a layer; apply it with `x -> {e.text}` or {e.text}(x)", e.span)
        notes = did_you_mean(e.text, frame.names())
        if frame.in_block and e.text in self.network_params:
            notes.append(f"a block reads the network's parameter explicitly: network.{e.text}")
        raise NetError(f"'{e.text}' is not defined", e.span, notes)

    def function(self, call: ast.Call, frame: Frame):
        args = [self.expr(a.value, frame) for a in call.args if a.name is None]
        kwargs = {a.name: self.expr(a.value, frame) for a in call.args if a.name is not None}
        if call.name == "choice":
            if not args or set(kwargs) - {"id"}:
                raise NetError("choice takes its options, and optionally id=\"name\"", call.span)
            if any(isinstance(a, (Value, Choice, list)) for a in args):
                raise NetError("choice options must be numbers, strings or booleans", call.span)
            return Choice(tuple(args), call.span, kwargs.get("id"))
        for v in [*args, *kwargs.values()]:
            if not is_number(v):
                raise NetError(f"{call.name}() takes numbers, got {describe(v)}", call.span)
        try:
            result = FUNCTIONS[call.name](*args, **kwargs)
        except ZeroDivisionError:
            raise NetError(f"{call.name}(): division by zero", call.span) from None
        except (TypeError, ValueError, OverflowError) as err:
            raise NetError(f"{call.name}(): {err}", call.span) from None
        return check_number(result, call.span, f"the result of {call.name}()")

    # ---- calls of ops and blocks --------------------------------------------------------
    def call(self, call: ast.Call, frame: Frame, source, name, fixed: bool, parts: int | None):
        if call.name in FUNCTIONS or call.name == "choice":
            if source is not None:
                raise NetError(f"{call.name}() is a function of numbers, not a layer", call.name_span)
            return self.function(call, frame)
        inputs, params = self.call_arguments(call, frame, source)
        if call.name in frame.blocks:
            return self.expand(frame.blocks[call.name], call, frame, inputs, params, name, fixed)
        return self.op(call, frame, inputs, params, name, fixed, parts)

    def call_arguments(self, call: ast.Call, frame: Frame, source):
        """The tensor inputs and parameters of an op or block call."""
        if call.name in frame.blocks:
            block = frame.blocks[call.name]
            arity, names = len(block.inputs or ("in",)), [p.name for p in block.params]
        elif call.name in OPS and call.name != "input":
            spec = OPS[call.name]
            arity, names = spec.arity, [p.name for p in spec.params]
        else:
            known = [*frame.blocks, *(o for o in OPS if o != "input"), *FUNCTIONS]
            raise NetError(f"unknown op or block '{call.name}'", call.name_span, did_you_mean(call.name, known))
        return self.arguments(call, frame, source, arity, names)

    def call_inputs(self, call: ast.Call, frame: Frame) -> list[Value]:
        """The tensors a call at the head of a chain would take (for repeat(0), which applies it no times)."""
        return self.call_arguments(call, frame, None)[0]

    def arguments(self, call: ast.Call, frame: Frame, source, arity: int, names: list[str]):
        """Evaluate a call's arguments and split them into tensor inputs and parameters (netdsl.calls)."""
        evaluated = []
        for a in call.args:
            v = self.expr(a.value, frame)
            passed = bare_name(a.value)
            evaluated.append(Argument(a.name, v, a.span, frame.origins.get(passed, a.span) if passed else a.span))
        order = names if call.name in frame.blocks else list(OPS[call.name].positional)
        return split_arguments(call, evaluated, source, frame.current, arity, names, order)

    def op(self, call: ast.Call, frame: Frame, inputs, params, name, fixed, parts):
        spec = OPS[call.name]
        attrs, choices = {}, {}
        for p in spec.params:
            if p.name in params:
                value, span, _ = params[p.name]
            elif p.default is REQUIRED and p.name == "part" and parts:
                continue
            elif p.default is REQUIRED:
                raise NetError(f"'{call.name}' needs its parameter '{p.name}'", call.span)
            else:
                attrs[p.name] = p.default
                continue
            if isinstance(value, Choice):
                for option in value.options:
                    self.check_kind(call.name, p, option, span)
                choices[p.name] = value
                value = value.options[0]
            attrs[p.name] = self.check_kind(call.name, p, value, span)
        if call.name == "split" and "part" not in attrs:
            return self.split(call, frame, inputs, attrs, name, fixed, parts)
        return self.node(frame, call.name, attrs, [v.node for v in inputs], (call.name,), choices, call.span, name, fixed)

    def check_kind(self, op: str, p, value, span: Span):
        if isinstance(value, float) and value.is_integer() and p.kind in INTEGER_KINDS:
            value = int(value)
        if isinstance(value, list):
            value = [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
        wanted = check_value(p.kind, value)
        if wanted:
            raise NetError(f"'{op}' parameter '{p.name}' must be {wanted}, got {describe(value)}", span)
        return canonical(p.kind, value)

    def split(self, call, frame, inputs, attrs, name, fixed, parts):
        channels = self.g.nodes[inputs[0].node]["shape"][0]
        try:
            count = len(split_sizes(attrs["sections"], channels))
        except ValueError as err:
            raise NetError(f"split: {err}", call.span) from None
        if parts is None:
            raise NetError(f"split gives {count} parts: take one with part=i, or unpack them: "
                           f"a, b = x -> split({attrs['sections']})", call.span)
        if parts != count:
            raise NetError(f"this split gives {count} parts but {parts} names receive them", call.span)
        return tuple(
            self.node(frame, "split", {**attrs, "part": i}, [inputs[0].node], ("split",), {}, call.span,
                      None if name is None else name + (str(i),), fixed)
            for i in range(count)
        )

    def node(self, frame, op, attrs, inputs, base, choices, span, name, fixed=False) -> Value:
        if len(self.g) >= MAX_NODES:
            raise NetError(f"the network has more than {MAX_NODES} nodes; is a repeat count too large?", span)
        full = self.explicit(frame.prefix, name, span) if name else self.fresh(frame.prefix, base[0])
        ids = {}
        for attr, choice in (choices or {}).items():
            if choice.id is None:
                choice.id = f"{full}.{attr}"
            known = self.g.graph["decisions"].get(choice.id)
            if known is not None and known != list(choice.options):
                raise NetError(f"choice id '{choice.id}' is used with different options", choice.span)
            self.g.graph["decisions"][choice.id] = list(choice.options)
            ids[attr] = choice.id
        add_node(self.g, full, op, attrs, inputs, span, fixed or frame.fixed, ids)
        self.g.nodes[full]["shape"] = infer_node_shape(self.g, full)
        return Value(full)

    def expand(self, block: ast.BlockDef, call: ast.Call, frame: Frame, inputs, params, name, fixed) -> Value:
        if block.name in self.stack:
            cycle = " -> ".join([*self.stack[self.stack.index(block.name):], block.name])
            raise NetError(f"block '{block.name}' calls itself ({cycle})", call.span)
        if len(self.stack) >= MAX_BLOCK_DEPTH:
            raise NetError(f"blocks nest more than {MAX_BLOCK_DEPTH} deep here ({' -> '.join(self.stack[:3])} -> ... "
                           f"-> {block.name})", call.span)
        scope = self.explicit(frame.prefix, name, call.span) if name else self.fresh(frame.prefix, block.name)
        inner = Frame({}, scope + ".", self.visible[block.file], inputs[0], fixed, True, self.constants(block.file))
        inner.env["in"] = inputs[0]
        for input_name, value in zip(block.inputs, inputs):
            inner.env[input_name] = value
        self.g.graph["scopes"][scope] = block.name
        self.g.graph.setdefault("calls", {})[scope] = call.span
        self.stack.append(block.name)
        try:
            for p in block.params:
                if p.name in params:
                    inner.env[p.name], _, inner.origins[p.name] = params[p.name]
                elif p.default is not None:
                    inner.env[p.name] = self.expr(p.default, inner)
                else:
                    raise NetError(f"block '{block.name}' needs its parameter '{p.name}'", call.span)
            for stmt in block.body:
                self.statement(stmt, inner)
        except NetError as err:
            if not within(err.span, call.span):  # a traceback of block calls, innermost first
                where = f"{call.span.file}:{call.span.line}:{call.span.column}"
                err.notes.append(f"in block '{block.name}', called at {where}: {source_text(call.span)}")
            raise
        finally:
            self.stack.pop()
        return inner.current
