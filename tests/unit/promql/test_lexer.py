"""The shared PromQL lexer: tokens, strings, comments, and where placeholders stand.

The renderer escapes a value by the context the lexer reports, and the batching
rewrite edits the tokens the lexer reports, so these tests pin both: token kinds
and offsets, every kind of string and its escapes, comments, durations against
numbers, and a placeholder in each context.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcanary.promql.lexer import Context, MalformedPlaceholder, Placeholder, Token, lex

pytestmark = pytest.mark.unit


def kinds_and_texts(text: str) -> list[tuple[str, str]]:
    return [(token.kind, token.text) for token in lex(text).tokens]


def contexts(text: str) -> list[tuple[str, Context]]:
    return [(placeholder.name, placeholder.context) for placeholder in lex(text).placeholders]


# --------------------------------------------------------------------------- tokens


def test_a_query_is_tokens_with_their_offsets() -> None:
    text = 'sum by (le) (rate(x{a=~"b"}[5m]))'
    lexed = lex(text)
    assert [(t.kind, t.text, t.start, t.end) for t in lexed.tokens[:6]] == [
        ("ident", "sum", 0, 3),
        ("ident", "by", 4, 6),
        ("op", "(", 7, 8),
        ("ident", "le", 8, 10),
        ("op", ")", 10, 11),
        ("op", "(", 12, 13),
    ]
    assert [t.text for t in lexed.tokens] == [
        *("sum", "by", "(", "le", ")", "(", "rate", "(", "x", "{", "a", "=~", '"b"', "}"),
        *("[", "5m", "]", ")", ")", ""),
    ]
    assert lexed.tokens[-1] == Token("eof", "", len(text), len(text))
    assert lexed.placeholders == ()
    assert lexed.problems == ()


def test_every_token_is_its_own_slice_of_the_text() -> None:
    text = "max_over_time(x{job!~'a|b'}[1h30m] offset -5m) >= bool 0x1F # done"
    for token in lex(text).tokens:
        assert text[token.start : token.end] == token.text


@pytest.mark.parametrize(
    "operator", ["==", "!=", "=~", "!~", "<=", ">=", "<", ">", "=", "+", "-", "*", "/", "%", "^"]
)
def test_operators_are_read_longest_first(operator: str) -> None:
    assert kinds_and_texts(f"a {operator} b") == [
        ("ident", "a"),
        ("op", operator),
        ("ident", "b"),
        ("eof", ""),
    ]


def test_a_name_may_hold_colons_and_underscores() -> None:
    assert kinds_and_texts("job:requests_total:rate5m _x") == [
        ("ident", "job:requests_total:rate5m"),
        ("ident", "_x"),
        ("eof", ""),
    ]


# --------------------------------------------------------------------------- durations and numbers


@pytest.mark.parametrize("text", ["5m", "1m30s", "1h30m", "500ms", "2d", "1w", "1y", "90s"])
def test_durations(text: str) -> None:
    assert kinds_and_texts(text) == [("duration", text), ("eof", "")]


@pytest.mark.parametrize(
    "text", ["1", "0.5", ".5", "5.", "1e3", "1E-3", "2.5e+10", "0x1f", "0X1F", "007"]
)
def test_numbers(text: str) -> None:
    assert kinds_and_texts(text) == [("number", text), ("eof", "")]


def test_a_duration_inside_a_range_and_after_offset() -> None:
    assert kinds_and_texts("x[1m30s] offset 1e3") == [
        ("ident", "x"),
        ("op", "["),
        ("duration", "1m30s"),
        ("op", "]"),
        ("ident", "offset"),
        ("number", "1e3"),
        ("eof", ""),
    ]


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        pytest.param("1m30", 0, id="duration-with-a-bare-number"),
        pytest.param("1x", 0, id="number-run-into-a-name"),
        pytest.param("a $ b", 2, id="a-character-promql-has-no-use-for"),
    ],
)
def test_what_is_neither_a_number_nor_a_duration_is_a_problem(text: str, offset: int) -> None:
    problems = lex(text).problems
    assert problems
    assert problems[0].offset == offset
    assert str(problems[0]).startswith("unexpected character")


def test_inf_and_nan_are_names_for_the_parser_to_judge() -> None:
    assert kinds_and_texts("Inf NaN") == [("ident", "Inf"), ("ident", "NaN"), ("eof", "")]


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(r'"a\"b"', id="escaped-double-quote"),
        pytest.param(r'"a\\"', id="escaped-backslash-then-the-end"),
        pytest.param(r'"tab\there\n"', id="letter-escapes"),
        pytest.param(r"'it\'s'", id="escaped-single-quote"),
        pytest.param("'say \"hi\"'", id="double-quotes-in-single"),
        pytest.param('"it\'s"', id="single-quote-in-double"),
        pytest.param(r"`a\d+`", id="backtick-keeps-backslashes"),
        pytest.param("`two\nlines`", id="backtick-spans-lines"),
        pytest.param('"a # not a comment"', id="hash-in-a-string"),
    ],
)
def test_a_string_is_one_token_up_to_its_own_closing_quote(text: str) -> None:
    lexed = lex(text)
    assert kinds_and_texts(text) == [("string", text), ("eof", "")]
    assert lexed.problems == ()


def test_a_backslash_does_not_escape_a_backtick() -> None:
    # Backtick strings have no escapes: the backslash is text and the backtick ends it.
    assert kinds_and_texts(r"`a\` + 1") == [
        ("string", r"`a\`"),
        ("op", "+"),
        ("number", "1"),
        ("eof", ""),
    ]


def test_an_unterminated_string_is_a_problem_at_its_start() -> None:
    lexed = lex('x{a="b}')
    assert [str(p) for p in lexed.problems] == ["an unterminated string at offset 4"]
    assert lexed.tokens[-2] == Token("string", '"b}', 4, 7)


def test_a_line_break_in_a_quoted_string_is_a_problem_but_the_string_reads_on() -> None:
    # Prometheus refuses this. Reading on to the closing quote keeps the
    # placeholder after the line break in the string, where it is escaped.
    text = 'x{a="b\n{{name}}"}'
    lexed = lex(text)
    assert [str(p) for p in lexed.problems] == ["an unterminated string at offset 4"]
    assert contexts(text) == [("name", Context.DOUBLE_QUOTED)]
    assert [t.text for t in lexed.tokens][-3:] == ['"b\n{{name}}"', "}", ""]


# --------------------------------------------------------------------------- comments


def test_comments_are_skipped_to_the_end_of_the_line() -> None:
    text = 'x # a "comment" with `quotes` and {{name}}\n+ 1 # trailing'
    assert kinds_and_texts(text) == [
        ("ident", "x"),
        ("op", "+"),
        ("number", "1"),
        ("eof", ""),
    ]
    assert lex(text).problems == ()
    assert contexts(text) == [("name", Context.COMMENT)]


# --------------------------------------------------------------------------- placeholders


def test_a_placeholder_in_each_context() -> None:
    text = "{{model}}_total{a=\"{{name}}\", b='{{namespace}}', c=`{{version}}`} # {{revision}}\n"
    assert contexts(text) == [
        ("model", Context.CODE),
        ("name", Context.DOUBLE_QUOTED),
        ("namespace", Context.SINGLE_QUOTED),
        ("version", Context.RAW),
        ("revision", Context.COMMENT),
    ]


def test_a_placeholder_reports_its_offsets_and_its_name_stripped() -> None:
    text = 'x{revision="{{ revision\t}}"}'
    assert lex(text).placeholders == (Placeholder("revision", 12, 26, Context.DOUBLE_QUOTED),)
    assert text[12:26] == "{{ revision\t}}"


def test_a_placeholder_in_code_is_no_token() -> None:
    lexed = lex('{{model}}_total{revision="{{revision}}"}')
    assert [t.text for t in lexed.tokens][:2] == ["_total", "{"]
    assert lexed.problems == ()


def test_a_placeholder_stays_inside_the_string_that_holds_it() -> None:
    text = 'x{a="p{{name}}q", b="{{revision}}"}'
    strings = [t for t in lex(text).tokens if t.kind == "string"]
    assert [t.text for t in strings] == ['"p{{name}}q"', '"{{revision}}"']
    for placeholder, string in zip(lex(text).placeholders, strings, strict=True):
        assert string.start < placeholder.start < placeholder.end < string.end


@pytest.mark.parametrize(
    ("text", "context"),
    [
        (r'x{a="\{{name}}"}', Context.DOUBLE_QUOTED),
        (r"x{a='\{{name}}'}", Context.SINGLE_QUOTED),
        (r'x{a="say \"{{name}}\""}', Context.DOUBLE_QUOTED),
    ],
)
def test_a_backslash_before_the_braces_does_not_hide_a_placeholder(
    text: str, context: Context
) -> None:
    # Were "\{" an escape, the placeholder would go unrendered and unchecked.
    assert contexts(text) == [("name", context)]


def test_a_quote_between_the_braces_does_not_end_the_string() -> None:
    # The placeholder is one unit: its (unknown) name is refused later, but the
    # string around it still ends where the renderer thinks it does.
    text = 'x{a="{{na"me}}"} + 1'
    assert contexts(text) == [('na"me', Context.DOUBLE_QUOTED)]
    assert [t.text for t in lex(text).tokens if t.kind == "string"] == ['"{{na"me}}"']


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ('x{revision="{{revision}"}', 12),
        ('x{revision="{{revision"}', 12),
        ('x{l="{{{name}}}"}', 5),
        ("{{model}_total", 0),
        ("x # {{revision}\n", 4),
        ("x{l=`{{a{b}}`}", 5),
    ],
)
def test_a_malformed_placeholder_raises_with_its_offset(text: str, offset: int) -> None:
    with pytest.raises(MalformedPlaceholder, match=f"malformed placeholder at offset {offset}: "):
        lex(text)


def test_lone_braces_are_operators_not_placeholders() -> None:
    assert kinds_and_texts('x{a="{b}"}') == [
        ("ident", "x"),
        ("op", "{"),
        ("ident", "a"),
        ("op", "="),
        ("string", '"{b}"'),
        ("op", "}"),
        ("eof", ""),
    ]
    assert lex('x{a="{b}"}').placeholders == ()


# --------------------------------------------------------------------------- properties

_PIECES = st.sampled_from(
    [
        *"{}()[]\"`'#\\\n =~,+*/",
        *("sum", "x", "1m30s", "1e3", "0x1f", "{{name}}", "{{revision}}", "revision", " by "),
    ]
)


@given(st.lists(_PIECES, max_size=30).map("".join))
def test_tokens_are_ordered_slices_and_placeholders_lie_in_strings_comments_or_code(
    text: str,
) -> None:
    try:
        lexed = lex(text)
    except MalformedPlaceholder:
        return
    previous_end = 0
    for token in lexed.tokens:
        assert token.start >= previous_end
        assert text[token.start : token.end] == token.text
        previous_end = token.end
    strings = [t for t in lexed.tokens if t.kind == "string"]
    for placeholder in lexed.placeholders:
        assert text[placeholder.start : placeholder.end].startswith("{{")
        holders = [s for s in strings if s.start < placeholder.start < s.end]
        if placeholder.context in (Context.CODE, Context.COMMENT):
            assert holders == []
        else:
            [holder] = holders
            assert holder.text[0] == _QUOTE_OF[placeholder.context]


_QUOTE_OF = {Context.DOUBLE_QUOTED: '"', Context.SINGLE_QUOTED: "'", Context.RAW: "`"}
