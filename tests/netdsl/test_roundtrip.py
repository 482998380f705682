"""The canonical printer round-trips: structure(load(print(g))) == structure(g), for every example and for
random valid networks written as .net text by a hypothesis strategy."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.ir import structure
from compiler.printer import print_network
from netdsl.loader import load_network, load_network_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.net"))


def roundtrip(g):
    text = print_network(g)
    again = load_network_text(text, "<printed>")
    assert structure(again) == structure(g), text
    assert print_network(again) == text  # printing is canonical: a fixed point
    return again


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_roundtrip(path):
    g = load_network(str(path))
    again = roundtrip(g)
    assert list(again.nodes) == list(g.nodes)  # the printed order is the build order


def test_roundtrip_keeps_fixed_choices_and_multiple_outputs():
    g = load_network(str(ROOT / "examples" / "detector_small.net"))
    again = roundtrip(g)
    assert again.graph["decisions"] == {"head_k": [3, 5]}
    assert again.nodes["box_head.out"]["fixed"] and not again.nodes["box_head.conv"]["fixed"]
    assert list(again.graph["outputs"]) == ["heatmap", "boxes"]


# ---- random networks -----------------------------------------------------------------------------

class Net:
    """A .net text being written, with the shape of every tensor variable (computed here, independently)."""

    def __init__(self, draw):
        self.draw = draw
        self.lines: list[str] = []
        self.shapes: dict[str, tuple] = {}
        self.used: set[str] = set()
        self.names = 0

    def fresh(self, prefix="t") -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def step(self, shape: tuple) -> tuple[str, tuple]:
        """One layer that accepts `shape`: its text and output shape."""
        draw = self.draw
        c, h, w = shape
        options = ["relu", "bn", "conv", "dwconv", "act", "identity", "dropout"]
        if h >= 2 and w >= 2:
            options += ["maxpool", "avgpool"]
        if c % 2 == 0:
            options.append("shuffle")
        if h <= 8 and w <= 8:
            options += ["upsample", "conv_transpose"]
        kind = draw(st.sampled_from(options))
        prefix = "fixed " if draw(st.integers(0, 9)) == 0 else ""
        suffix = f" as {self.fresh('n')}" if draw(st.integers(0, 4)) == 0 else ""
        if kind == "conv":
            out = draw(st.integers(1, 8))
            k = draw(st.integers(1, min(3, h + 2, w + 2)))
            pad = draw(st.integers(max(0, (k - min(h, w) + 1) // 2), 1))
            stride = draw(st.integers(1, 2))
            groups = draw(st.sampled_from([g for g in (1, 2) if c % g == 0 and out % g == 0]))
            bias = draw(st.booleans())
            out_text = f"choice({out}, {out + 1})" if draw(st.integers(0, 5)) == 0 else str(out)
            text = f"conv({out_text}, k={k}, stride={stride}, padding={pad}, groups={groups}, bias={str(bias).lower()})"
            shape = (out, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
        elif kind == "dwconv":
            m = draw(st.integers(1, 2))
            text, shape = f"dwconv(3, padding=1, multiplier={m})", (c * m, h, w)
        elif kind == "maxpool":
            text, shape = "maxpool(2)", (c, h // 2, w // 2)
        elif kind == "avgpool":
            text, shape = "avgpool(2, stride=1)", (c, h - 1, w - 1)
        elif kind == "upsample":
            text, shape = 'upsample(2, mode="bilinear", align_corners=false)', (c, 2 * h, 2 * w)
        elif kind == "conv_transpose":
            out = draw(st.integers(1, 6))
            text, shape = f"conv_transpose({out}, 2, stride=2)", (out, 2 * h, 2 * w)
        elif kind == "shuffle":
            text = "channel_shuffle(2)"
        elif kind == "act":
            text = draw(st.sampled_from(["relu6", "sigmoid", "hardswish", "hardsigmoid", "silu", "gelu",
                                         "leaky_relu(0.2)", 'gelu(approximate="tanh")', "softmax(dim=0)"]))
        elif kind == "bn":
            text = draw(st.sampled_from(["bn", "bn(eps=0.001, momentum=0.01)", "bn(affine=false)"]))
        elif kind == "dropout":
            text = "dropout(0.25)"
        else:
            text = kind
        return prefix + text + suffix, shape

    def chain(self, src: str, max_len: int = 4) -> tuple[str, tuple]:
        shape = self.shapes[src]
        steps = []
        for _ in range(self.draw(st.integers(1, max_len))):
            text, shape = self.step(shape)
            steps.append(text)
        return f"{src} -> " + " -> ".join(steps), shape

    def pick(self) -> str:
        return self.draw(st.sampled_from(sorted(self.shapes)))


@st.composite
def random_networks(draw) -> tuple[str, dict]:
    """The text of a small valid network (and its outputs' shapes): chains, residual adds, concats, splits, repeats and blocks."""
    n = Net(draw)
    c, h, w = draw(st.integers(1, 6)), draw(st.integers(2, 10)), draw(st.integers(2, 10))
    n.lines.append(f"    input image: [{c}, {h}, {w}]")
    n.shapes["image"] = (c, h, w)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["chain", "chain", "add", "concat", "split", "repeat", "block"]))
        src = n.pick()
        n.used.add(src)
        sc, sh, sw = n.shapes[src]
        name = n.fresh()
        if kind == "chain":
            text, shape = n.chain(src)
            n.lines.append(f"    {name} = {text}")
            n.shapes[name] = shape
        elif kind == "add":  # a residual: the branch keeps the shape
            n.lines.append(f"    {name} = add({src}, {src} -> conv({sc}, k=3, padding=1) -> bn)")
            n.shapes[name] = (sc, sh, sw)
        elif kind == "concat":
            same = [t for t, s in n.shapes.items() if s[1:] == (sh, sw)]
            other = draw(st.sampled_from(sorted(same)))
            n.used.add(other)
            n.lines.append(f"    {name} = concat({src}, {other})")
            n.shapes[name] = (sc + n.shapes[other][0], sh, sw)
        elif kind == "split" and sc % 2 == 0:
            a, b = n.fresh(), n.fresh()
            n.lines.append(f"    {a}, {b} = {src} -> split(2)")
            n.shapes[a] = n.shapes[b] = (sc // 2, sh, sw)
        elif kind == "repeat":
            times = draw(st.integers(1, 3))
            n.lines.append(f"    {name} = {src} -> repeat({times}) conv({sc}, 3, padding=\"same\") as {n.fresh('r')}")
            n.shapes[name] = (sc, sh, sw)
        else:  # a block from the standard library (squeeze-excite keeps the shape)
            n.lines.append(f"    {name} = {src} -> se_block({sc}, squeeze={draw(st.integers(1, 4))})")
            n.shapes[name] = (sc, sh, sw)
    outputs = [t for t in n.shapes if t not in n.used and t != "image"]
    if not outputs:  # everything was consumed: read the last value
        outputs = [sorted(n.shapes, key=lambda t: int(t[1:]) if t[1:].isdigit() else -1)[-1]]
    expected = {}
    for i, t in enumerate(outputs):
        if t == "image":
            n.lines.append(f"    output out{i} = image -> relu")
            expected[f"out{i}"] = n.shapes["image"]
        elif draw(st.booleans()):
            features = draw(st.integers(1, 5))
            n.lines.append(f"    output out{i} = {t} -> gap -> linear({features})")
            expected[f"out{i}"] = (features,)
        else:
            n.lines.append(f"    output out{i} = {t}")
            expected[f"out{i}"] = n.shapes[t]
    header = "from std import se_block\n\n" if any("se_block" in line for line in n.lines) else ""
    return header + "network Random {\n" + "\n".join(n.lines) + "\n}\n", expected


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks())
def test_random_networks_roundtrip(case):
    text, expected = case
    g = load_network_text(text, "random.net")
    # the generator computes shapes on its own: shape inference agrees with it
    assert {o: g.nodes[node]["shape"] for o, node in g.graph["outputs"].items()} == expected
    roundtrip(g)
