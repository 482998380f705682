"""The bad inputs a fuzz campaign found (issue 17): each is exit 2 with a located, one-screen message (or a
correct result), never a traceback; the message stays readable in a pipe or a log (no emoji, no wrapping)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netdsl.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
E = str(ROOT / "examples" / "fashion_cnn.net")


def net(line: str) -> bytes:
    """A network whose output line (line 3) is `line`."""
    return f"network A {{\n  input x: [8, 16, 16]\n  output y = {line}\n}}\n".encode()


def run(capsys, tmp_path, data: bytes | None, *argv: str, name: str = "m.net"):
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    code = main([argv[0], str(path) if data is not None else argv[1], *argv[1 if data is not None else 2:]])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err, str(path)


@pytest.mark.parametrize("line, message, anchor", [
    ("x -> relu -> \udcff", r"byte 0xff is not UTF-8 text", "\udcff"),
    ("x -> conv(" + "9" * 4301 + ", k=1)", r"the number 999999999999\.\.\. \(4301 characters\) is out of range", "9"),
    ("x -> conv(int(1e400), k=1)", r"the number 1e400 is out of range", "1e400"),
    ("x -> conv(divisible(1e400), k=1)", r"the number 1e400 is out of range", "1e400"),
    ("x -> conv(divisible(32, 0), k=1)", r"divisible\(\): division by zero", "divisible"),
    ("x -> upsample(scale=1e400)", r"the number 1e400 is out of range", "1e400"),
    ("x -> upsample(scale=100000000)", r"upsample 'upsample': its output \[8, 1600000000, 1600000000\] would hold "
                                       r"2\.0e\+19 elements per sample, more than netdsl handles", "upsample"),
    ("x -> conv(8, k=99999999999999999999)", r"the number 99999999999999999999 is out of range", "9"),
    ("x -> adaptive_avgpool(1000000000)", r"adaptive_avgpool 'adaptive_avgpool': its output .* elements per sample",
     "adaptive"),
    ("x -> " + "(" * 3000 + "relu" + ")" * 3000, r"nested too deeply here", None),
])
@pytest.mark.parametrize("command", ["check", "show", "cost"])
def test_located_errors_not_tracebacks(capsys, tmp_path, command, line, message, anchor):
    data = net(line.replace("\udcff", "X")).replace(b"X", b"\xff")
    code, out, err, path = run(capsys, tmp_path, data, command)
    first = err.splitlines()[0]
    assert code == 2 and not out and re.search(message, first), err
    column = len("  output y = ") + line.index(anchor) + 1 if anchor else ""
    assert first.startswith(f"{path}:3:{column}"), err
    assert len(err.splitlines()) <= 6 and len(err) < 1000


def test_param_out_of_range(capsys):
    for value in ("1e400", "nan", "inf", "9" * 5000):
        assert main(["check", E, "--param", f"width={value}"]) == 2
        assert "out of range" in capsys.readouterr().err


def test_a_byte_order_mark_is_read_and_binary_files_are_refused(capsys, tmp_path):
    code, out, _, _ = run(capsys, tmp_path, b"\xef\xbb\xbf" + Path(E).read_bytes(), "check")
    assert code == 0 and out.startswith("ok ")
    onnx_like = b"\x08\x07\x12\x07pytorch\x1a\x052.1.0:\x00\x00\xa3\x01\n\x0bconv.weight"
    for name, data, what in (("model.onnx", onnx_like, "an ONNX model"),
                             ("model.pt", b"PK\x03\x04\x00\x00\x08\x00archive/data.pkl", "a zip archive")):
        code, _, err, path = run(capsys, tmp_path, data, "show", name=name)
        assert code == 2 and err.startswith(f"error: {path} is {what}") and "netdsl import" in err
    code, _, err, path = run(capsys, tmp_path, net("x -> relu").replace(b"relu", b"re\x00lu"), "check")
    assert code == 2 and err.startswith(f"{path}:3:21: error: a NUL byte: this is binary data")


def test_dev_zero_and_directories_are_refused_without_reading_them_whole(capsys, tmp_path):
    code, _, err, _ = run(capsys, tmp_path, None, "check", "/dev/zero")
    assert code == 2 and "larger than 4 MB" in err
    code, _, err, _ = run(capsys, tmp_path, None, "check", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_line_and_column_100_stay_text_and_long_lines_are_not_wrapped(capsys, tmp_path):
    """rich turned ':100:' into an emoji and hard-wrapped at 80 columns when stderr was not a terminal."""
    lines = ["network A {", "  input x: [8, 16, 16]"] + ["  # filler"] * 96
    lines += ["  output y = x" + " -> relu" * 5 + " -> relu     -> nope", "}"]
    code, _, err, path = run(capsys, tmp_path, "\n".join(lines).encode(), "check")
    first, source, caret = err.splitlines()[:3]
    assert code == 2 and first.startswith(f"{path}:99:") and "\U0001f4af" not in err
    lines[98] = "  output y = x" + " -> relu" * 20 + " -> nope"  # 182 characters: clipped around the column
    code, _, err, path = run(capsys, tmp_path, "\n".join(lines).encode(), "check")
    first, source, caret = err.splitlines()[:3]
    assert first == f"{path}:99:179: error: unknown op or block 'nope'"
    assert len(source) <= 80 and source.endswith("-> nope") and source.startswith("  ...")
    assert source[caret.index("^"):caret.rindex("^") + 1] == "nope"


@pytest.mark.parametrize("separator", ["\x0c", "\x0b", "\u2028", "\r"])
def test_odd_line_breaks_do_not_shift_the_quoted_line(capsys, tmp_path, separator):
    text = f"network A {{{separator}\n  input x: [8, 16, 16]\n  output y = x -> nope\n}}\n"
    code, _, err, path = run(capsys, tmp_path, text.encode(), "check")
    first, source, caret = err.splitlines()[:3]
    if separator in "\x0c\r":  # whitespace to the grammar
        assert first.startswith(f"{path}:3:19: ") and source == "    output y = x -> nope"
        assert source[caret.index("^"):caret.rindex("^") + 1] == "nope"
    else:  # not whitespace: an unexpected character, quoted where it is, shown as U+FFFD
        assert first.startswith(f"{path}:1:12: error: unexpected character") and source == "  network A {\ufffd"


def test_a_megabyte_line_is_quoted_in_a_window(capsys, tmp_path):
    code, _, err, _ = run(capsys, tmp_path, net("x -> relu " + " " * 1_000_000 + "$"), "check")
    assert code == 2 and len(err) < 600


def test_no_network_and_deep_nesting_are_located(capsys, tmp_path):
    code, _, err, path = run(capsys, tmp_path, b"# nothing but blocks\nblock b() { relu }\n", "check")
    assert code == 2 and err.startswith(f"{path}:2:1: error: this file defines no network")
    code, _, err, path = run(capsys, tmp_path, net("x -> relu + " + "-" * 5000 + "1"), "check")
    assert code == 2 and re.match(rf"{re.escape(path)}:3:\d+: error: .*nested too deeply", err)


def test_too_many_names_stop_while_lexing(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("netdsl.parser.MAX_NAMES", 500)
    code, _, err, path = run(capsys, tmp_path, net("x" + " -> relu" * 600), "check")
    assert code == 2 and err.startswith(f"{path}:3:") and "more than 500 names" in err


def test_an_error_in_a_library_block_says_where_the_file_called_it(capsys, tmp_path):
    text = b"from std import basic\n" + net("x -> basic(0)")
    code, _, err, path = run(capsys, tmp_path, text, "check")
    assert code == 2 and f"note: in block 'basic', called at {path}:4:" in err


def test_huge_shapes_are_costed_on_paper_but_not_exported(capsys, tmp_path):
    data = b"network A {\n  input x: [3, 100000, 100000]\n  output y = x -> conv(8, k=3) -> gap -> linear(10)\n}\n"
    code, out, _, _ = run(capsys, tmp_path, data, "cost")
    assert code == 0 and "peak activations 440 GB" in out  # counted, not allocated
    code, _, err, path = run(capsys, tmp_path, data, "export", "--to", "pytorch", "-o", str(tmp_path / "m.py"),
                                "--random-weights")
    assert code == 2 and err.startswith(f"{path}:3:") and "exporting A needs at least" in err
    assert "conv 'conv' alone has an output of" in err and not (tmp_path / "m.py").exists()


def test_output_paths_that_cannot_be_written(capsys, tmp_path):
    code, _, err, _ = run(capsys, tmp_path, None, "show", E, "--dot", str(tmp_path))
    assert code == 2 and "is a directory" in err
    code, _, err, _ = run(capsys, tmp_path, None, "show", E, "--dot", str(tmp_path / "no" / "x.dot"))
    assert code == 2 and "does not exist" in err
    code, _, err, _ = run(capsys, tmp_path, None, "export", E, "--to", "torchscript", "-o", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_a_50000_character_name_is_clipped_in_tables(capsys, tmp_path, monkeypatch):
    """rich folded such a cell over hundreds of lines, for minutes; cells are clipped to 120 characters."""
    monkeypatch.setenv("COLUMNS", "100")
    name = "x" * 50_000
    for argv in (["cost"], ["show", "--flat"]):
        code, out, _, _ = run(capsys, tmp_path, net(f"x -> relu as {name}"), *argv)
        assert code == 0 and len(out.splitlines()) < 40 and max(map(len, out.splitlines())) <= 300
