import pytest

from compiler.diagnostics import NetError
from gensynth.requirements import parse_requirement, parse_requirements


@pytest.mark.parametrize("text,metric,op,value", [
    ("acc>=0.9", "acc", ">=", 0.9),
    ("acc>=90%", "acc", ">=", 0.9),
    ("macs<=2M", "macs", "<=", 2e6),
    ("params<200K", "params", "<", 2e5),
    ("latency<=1.5ms", "latency", "<=", 1.5e-3),
    ("latency < 800us", "latency", "<", 8e-4),
    ("memory<=2MB", "memory", "<=", 2 * 1024**2),
    ("netscore>=60", "netscore", ">=", 60.0),
    ("miou>=0.5", "miou", ">=", 0.5),
    ("map50 > .4", "map50", ">", 0.4),
])
def test_parses_metric_comparison_and_unit(text, metric, op, value):
    r = parse_requirement(text)
    assert (r.metric, r.comparison) == (metric, op)
    assert r.value == pytest.approx(value)


def test_holds_and_violation():
    r = parse_requirement("macs<=2M")
    assert r.holds(2e6) and not r.holds(2.5e6)
    assert r.violation(2e6) == 0 and r.violation(3e6) == pytest.approx(0.5)


@pytest.mark.parametrize("text,fragment,column", [
    ("mac<=2M", "unknown metric 'mac'", 1),
    ("macs<=2ms", "'ms' is not a unit for macs", 8),
    ("acc>=1.5", "fraction between 0 and 1", 6),
    ("acc=>0.9", "METRIC OP NUMBER", 4),
    ("latency<=3", "'no unit' is not a unit for latency", 11),
])
def test_bad_requirements_are_located(text, fragment, column):
    with pytest.raises(NetError) as info:
        parse_requirement(text, 2)
    err = info.value
    assert fragment in err.message
    assert err.span.file == "--req[2]" and err.span.column == column
    rendered = err.render()
    assert text in rendered and "^" in rendered


def test_unknown_metric_lists_known_ones_and_suggests():
    with pytest.raises(NetError) as info:
        parse_requirement("acuracy>=0.9")
    text = info.value.render()
    assert "known metrics: macs, params" in text and "did you mean 'acc'" in text


def test_repeated_bound_is_an_error():
    with pytest.raises(NetError, match="repeats the bound"):
        parse_requirements(["macs<=2M", "macs<3M"])
    assert len(parse_requirements(["macs<=2M", "macs>=1M"])) == 2


def test_a_requirement_the_shell_cut_short_says_to_quote_it():
    """`--req acc>=0.9` typed unquoted: the shell redirects the output to a file '=0.9' and netdsl sees `acc`."""
    with pytest.raises(NetError) as info:
        parse_requirements(["acc"])
    assert info.value.notes[0].startswith('quote it: --req "acc>=VALUE"')
    with pytest.raises(NetError) as info:
        parse_requirements(["acc>=x"])
    assert not any("quote" in n for n in info.value.notes)
