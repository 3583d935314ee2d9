"""The PromQL lexer that every reader of a query template shares.

It follows Prometheus's own lexer where a template can meet it. Double- and
single-quoted strings take backslash escapes. Backtick strings take none. A ``#``
starts a comment that runs to the end of the line. A duration (``1m30s``,
``500ms``) is told apart from a number (``1e3``, ``0x1f``, ``.5``). Operators are
read longest first (``=~`` before ``=``).

Placeholders (``{{name}}``) are not PromQL. They are read as one unit wherever
they stand, in code, in a string or in a comment, and each one is reported with
that context. The context decides how a value is escaped, so it comes from the
same pass that decides where strings and comments end, never from a second scan
that could disagree. Reading a placeholder as a unit means that nothing between
its braces, a quote say, can end the string around it. A backslash before ``{``
escapes nothing. ``"\\{{name}}"`` therefore still holds a placeholder, which is
found and checked instead of being sent to Prometheus unrendered.

The lexer is strict about placeholders and lenient about PromQL. A ``{{`` that
does not form a placeholder raises :class:`MalformedPlaceholder`, because no
reader can tell where the author meant it to end. A flaw that only Prometheus
would refuse, such as an unterminated string or a character PromQL has no use
for, is noted in :attr:`Lexed.problems`, and lexing goes on as well as it can.
Rendering does not need valid PromQL: Prometheus reports what is wrong, in its
own words. The batching rewrite does need it, and it refuses any problem.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["ident", "number", "duration", "string", "op", "eof"]


@dataclass(frozen=True)
class Token:
    """One PromQL token: ``text`` is ``source[start:end]``, quotes included for a string."""

    kind: TokenKind
    text: str
    start: int
    end: int


class Context(enum.Enum):
    """Where in the PromQL text a placeholder stands."""

    CODE = "code"
    DOUBLE_QUOTED = "double-quoted string"
    SINGLE_QUOTED = "single-quoted string"
    RAW = "backtick string"
    COMMENT = "comment"


@dataclass(frozen=True)
class Placeholder:
    """One ``{{ name }}`` occurrence: ``name`` is what stands between the braces, stripped."""

    name: str
    start: int
    end: int
    context: Context


@dataclass(frozen=True)
class Problem:
    """Something in the text that Prometheus's lexer would refuse."""

    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.reason} at offset {self.offset}"


@dataclass(frozen=True)
class Lexed:
    """A template as the lexer read it."""

    tokens: tuple[Token, ...]
    """Every token in order, ending with an ``eof`` token. Comments and whitespace are
    skipped, and so are placeholders in code, which are no PromQL token at all."""

    placeholders: tuple[Placeholder, ...]
    """Every placeholder in order, in code, strings and comments alike."""

    problems: tuple[Problem, ...]
    """What Prometheus would refuse, in order. A string token that has a problem may
    lack its closing quote."""


class MalformedPlaceholder(ValueError):
    """A ``{{`` that does not start a ``{{name}}`` placeholder."""

    def __init__(self, offset: int, snippet: str) -> None:
        super().__init__(f"malformed placeholder at offset {offset}: {snippet!r}")
        self.offset = offset


@functools.lru_cache(maxsize=1024)
def lex(text: str) -> Lexed:
    """``text`` as tokens, placeholders and problems.

    Raises MalformedPlaceholder for a ``{{`` that does not form a placeholder, so
    that a typo such as ``{{revision}`` is reported instead of being sent as is.
    Cached: a template is rendered for every revision on every interval, and the
    result is immutable.
    """
    return _Lexer(text).run()


_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
_SNIPPET_LENGTH = 24
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Several units in a row make one duration, largest first by convention: 1h30m.
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_.])")
_NUMBER = re.compile(
    r"(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_:.])"
)
# Longest first, so that "=~" is never read as "=" and then "~".
_OPERATORS = ("==", "!=", "=~", "!~", "<=", ">=", *"<>=+-*/%^(){}[],:@")
_STRINGS = {'"': Context.DOUBLE_QUOTED, "'": Context.SINGLE_QUOTED, "`": Context.RAW}


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Token] = []
        self.placeholders: list[Placeholder] = []
        self.problems: list[Problem] = []

    def run(self) -> Lexed:
        text, i, end = self.text, 0, len(self.text)
        while i < end:
            char = text[i]
            if text.startswith("{{", i):
                i = self.placeholder(i, Context.CODE)
            elif char.isspace():
                i += 1
            elif char == "#":
                i = self.comment(i)
            elif char in _STRINGS:
                i = self.string(i)
            elif match := _DURATION.match(text, i) or _NUMBER.match(text, i):
                kind: TokenKind = "duration" if match.re is _DURATION else "number"
                i = self.token(kind, i, match.end())
            elif match := _IDENT.match(text, i):
                i = self.token("ident", i, match.end())
            elif operator := next((op for op in _OPERATORS if text.startswith(op, i)), None):
                i = self.token("op", i, i + len(operator))
            else:
                self.problems.append(Problem(i, f"unexpected character {char!r}"))
                i += 1
        self.tokens.append(Token("eof", "", end, end))
        return Lexed(tuple(self.tokens), tuple(self.placeholders), tuple(self.problems))

    def token(self, kind: TokenKind, start: int, end: int) -> int:
        self.tokens.append(Token(kind, self.text[start:end], start, end))
        return end

    def placeholder(self, start: int, context: Context) -> int:
        match = _PLACEHOLDER.match(self.text, start)
        if match is None:
            raise MalformedPlaceholder(start, self.text[start : start + _SNIPPET_LENGTH])
        self.placeholders.append(Placeholder(match.group(1).strip(), start, match.end(), context))
        return match.end()

    def comment(self, start: int) -> int:
        """Skips a comment, reporting its placeholders; returns where its line ends."""
        text, i, end = self.text, start + 1, len(self.text)
        while i < end and text[i] != "\n":
            i = self.placeholder(i, Context.COMMENT) if text.startswith("{{", i) else i + 1
        return i

    def string(self, start: int) -> int:
        """Reads a string token, reporting its placeholders; returns where it ends."""
        text, end = self.text, len(self.text)
        quote = text[start]
        escapes = quote != "`"
        line_break_noted = False
        i = start + 1
        while i < end:
            char = text[i]
            if text.startswith("{{", i):
                i = self.placeholder(i, _STRINGS[quote])
            elif char == quote:
                return self.token("string", start, i + 1)
            elif escapes and char == "\\" and i + 1 < end and text[i + 1] != "{":
                # The escaped character cannot close the string. A backslash before
                # "{{" is left alone, so the placeholder is still found and checked.
                i += 2
            else:
                if escapes and char == "\n" and not line_break_noted:
                    # Prometheus ends a quoted string at a line break, with an error.
                    # Reading on to the closing quote keeps the placeholders after it
                    # in the string, where they are escaped, rather than in code.
                    self.problems.append(Problem(start, "an unterminated string"))
                    line_break_noted = True
                i += 1
        if not line_break_noted:
            self.problems.append(Problem(start, "an unterminated string"))
        return self.token("string", start, end)
