"""Output read at 80 and at 200 columns, in a terminal (rich styles on) and in a log file (a pipe): every line fits,
no name is cut, and no figure is split from its unit."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from netdsl.cli.console import console
from netdsl.cli.eval import confusion_table
from netdsl.cli.layout import Column, table, wrap_items
from netdsl.cli.main import main
from netdsl.loader import load_network

ROOT = Path(__file__).resolve().parents[3]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CASES = [("show", ()), ("show", ("--depth", "2")), ("show", ("--flat",)), ("cost", ()), ("cost", ("--depth", "2")),
         ("check", ())]
NETWORKS = ["mobilenet_v3_small", "unet_small", "resnet50", "shufflenet_v2_x1_0"]


@pytest.fixture(params=["terminal", "log"])
def reader(request, monkeypatch):
    """A terminal (rich thinks it writes to one: styles and colours) or a log file (a pipe: plain text)."""
    if request.param == "terminal":
        monkeypatch.setenv("FORCE_COLOR", "1")
    else:
        monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return request.param


def output(capsys, monkeypatch, width: int, *argv) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    return ANSI.sub("", out).split("\n")


def check_figures(lines: list[str]) -> None:
    """Every unit written in a line has its number on the same line: '1.81 G MACs', never '1.81 G' / 'MACs'."""
    for line in lines:
        assert not re.match(r"\s*(MACs|params|buffer elements|other ops|B/element)\b", line), line


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("command, extra", CASES, ids=lambda c: " ".join(c) if isinstance(c, tuple) else c)
def test_lines_fit_names_whole_figures_with_units(capsys, monkeypatch, reader, width, network, command, extra):
    path = str(ROOT / "examples" / f"{network}.net")
    lines = output(capsys, monkeypatch, width, command, path, *extra)
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, f"{len(too_long)} lines over {width}: {too_long[0]!r}"
    check_figures(lines)
    g = load_network(path)
    text = "\n".join(lines)
    if command == "show" and "--flat" in extra:
        # every layer's full name, whole, at the start of its row
        starts = {line.split()[0] for line in lines if line and not line.startswith(" ")}
        assert set(g.nodes) <= starts
    elif command == "show" and not extra:
        # every layer's own name, whole, after its tree guide
        leaves = {re.sub(r"^[│ ]*[├└]─ ", "", line).split()[0] for line in lines if re.match(r"^[│ ]*[├└]─ ", line)}
        assert {n.rpartition(".")[2] for n in g.nodes} <= leaves
    elif command == "cost" and not extra:
        starts = {line.split()[0] for line in lines if line and not line.startswith(" ")}
        assert set(g.nodes) <= starts
    assert not re.search(r"…\w|\w…\s", text.replace(" …", ""))  # nothing cut with an ellipsis


@pytest.mark.parametrize("width", [80, 200])
def test_the_summary_line_breaks_between_items(width):
    items = ["ResNet18: 1.81 G MACs", "11.7 M params", "+9.62 k buffer elements", "7.38 M other ops",
             "peak activations 6.42 MB (4 B/element)", "input image 1x3x224x224"]
    text = wrap_items(items, width)
    lines = text.split("\n")
    assert all(len(line) <= width for line in lines)
    assert [item for line in lines for item in line.strip().rstrip(",").split(", ")] == items


@pytest.mark.parametrize("width", [80, 200])
def test_confusion_matrix_keeps_class_names(width):
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    counts = np.random.default_rng(0).integers(0, 1000, (10, 10))
    c = console()
    with c.capture() as capture:
        c.print(confusion_table(classes, counts, width, "Net on fashion-mnist (test): acc 91.20%"), soft_wrap=True)
    lines = capture.get().rstrip("\n").split("\n")
    assert all(len(line) <= width for line in lines)
    for name in classes:
        assert any(name in line for line in lines[3:]), name  # every row names its class in full
    header = lines[1]
    if width == 200:
        assert all(name in header for name in classes)  # room for the names as column headings too
    else:
        assert header.split()[-10:] == [str(i) for i in range(10)]
        assert lines[3].split()[:2] == ["0", "T-shirt/top"]


def test_a_table_stacks_then_drops_columns_rather_than_cut_names():
    columns = [Column("name"), Column("call", wrap=True, min_width=10, stack=True), Column("figure", right=True),
               Column("extra", drop=1)]
    rows = [["a.long.layer.name.that.is.whole", "conv(64, k=3, stride=2, padding=1, bias=false)", "1.2 M", "x"]]
    narrow = table(columns, rows, 40).plain.split("\n")
    assert narrow[2].startswith("a.long.layer.name.that.is.whole") and narrow[2].endswith("1.2 M")
    assert narrow[3].strip() == "conv(64, k=3, stride=2, padding=1,"  # stacked under its row, broken after a comma
    assert all(len(line) <= 40 for line in narrow) and "extra" not in narrow[0]
    wide = table(columns, rows, 200).plain.split("\n")
    assert len(wide) == 3 and "conv(64, k=3, stride=2, padding=1, bias=false)" in wide[2] and "extra" in wide[0]
