"""The op set: each op's inputs, parameters, defaults (PyTorch's) and the value kinds they accept."""

from __future__ import annotations

from dataclasses import dataclass

REQUIRED = object()  # marks a parameter without a default
VARIADIC = -1  # arity of ops taking two or more inputs


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # a key of KIND_CHECKS
    default: object = REQUIRED


@dataclass(frozen=True)
class OpSpec:
    name: str
    arity: int  # number of tensor inputs, or VARIADIC
    params: tuple[Param, ...] = ()
    positional: tuple[str, ...] = ()  # params that may be passed by position, in order
    doc: str = ""

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _conv_common() -> tuple[Param, ...]:
    return (
        Param("stride", "pos", 1),
        Param("padding", "padding", 0),
        Param("dilation", "pos", 1),
    )


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in [
        OpSpec("input", 0, (Param("shape", "shape"),), doc="a network input"),
        OpSpec(
            "conv", 1,
            (Param("out", "pos"), Param("k", "pos"), *_conv_common(), Param("groups", "pos", 1), Param("bias", "bool", True)),
            ("out", "k"), "2-D convolution (torch.nn.Conv2d)",
        ),
        OpSpec(
            "dwconv", 1,
            (Param("k", "pos"), *_conv_common(), Param("multiplier", "pos", 1), Param("bias", "bool", True)),
            ("k",), "depthwise convolution: groups = in channels, out = in x multiplier",
        ),
        OpSpec(
            "conv_transpose", 1,
            (Param("out", "pos"), Param("k", "pos"), Param("stride", "pos", 1), Param("padding", "nonneg", 0),
             Param("output_padding", "nonneg", 0), Param("dilation", "pos", 1), Param("groups", "pos", 1),
             Param("bias", "bool", True)),
            ("out", "k"), "transposed convolution (torch.nn.ConvTranspose2d)",
        ),
        OpSpec("linear", 1, (Param("out", "pos"), Param("bias", "bool", True)), ("out",), "fully connected layer on a flat input"),
        OpSpec("bn", 1, (Param("eps", "posnum", 1e-5), Param("momentum", "prob", 0.1), Param("affine", "bool", True)),
               doc="batch normalisation (BatchNorm2d, or BatchNorm1d on a flat input)"),
        OpSpec("relu", 1), OpSpec("relu6", 1),
        OpSpec("leaky_relu", 1, (Param("slope", "num", 0.01),), ("slope",)),
        OpSpec("sigmoid", 1), OpSpec("hardswish", 1), OpSpec("hardsigmoid", 1), OpSpec("silu", 1),
        OpSpec("gelu", 1, (Param("approximate", "gelu_mode", "none"),)),
        OpSpec("softmax", 1, (Param("dim", "int", 0),), ("dim",), "softmax over a per-sample dim (0 = channels)"),
        OpSpec(
            "maxpool", 1,
            (Param("k", "pos"), Param("stride", "optpos", None), Param("padding", "nonneg", 0),
             Param("dilation", "pos", 1), Param("ceil_mode", "bool", False)),
            ("k",), "max pooling; stride defaults to k",
        ),
        OpSpec(
            "avgpool", 1,
            (Param("k", "pos"), Param("stride", "optpos", None), Param("padding", "nonneg", 0),
             Param("ceil_mode", "bool", False), Param("count_include_pad", "bool", True)),
            ("k",), "average pooling; stride defaults to k",
        ),
        OpSpec("gap", 1, doc="global average pool: [C, H, W] -> [C]"),
        OpSpec("adaptive_avgpool", 1, (Param("size", "pos"),), ("size",), "adaptive average pool to size x size"),
        OpSpec("flatten", 1, doc="[C, H, W] -> [C*H*W]"),
        OpSpec("dropout", 1, (Param("p", "prob", 0.5),), ("p",)),
        OpSpec(
            "upsample", 1,
            (Param("scale", "optposnum", None), Param("size", "optpos", None), Param("mode", "upsample_mode", "nearest"),
             Param("align_corners", "optbool", None)),
            ("scale",), "resize by scale or to size x size (nearest or bilinear)",
        ),
        OpSpec("add", VARIADIC, doc="elementwise sum, with broadcasting"),
        OpSpec("mul", VARIADIC, doc="elementwise product, with broadcasting"),
        OpSpec("concat", VARIADIC, (Param("dim", "int", 0),), doc="concatenate along a per-sample dim (0 = channels)"),
        OpSpec("channel_shuffle", 1, (Param("groups", "pos"),), ("groups",)),
        OpSpec("split", 1, (Param("sections", "sections"), Param("part", "nonneg")), ("sections",),
               "one part of a channel split: sections is a part count or a list of sizes"),
        OpSpec("identity", 1),
    ]
}

# ops that compute one output element per input element (or per broadcast element)
ELEMENTWISE = frozenset(
    {"relu", "relu6", "leaky_relu", "sigmoid", "hardswish", "hardsigmoid", "silu", "gelu", "dropout", "identity",
     "add", "mul", "softmax"}
)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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
    "padding": ('a non-negative integer or "same"', lambda v: v == "same" or (_is_int(v) and v >= 0)),
    "sections": ("a positive integer or a list of positive integers",
                 lambda v: (_is_int(v) and v > 0) or (isinstance(v, list) and v and all(_is_int(x) and x > 0 for x in v))),
    "shape": ("a list of positive integers", lambda v: isinstance(v, list) and v and all(_is_int(x) and x > 0 for x in v)),
    "gelu_mode": ('"none" or "tanh"', lambda v: v in ("none", "tanh")),
    "upsample_mode": ('"nearest" or "bilinear"', lambda v: v in ("nearest", "bilinear")),
}


def check_value(kind: str, value: object) -> str | None:
    """None when value is of the kind, else what the kind wants ("a positive integer")."""
    words, ok = KIND_CHECKS[kind]
    return None if ok(value) else words


def defaults(spec: OpSpec) -> dict[str, object]:
    """The parameters that have defaults, with them."""
    return {p.name: p.default for p in spec.params if p.default is not REQUIRED}
