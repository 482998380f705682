"""Rendering diagnostics: the quoted line and caret stay aligned whatever the line holds, and fit a screen."""

from __future__ import annotations

from compiler.diagnostics import NetError, Span, count, quote, register_source, size_bytes


def test_short_lines_are_quoted_whole_with_the_caret_under_the_span():
    assert quote("x -> cnov(4)", 6, 4) == ("x -> cnov(4)", "     ^^^^")


def test_controls_and_tabs_take_one_cell_and_wide_characters_two():
    line, caret = quote("\tx\x1b[31m -> 字字 -> nope", 18, 4)
    assert "\x1b" not in line and "\t" not in line
    assert line[line.index("nope"):] == "nope"
    # two wide characters take four cells: the caret moves two further than the character count
    assert caret.index("^") == line.index("nope") + 2


def test_long_lines_are_clipped_around_the_column():
    text = "a" * 500 + "ERR" + "b" * 500
    line, caret = quote(text, 501, 3)
    assert len(line) <= 76 and line.startswith("...") and line.endswith("...")
    assert line[caret.index("^"):caret.rindex("^") + 1] == "ERR"
    line, caret = quote("a" * 1000 + "END", 1001, 3)
    assert line.endswith("END") and len(line) <= 76 and line[caret.index("^"):] == "END"


def test_a_span_past_the_end_of_the_line_gets_one_caret():
    assert quote("abc", 4, 2) == ("abc", "   ^")


def test_render_clips_messages_and_notes_and_caps_the_notes():
    register_source("r.net", "network N {\n}\n")
    err = NetError("x" * 5000, Span("r.net", 1, 1, 1, 8), [f"note {i}" for i in range(30)])
    lines = err.render().splitlines()
    assert len(lines) == 3 + 8 and lines[-1] == "  note: ... and 23 more"
    assert all(len(line) < 1030 for line in lines)


def test_counts_and_bytes_of_any_size():
    assert count(1234567) == "1,234,567" and count(8 * 10**20) == "8.0e+20" and count(10**5000).startswith("about 2**")
    assert size_bytes(440 * 10**9) == "440 GB" and size_bytes(999) == "999 B"
