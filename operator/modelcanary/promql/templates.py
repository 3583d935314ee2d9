"""PromQL query templates: one text per metric, rendered per revision, never injectable.

A user writes a metric's query once, with placeholders such as
``revision="{{revision}}"``, and the operator renders it for the candidate and
for the stable revision of every ModelDeployment that uses it. The values come
from object names and model references, so they are data, and data must never
become syntax. Each value is therefore escaped for the PromQL string literal
that surrounds it, and a value cannot end that string whatever it contains.

Rendering reads the template with the package's one PromQL lexer
(:mod:`modelcanary.promql.lexer`). The lexer knows whether a placeholder sits in a
double-quoted, single-quoted or backtick string, or in a comment, and the value is
escaped for that context. A placeholder outside any string (say
``{{model}}_requests_total``) is refused, because no escaping can make an
arbitrary value safe as an identifier: a model named ``a-b`` would turn a metric
name into a subtraction. An unknown placeholder is refused too, rather than left
in the query for Prometheus to trip over, or worse, to match literally.

Pure: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelcanary.promql.lexer import Context, MalformedPlaceholder, Placeholder, lex

__all__ = [
    "PLACEHOLDERS",
    "Context",
    "Placeholder",
    "TemplateError",
    "TemplateValues",
    "escape_label_value",
    "placeholders",
    "render",
    "scan",
    "validate",
]

PLACEHOLDERS: tuple[str, ...] = ("namespace", "name", "revision", "model", "version")
"""The placeholder names a template may use."""


class TemplateError(ValueError):
    """A template that cannot be rendered safely: the message says which placeholder and why."""


@dataclass(frozen=True)
class TemplateValues:
    """What the placeholders stand for, for one revision of one ModelDeployment."""

    namespace: str
    name: str
    revision: str
    model: str
    version: str

    def get(self, placeholder: str) -> str:
        if placeholder not in PLACEHOLDERS:
            raise TemplateError(_unknown_message([placeholder]))
        value: str = getattr(self, placeholder)
        return value


def scan(template: str) -> list[Placeholder]:
    """Every placeholder in ``template`` with its lexical context, in order.

    Raises TemplateError for a ``{{`` that does not form a placeholder, so that
    a typo such as ``{{revision}`` is reported instead of being sent as is.
    """
    try:
        return list(lex(template).placeholders)
    except MalformedPlaceholder as error:
        raise TemplateError(str(error)) from None


def placeholders(template: str) -> set[str]:
    """The names of the placeholders ``template`` uses, known or not."""
    return {placeholder.name for placeholder in scan(template)}


def validate(template: str) -> None:
    """Raise TemplateError unless every placeholder is known and inside a string or comment.

    Rendering checks the same things; this lets a spec be refused before any
    query runs.
    """
    found = scan(template)
    unknown = sorted({p.name for p in found if p.name not in PLACEHOLDERS})
    if unknown:
        raise TemplateError(_unknown_message(unknown))
    for placeholder in found:
        if placeholder.context is Context.CODE:
            raise TemplateError(
                f"placeholder {{{{{placeholder.name}}}}} at offset {placeholder.start} is "
                "outside a quoted string; values are only safe inside a string, as in "
                f'label="{{{{{placeholder.name}}}}}"'
            )


def render(template: str, values: TemplateValues) -> str:
    """The query for ``values``: every placeholder replaced by its escaped value."""
    validate(template)
    parts: list[str] = []
    last = 0
    for placeholder in scan(template):
        parts.append(template[last : placeholder.start])
        parts.append(_escape_for(placeholder, values.get(placeholder.name)))
        last = placeholder.end
    parts.append(template[last:])
    return "".join(parts)


def escape_label_value(value: str) -> str:
    """``value`` escaped for the inside of a double-quoted PromQL string.

    Backslash, double quote, newline and carriage return get backslash escapes.
    U+FFFD is written as ``\\ufffd`` because PromQL's lexer takes a literal
    replacement character for broken UTF-8 and refuses the query.
    """
    return _escape(value, '"')


def _check_utf8(value: str) -> None:
    # A lone surrogate cannot be sent to Prometheus at all; say so instead of
    # failing later in the HTTP layer.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise TemplateError(f"value {value!r} is not valid UTF-8 ({error.reason})") from None


def _escape(value: str, quote: str) -> str:
    _check_utf8(value)
    return (
        value.replace("\\", "\\\\")
        .replace(quote, "\\" + quote)
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\ufffd", "\\ufffd")
    )


def _escape_for(placeholder: Placeholder, value: str) -> str:
    context = placeholder.context
    if context is Context.SINGLE_QUOTED:
        return _escape(value, "'")
    if context is Context.RAW:
        # A backtick string has no escapes at all: the value must simply not end it.
        if "`" in value or "\ufffd" in value:
            raise TemplateError(
                f"the value of {{{{{placeholder.name}}}}} ({value!r}) cannot be written in a "
                'backtick string; use a double-quoted string, label="..."'
            )
        _check_utf8(value)
        return value
    # Double-quoted strings, and comments: escaping the newline keeps a comment a comment.
    return _escape(value, '"')


def _unknown_message(names: list[str]) -> str:
    listed = ", ".join(f"{{{{{name}}}}}" for name in names)
    known = ", ".join(f"{{{{{name}}}}}" for name in PLACEHOLDERS)
    noun = "placeholder" if len(names) == 1 else "placeholders"
    return f"unknown {noun} {listed}; a template may use {known}"
