"""The op set: one spec per op holding every fact about it, as data that every pass reads.

An op's spec says how it is called (arity, parameters with PyTorch's defaults, positional order) and, per pass, a
*trait*: a short name for how that pass treats the op. Each trait's values are named once, in TRAITS below, and
each pass keeps one rule per value (shapes.SHAPE_RULES, cost.program.COST_CODES, rewrite.coupling.CHANNEL_RULES,
rewrite.transfer.CHANNEL_RULES and WEIGHT_RULES, backend.codegen.EXPRESSIONS, LAYERS and INPLACE); no pass
keeps a list of op names. Ops come in categories (input, layer, activation, pool, merge, movement), named once
below with the traits their ops share unless an op says otherwise.

Adding an op
    1. Add one `_op(...)` entry to OPS: its name, category, arity, parameters (kinds from KIND_CHECKS, defaults
       PyTorch's), positional order and a one-line doc, and each trait its category does not already give.
    2. Choose every trait from the values in TRAITS. An op that behaves like an existing one in a pass reuses
       that value (a new activation: shape "same", cost "elementwise", channels "same", codegen "call" with
       `torch="F.tanh"`), and needs no other edit.
    3. Only where an op brings behaviour no value describes, add a value to TRAITS with a one-line meaning and
       its rule in that pass (a shape function in shapes.py, a cost code in cost/kernel.py + cost/program.py, a
       channel rule in rewrite/coupling.py and rewrite/transfer.py, an expression or layer in backend/codegen.py).
       tests/compiler/test_ops.py fails until every pass has a rule for every value in use.
    4. Document it in docs/language.md (the Ops table) and docs/cost-model.md (its formula). Test it: a shape
       test in tests/compiler/test_shapes.py, and the op in EVERY_OP with its reference in reference_forward
       (tests/compiler/backend/lowering_nets.py), so the lowering and ONNX tests check its generated code
       against an independent interpreter and onnxruntime (tests/compiler/test_ops.py checks EVERY_OP uses
       every op).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

REQUIRED = object()  # marks a parameter without a default
VARIADIC = -1  # arity of ops taking two or more inputs


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # a key of KIND_CHECKS
    default: object = REQUIRED


# Every trait an op declares, with what each of its values means. A pass has one rule per value.
TRAITS: dict[str, dict[object, str]] = {
    "category": {
        "input": "a network input",
        "layer": "holds parameters in a torch.nn layer",
        "activation": "a function of each element on its own (softmax: of each position's channels)",
        "pool": "pools or resamples each channel's spatial grid",
        "merge": "combines two or more tensors",
        "movement": "moves, views or passes values on, without arithmetic at inference",
    },
    "shape": {  # compiler.shapes.SHAPE_RULES: the output shape from the inputs' shapes
        "input": "the `shape` parameter",
        "conv": "[out, H', W'] by the conv window formula, groups dividing both channel counts",
        "dwconv": "as conv with groups = input channels, out = input channels x multiplier",
        "conv_transpose": "[out, H', W'] by the transposed conv formula",
        "linear": "[out] from a flat input",
        "pool": "[C, H', W'] by the pooling window formula (stride defaults to k)",
        "gap": "[C, H, W] -> [C]",
        "adaptive_avgpool": "[C, size, size]",
        "flatten": "[product of dims]",
        "upsample": "[C, H x scale, W x scale] or [C, size, size]",
        "broadcast": "NumPy broadcasting of every operand",
        "concat": "operands agree on every dim but `dim`, which is summed",
        "split": "one part of a channel split",
        "channel_shuffle": "same, channels divisible by groups",
        "softmax": "same, `dim` in range",
        "bn": "same, from [C, H, W] or [C]",
        "same": "the first input's shape",
    },
    "cost": {  # compiler.cost.program.COST_CODES: the formula in docs/cost-model.md
        "input": "nothing", "conv": "conv MACs and params", "dwconv": "depthwise conv MACs and params",
        "conv_transpose": "transposed conv MACs and params (scatter form)", "linear": "linear MACs and params",
        "bn": "affine params, running-stat buffers, one op per element",
        "elementwise": "one op per element", "softmax": "three ops per element",
        "maxpool": "k² ops per output element", "avgpool": "k² ops per output element",
        "gap": "one op per input element", "adaptive_avgpool": "the sum of PyTorch's adaptive windows",
        "upsample": "nearest 0, bilinear four ops per element", "nary": "(operands - 1) ops per element",
        "move": "no arithmetic",
    },
    "channels": {  # rewrite.coupling and rewrite.transfer CHANNEL_RULES: output channels from input channels
        "source": "fixed channels of its own (a network input)",
        "conv": "`out` new channels (a channel group), or its input's when groups = in = out channels (depthwise)",
        "width": "`out` new channels (a channel group)",
        "depthwise": "each input channel becomes `multiplier` output channels",
        "same": "its first input's channels, in order",
        "shuffle": "its input's channels permuted across `groups` groups",
        "flatten": "each input channel becomes its H x W features",
        "split": "one part of its input's channels",
        "concat": "its operands' channels one after another (a channel concat), else theirs shared",
        "broadcast": "the channels its full-size operands share",
    },
    "layer": {  # backend.codegen.LAYERS (the nn layer) and rewrite.transfer.WEIGHT_RULES (slicing its tensors)
        None: "no parameters",
        "conv": "nn.Conv2d: weight [out, in / groups, k, k], bias [out]",
        "conv_transpose": "nn.ConvTranspose2d: weight [in, out / groups, k, k], bias [out]",
        "linear": "nn.Linear: weight [out, in], bias [out]",
        "batchnorm": "nn.BatchNorm2d (nn.BatchNorm1d on [C]): per-channel weight, bias and running statistics",
    },
    "codegen": {  # backend.codegen.EXPRESSIONS: the forward's expression (`torch` names the function called)
        "input": "a forward argument",
        "module": "a call of its layer",
        "call": "torch(x), with inplace=True where it may run in place",
        "leaky_relu": "torch(x, slope)", "gelu": "torch(x[, approximate])", "softmax": "torch(x, dim)",
        "pool": "torch(x, k, stride, ...)", "gap": "x.mean((2, 3))", "adaptive_avgpool": "torch(x, size)",
        "flatten": "x.flatten(1)", "dropout": "torch(x, p, self.training)", "upsample": "torch(x, size or scale, mode)",
        "arith": "operands joined by the operator `torch`, broadcast as the IR does", "concat": "torch([...], dim)",
        "channel_shuffle": "unflatten, transpose, flatten", "split": "x.narrow(1, start, size)", "identity": "x",
    },
    "inplace": {  # backend.codegen.INPLACE: which input it may overwrite
        None: "never", "first": "its first input", "either": "either operand of two (the op commutes)",
    },
    "view": {False: "a new tensor", True: "its output aliases its first input: no new memory (cost model)"},
    "fresh": {False: "its output may alias another tensor",
              True: "its output is a fresh tensor nothing else aliases (a reader may overwrite it in place)"},
    "stridable": {False: "never strided", True: "rewrite.striding may give it stride 2"},
    "factorizable": {False: "never factorized", True: "rewrite.factorize may split it into depthwise + 1 x 1"},
}


@dataclass(frozen=True)
class OpSpec:
    """One op: how it is called, and its value of every trait in TRAITS."""

    name: str
    category: str
    arity: int  # number of tensor inputs, or VARIADIC
    params: tuple[Param, ...]
    positional: tuple[str, ...]  # params that may be passed by position, in order
    doc: str
    shape: str
    cost: str
    channels: str
    layer: str | None
    codegen: str
    torch: str  # the function (or operator) its codegen expression calls; "" where the expression says it all
    inplace: str | None
    view: bool
    fresh: bool
    stridable: bool
    factorizable: bool

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


TRAIT_NAMES = tuple(f.name for f in fields(OpSpec) if f.name in TRAITS)
assert set(TRAIT_NAMES) == set(TRAITS)

_PLAIN = dict(layer=None, torch="", inplace=None, view=False, fresh=False, stridable=False, factorizable=False)
# the traits a category's ops share unless an op says otherwise
CATEGORY_TRAITS: dict[str, dict[str, object]] = {
    "input": dict(_PLAIN, shape="input", cost="input", channels="source", codegen="input"),
    "layer": dict(_PLAIN, codegen="module", fresh=True),
    "activation": dict(_PLAIN, shape="same", cost="elementwise", channels="same", codegen="call"),
    "pool": dict(_PLAIN, channels="same"),
    "merge": dict(_PLAIN, fresh=True),
    "movement": dict(_PLAIN, cost="move", shape="same", channels="same"),
}
assert set(CATEGORY_TRAITS) == set(TRAITS["category"])


def _op(name: str, category: str, arity: int = 1, params: tuple[Param, ...] = (), positional: tuple[str, ...] = (),
        doc: str = "", **traits: object) -> OpSpec:
    """A spec: the category's traits, overridden by the op's own."""
    return OpSpec(name, category, arity, params, positional, doc, **{**CATEGORY_TRAITS[category], **traits})


def _conv_common() -> tuple[Param, ...]:
    return (
        Param("stride", "pos2", 1),
        Param("padding", "padding", 0),
        Param("dilation", "pos2", 1),
    )


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in [
        _op("input", "input", 0, (Param("shape", "shape"),), doc="a network input"),
        _op("conv", "layer", 1,
            (Param("out", "pos"), Param("k", "pos2"), *_conv_common(), Param("groups", "pos", 1), Param("bias", "bool", True)),
            ("out", "k"), "2-D convolution (torch.nn.Conv2d)",
            shape="conv", cost="conv", channels="conv", layer="conv", stridable=True, factorizable=True),
        _op("dwconv", "layer", 1,
            (Param("k", "pos2"), *_conv_common(), Param("multiplier", "pos", 1), Param("bias", "bool", True)),
            ("k",), "depthwise convolution: groups = in channels, out = in x multiplier",
            shape="dwconv", cost="dwconv", channels="depthwise", layer="conv", stridable=True),
        _op("conv_transpose", "layer", 1,
            (Param("out", "pos"), Param("k", "pos"), Param("stride", "pos", 1), Param("padding", "nonneg", 0),
             Param("output_padding", "nonneg", 0), Param("dilation", "pos", 1), Param("groups", "pos", 1),
             Param("bias", "bool", True)),
            ("out", "k"), "transposed convolution (torch.nn.ConvTranspose2d)",
            shape="conv_transpose", cost="conv_transpose", channels="width", layer="conv_transpose"),
        _op("linear", "layer", 1, (Param("out", "pos"), Param("bias", "bool", True)), ("out",),
            "fully connected layer on a flat input", shape="linear", cost="linear", channels="width", layer="linear"),
        _op("bn", "layer", 1,
            (Param("eps", "posnum", 1e-5), Param("momentum", "prob", 0.1), Param("affine", "bool", True)),
            doc="batch normalisation (BatchNorm2d, or BatchNorm1d on a flat input)",
            shape="bn", cost="bn", channels="same", layer="batchnorm"),
        _op("relu", "activation", torch="F.relu", inplace="first"),
        _op("relu6", "activation", torch="F.relu6", inplace="first"),
        _op("leaky_relu", "activation", 1, (Param("slope", "num", 0.01),), ("slope",),
            codegen="leaky_relu", torch="F.leaky_relu"),
        _op("sigmoid", "activation", torch="torch.sigmoid"),
        _op("hardswish", "activation", torch="F.hardswish"),
        _op("hardsigmoid", "activation", torch="F.hardsigmoid"),
        _op("silu", "activation", torch="F.silu"),
        _op("gelu", "activation", 1, (Param("approximate", "gelu_mode", "none"),), codegen="gelu", torch="F.gelu"),
        _op("softmax", "activation", 1, (Param("dim", "int", 0),), ("dim",),
            "softmax over a per-sample dim (0 = channels)",
            shape="softmax", cost="softmax", codegen="softmax", torch="F.softmax"),
        _op("maxpool", "pool", 1,
            (Param("k", "pos2"), Param("stride", "optpos2", None), Param("padding", "nonneg2", 0),
             Param("dilation", "pos2", 1), Param("ceil_mode", "bool", False)),
            ("k",), "max pooling; stride defaults to k",
            shape="pool", cost="maxpool", codegen="pool", torch="F.max_pool2d"),
        _op("avgpool", "pool", 1,
            (Param("k", "pos2"), Param("stride", "optpos2", None), Param("padding", "nonneg2", 0),
             Param("ceil_mode", "bool", False), Param("count_include_pad", "bool", True)),
            ("k",), "average pooling; stride defaults to k",
            shape="pool", cost="avgpool", codegen="pool", torch="F.avg_pool2d"),
        _op("gap", "pool", doc="global average pool: [C, H, W] -> [C]", shape="gap", cost="gap", codegen="gap"),
        _op("adaptive_avgpool", "pool", 1, (Param("size", "pos"),), ("size",), "adaptive average pool to size x size",
            shape="adaptive_avgpool", cost="adaptive_avgpool", codegen="adaptive_avgpool",
            torch="F.adaptive_avg_pool2d"),
        _op("upsample", "pool", 1,
            (Param("scale", "optposnum", None), Param("size", "optpos", None), Param("mode", "upsample_mode", "nearest"),
             Param("align_corners", "optbool", None)),
            ("scale",), "resize by scale or to size x size (nearest or bilinear)",
            shape="upsample", cost="upsample", codegen="upsample", torch="F.interpolate"),
        _op("flatten", "movement", doc="[C, H, W] -> [C*H*W]", shape="flatten", channels="flatten", codegen="flatten",
            view=True),
        _op("dropout", "movement", 1, (Param("p", "prob", 0.5),), ("p",), codegen="dropout", torch="F.dropout",
            view=True),
        _op("add", "merge", VARIADIC, doc="elementwise sum, with broadcasting",
            shape="broadcast", cost="nary", channels="broadcast", codegen="arith", torch="+", inplace="either"),
        _op("mul", "merge", VARIADIC, doc="elementwise product, with broadcasting",
            shape="broadcast", cost="nary", channels="broadcast", codegen="arith", torch="*"),
        _op("concat", "merge", VARIADIC, (Param("dim", "int", 0),),
            doc="concatenate along a per-sample dim (0 = channels)",
            shape="concat", cost="move", channels="concat", codegen="concat", torch="torch.cat"),
        _op("channel_shuffle", "movement", 1, (Param("groups", "pos"),), ("groups",),
            shape="channel_shuffle", channels="shuffle", codegen="channel_shuffle"),
        _op("split", "movement", 1, (Param("sections", "sections"), Param("part", "nonneg")), ("sections",),
            "one part of a channel split: sections is a part count or a list of sizes",
            shape="split", channels="split", codegen="split", view=True),
        _op("identity", "movement", codegen="identity", view=True),
    ]
}


def ops_in(category: str) -> tuple[str, ...]:
    """The ops of a category, in OPS order (as tinygrad's GroupOp sets)."""
    return tuple(name for name, spec in OPS.items() if spec.category == category)


def arity_error(spec: OpSpec, n: int) -> str | None:
    """None when an op takes n inputs, else what it takes ("takes two or more inputs, has 1")."""
    if (spec.arity == VARIADIC and n >= 2) or spec.arity == n:
        return None
    want = "two or more" if spec.arity == VARIADIC else str(spec.arity)
    return f"takes {want} inputs, has {n}"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _pair_of(test):
    """A kind's check for one value or an [h, w] pair of such values (non-square kernels, strides, padding)."""
    return lambda v: test(v) or (isinstance(v, list) and len(v) == 2 and all(test(x) for x in v))


def _pos(v: object) -> bool:
    return _is_int(v) and v > 0


def _nonneg(v: object) -> bool:
    return _is_int(v) and v >= 0


KIND_CHECKS: dict[str, tuple[str, object]] = {
    "pos": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "nonneg": ("a non-negative integer", lambda v: _is_int(v) and v >= 0),
    "int": ("an integer", _is_int),
    "num": ("a number", _is_num),
    "posnum": ("a positive number", lambda v: _is_num(v) and v > 0),
    "prob": ("a number in [0, 1]", lambda v: _is_num(v) and 0 <= v <= 1),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "optbool": ("true, false or none", lambda v: v is None or isinstance(v, bool)),
    "optpos": ("a positive integer or none", lambda v: v is None or (_is_int(v) and v > 0)),
    "optposnum": ("a positive number or none", lambda v: v is None or (_is_num(v) and v > 0)),
    "pos2": ("a positive integer or a list [h, w] of two", _pair_of(_pos)),
    "optpos2": ("a positive integer, a list [h, w] of two, or none", lambda v: v is None or _pair_of(_pos)(v)),
    "nonneg2": ("a non-negative integer or a list [h, w] of two", _pair_of(_nonneg)),
    "padding": ('a non-negative integer, a list [h, w] of two, or "same"', lambda v: v == "same" or _pair_of(_nonneg)(v)),
    "sections": ("a positive integer or a list of positive integers",
                 lambda v: (_is_int(v) and v > 0) or (isinstance(v, list) and v and all(_is_int(x) and x > 0 for x in v))),
    "shape": ("a list of positive integers", lambda v: isinstance(v, list) and v and all(_is_int(x) and x > 0 for x in v)),
    "gelu_mode": ('"none" or "tanh"', lambda v: v in ("none", "tanh")),
    "upsample_mode": ('"nearest" or "bilinear"', lambda v: v in ("nearest", "bilinear")),
}


# kinds whose [h, w] pairs are written as one number when h == w (the canonical form: k=3, not k=[3, 3])
PAIR_KINDS = frozenset({"pos2", "optpos2", "nonneg2", "padding"})


def canonical(kind: str, value: object) -> object:
    """A value as the IR keeps it: an [h, w] pair with h == w becomes that one number."""
    if kind in PAIR_KINDS and isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    return value


def check_value(kind: str, value: object) -> str | None:
    """None when value is of the kind, else what the kind wants ("a positive integer")."""
    words, ok = KIND_CHECKS[kind]
    return None if ok(value) else words


def defaults(spec: OpSpec) -> dict[str, object]:
    """The parameters that have defaults, with them."""
    return {p.name: p.default for p in spec.params if p.default is not REQUIRED}
