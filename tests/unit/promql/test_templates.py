"""Query templates render values as data, never as PromQL syntax.

The property tests read the rendered matcher back with PromQL's own string
rules (Go's strconv.Unquote, which Prometheus uses) and require the original
value, for any unicode including quotes, backslashes and newlines. A value that
could end its string early fails the unquoting, so these tests are also the
injection tests.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcanary.promql.templates import (
    PLACEHOLDERS,
    Context,
    TemplateError,
    TemplateValues,
    escape_label_value,
    placeholders,
    render,
    scan,
    validate,
)

pytestmark = pytest.mark.unit

VALUES = TemplateValues(
    namespace="ml", name="fraud-detector", revision="6f9c0a1b2c", model="fraud", version="1.5.0"
)

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def promql_unquote(body: str, quote: str) -> str:
    """The value of a PromQL string literal whose text between the quotes is ``body``.

    Follows Prometheus's lexer and Go's strconv.Unquote. It raises AssertionError
    where Prometheus would end the string early or refuse the query.
    """
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        assert char != quote, f"unescaped {quote} at {i} would end the string: {body!r}"
        assert char != "\n", f"raw newline at {i} would end the string: {body!r}"
        assert char != "\ufffd", f"a raw U+FFFD is refused by PromQL's lexer: {body!r}"
        if char != "\\":
            out.append(char)
            i += 1
            continue
        escape = body[i + 1]
        if escape in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[escape])
            i += 2
        elif escape in ("\\", quote):
            out.append(escape)
            i += 2
        elif escape in ("u", "U"):
            width = 4 if escape == "u" else 8
            out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        else:
            raise AssertionError(f"unknown escape \\{escape} at {i}: {body!r}")
    return "".join(out)


def with_name(value: str) -> TemplateValues:
    return TemplateValues(namespace="ns", name=value, revision="r", model="m", version="v")


def matcher_value(rendered: str, prefix: str, suffix: str, quote: str) -> str:
    assert rendered.startswith(prefix), rendered
    assert rendered.endswith(suffix), rendered
    return promql_unquote(rendered[len(prefix) : len(rendered) - len(suffix)], quote)


# --------------------------------------------------------------------------- rendering


def test_every_placeholder_is_replaced() -> None:
    template = (
        'sum(rate(x{namespace="{{namespace}}",name="{{name}}",revision="{{revision}}",'
        'model="{{model}}",version="{{version}}"}[1m]))'
    )
    assert render(template, VALUES) == (
        'sum(rate(x{namespace="ml",name="fraud-detector",revision="6f9c0a1b2c",'
        'model="fraud",version="1.5.0"}[1m]))'
    )


def test_whitespace_inside_the_braces_is_tolerated() -> None:
    assert render('x{revision="{{ revision }}",n="{{namespace\t}}"}', VALUES) == (
        'x{revision="6f9c0a1b2c",n="ml"}'
    )


def test_a_template_without_placeholders_renders_unchanged() -> None:
    template = 'sum(rate(x{code=~"5.."}[1m])) / 2 # no placeholders here'
    assert render(template, VALUES) == template


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ('x{pod="{{pod}}"}', "{{pod}}"),
        ('x{revision="{{Revision}}"}', "{{Revision}}"),
        ('x{a="{{namespace}}", b="{{ stage }}"}', "{{stage}}"),
        ('x{a="{{}}"}', "{{}}"),
    ],
)
def test_an_unknown_placeholder_is_an_error_naming_it(template: str, named: str) -> None:
    with pytest.raises(TemplateError, match=named.replace("{", r"\{").replace("}", r"\}")):
        render(template, VALUES)


def test_the_error_is_a_value_error_that_lists_the_known_placeholders() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{\{pod\}\}") as raised:
        render('x{pod="{{pod}}"}', VALUES)
    for name in PLACEHOLDERS:
        assert f"{{{{{name}}}}}" in str(raised.value)


def test_several_unknown_placeholders_are_all_named() -> None:
    with pytest.raises(TemplateError, match=r"\{\{a\}\}, \{\{b\}\}"):
        render('x{l="{{b}}", m="{{a}}"}', VALUES)


@pytest.mark.parametrize(
    "template", ['x{revision="{{revision}"}', 'x{revision="{{revision"}', 'x{l="{{{name}}}"}']
)
def test_a_malformed_placeholder_is_an_error_not_left_in(template: str) -> None:
    with pytest.raises(TemplateError, match="malformed placeholder"):
        render(template, VALUES)


def test_a_malformed_placeholder_error_names_its_offset() -> None:
    with pytest.raises(TemplateError, match=r"malformed placeholder at offset 12: '\{\{revision\}"):
        validate('x{revision="{{revision}"}')


def test_a_backslash_before_the_braces_does_not_hide_a_placeholder() -> None:
    # PromQL has no "\{" escape. Were it read as one, {{pod}} would reach
    # Prometheus unchecked and {{name}} unrendered.
    with pytest.raises(TemplateError, match=r"unknown placeholder \{\{pod\}\}"):
        validate(r'x{a="\{{pod}}"}')
    assert render(r'x{a="\{{name}}"}', VALUES) == r'x{a="\fraud-detector"}'


@pytest.mark.parametrize(
    "template",
    [
        '{{model}}_requests_total{revision="{{revision}}"}',
        "x{revision={{revision}}}",
        'sum(x{a="b"}) by ({{name}})',
    ],
)
def test_a_placeholder_outside_a_string_is_refused(template: str) -> None:
    # As an identifier a value cannot be escaped: a model named "a-b" would
    # turn a_requests_total into a subtraction.
    with pytest.raises(TemplateError, match="outside a quoted string"):
        render(template, VALUES)
    with pytest.raises(TemplateError, match="outside a quoted string"):
        validate(template)


def test_validate_accepts_the_design_examples() -> None:
    validate(
        'sum(rate(model_requests_total{namespace="{{namespace}}",revision="{{revision}}",'
        'code=~"5.."}[1m]))\n/ sum(rate(model_requests_total{namespace="{{namespace}}",'
        'revision="{{revision}}"}[1m]))'
    )
    validate(
        "histogram_quantile(0.99, sum by (le) "
        '(rate(model_request_duration_seconds_bucket{revision="{{revision}}"}[1m])))'
    )


def test_placeholders_lists_names_known_or_not() -> None:
    template = 'x{a="{{namespace}}", b="{{ revision }}", c="{{revision}}", d="{{pod}}"}'
    assert placeholders(template) == {"namespace", "revision", "pod"}
    assert placeholders("up") == set()


def test_scan_reports_the_context_of_each_placeholder() -> None:
    template = "x{a=\"{{name}}\", b='{{model}}', c=`{{version}}`} # {{namespace}}\n"
    contexts = {p.name: p.context for p in scan(template)}
    assert contexts == {
        "name": Context.DOUBLE_QUOTED,
        "model": Context.SINGLE_QUOTED,
        "version": Context.RAW,
        "namespace": Context.COMMENT,
    }


def test_an_escaped_quote_does_not_end_the_string_for_the_scanner() -> None:
    # The placeholder is still inside the string after \" and is escaped there.
    rendered = render(r'x{a="say \"{{name}}\""}', with_name('"'))
    assert rendered == r'x{a="say \"\"\""}'


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ('a"b', r"a\"b"),
        ("a\\b", r"a\\b"),
        ("a\nb", r"a\nb"),
        ("a\rb", r"a\rb"),
        ("a'b", "a'b"),
        ("\\", r"\\"),
        ('\\"', r"\\\""),
        ("\ufffd", r"\ufffd"),
        ("ünïcødé ✓", "ünïcødé ✓"),
        ("", ""),
    ],
)
def test_escape_label_value(value: str, escaped: str) -> None:
    assert escape_label_value(value) == escaped


def test_a_hostile_value_stays_inside_its_matcher() -> None:
    hostile = '"} or vector(1) or x{a="'
    rendered = render('x{name="{{name}}"}', with_name(hostile))
    assert rendered == r'x{name="\"} or vector(1) or x{a=\""}'
    assert matcher_value(rendered, 'x{name="', '"}', '"') == hostile


def test_a_trailing_backslash_cannot_escape_the_closing_quote() -> None:
    rendered = render('x{name="{{name}}"}', with_name("evil\\"))
    assert rendered == r'x{name="evil\\"}'
    assert matcher_value(rendered, 'x{name="', '"}', '"') == "evil\\"


def test_a_lone_surrogate_is_refused_since_it_is_not_utf8() -> None:
    with pytest.raises(TemplateError, match="not valid UTF-8"):
        render('x{name="{{name}}"}', with_name("a\ud800b"))


def test_single_quoted_strings_escape_the_single_quote() -> None:
    rendered = render("x{name='{{name}}'}", with_name('it\'s "ok"'))
    assert rendered == "x{name='it\\'s \"ok\"'}"
    assert matcher_value(rendered, "x{name='", "'}", "'") == 'it\'s "ok"'


def test_a_backtick_string_refuses_a_value_with_a_backtick() -> None:
    assert render("x{name=`{{name}}`}", with_name('a"b\\c')) == 'x{name=`a"b\\c`}'
    with pytest.raises(TemplateError, match="backtick"):
        render("x{name=`{{name}}`}", with_name("a`b"))


def test_a_value_cannot_end_a_comment() -> None:
    rendered = render('x{a="b"} # for {{name}}\n', with_name("x\nor vector(1)"))
    assert rendered == 'x{a="b"} # for x\\nor vector(1)\n'


# --------------------------------------------------------------------------- properties


@given(st.text())
def test_any_value_round_trips_through_a_double_quoted_matcher(value: str) -> None:
    rendered = render('x{l="{{name}}"}', with_name(value))
    assert matcher_value(rendered, 'x{l="', '"}', '"') == value


@given(st.text())
def test_any_value_round_trips_through_a_single_quoted_matcher(value: str) -> None:
    rendered = render("x{l='{{name}}'}", with_name(value))
    assert matcher_value(rendered, "x{l='", "'}", "'") == value


@given(st.text(), st.text())
def test_two_values_stay_in_their_own_matchers(first: str, second: str) -> None:
    values = TemplateValues(namespace=first, name=second, revision="r", model="m", version="v")
    rendered = render('x{a="{{namespace}}",b="{{name}}"}', values)
    middle = '",b="'
    # The first string ends at the first unescaped quote; everything up to it is
    # the first value, and what follows is exactly the template's own text.
    body = rendered[len('x{a="') :]
    end = _unescaped_quote(body)
    assert promql_unquote(body[:end], '"') == first
    assert body[end:].startswith(middle)
    assert promql_unquote(body[end + len(middle) : -2], '"') == second


@given(st.text())
def test_escaping_is_injective(value: str) -> None:
    # Two different values never render to the same query.
    assert promql_unquote(escape_label_value(value), '"') == value


def _unescaped_quote(body: str) -> int:
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == '"':
            return i
        i += 1
    raise AssertionError(f"no closing quote in {body!r}")
