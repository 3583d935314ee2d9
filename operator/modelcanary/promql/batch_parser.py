"""The parser that proves a query template batchable, and writes its batched form.

It reads a small, well-understood part of PromQL (``promql.rewrite`` gives the
argument, node by node) from the tokens of the shared lexer, and raises
:class:`NotBatchable` at the first thing it cannot vouch for. While it reads, it
edits: ``revision="{{revision}}"`` becomes ``revision=~"{{revision}}"`` and every
grouping and vector match gets ``revision``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from modelcanary.promql.grammar import (
    AGGREGATIONS,
    KEYWORDS,
    OTHER_AGGREGATIONS,
    PRECEDENCE,
    RANGE_FUNCTIONS,
    SCALAR_PARAMETERS,
    SET_OPERATORS,
)
from modelcanary.promql.lexer import Context, Lexed, Placeholder, Token

REVISION: Final = "revision"


class NotBatchable(Exception):
    """Why a template is run singly."""


def _lexical_doubt(lexed: Lexed) -> str | None:
    """The first thing, by offset, that the lexer found and the parser cannot vouch for."""
    doubts = [(problem.offset, str(problem)) for problem in lexed.problems]
    doubts += [
        (placeholder.start, f"a placeholder outside a string at offset {placeholder.start}")
        for placeholder in lexed.placeholders
        if placeholder.context is Context.CODE
    ]
    return min(doubts)[1] if doubts else None


@dataclass(frozen=True)
class _Type:
    kind: Literal["scalar", "vector", "matrix", "string"]
    revision_label: bool = False
    """For vectors: whether the single query's series carry the revision label. It is
    all or none of them, since both sides of a binary operation must agree."""


_KIND_NAMES: Final = {
    "scalar": "scalar",
    "vector": "instant vector",
    "matrix": "range vector",
    "string": "string",
    "ident": "a name",
    "duration": "a duration",
}
_SCALAR = _Type("scalar")
_STRING = _Type("string")


@dataclass(frozen=True)
class _LabelList:
    keyword: str
    labels: tuple[str, ...]
    insert_at: int
    """Where ``revision`` goes to be added to the list."""

    @property
    def has_revision(self) -> bool:
        return REVISION in self.labels


@dataclass
class Parser:
    text: str
    lexed: Lexed
    position: int = 0
    edits: list[tuple[int, int, str]] = field(default_factory=list)
    """(start, end, replacement) in the template's text."""

    def parse(self) -> None:
        doubt = _lexical_doubt(self.lexed)
        if doubt is not None:
            raise NotBatchable(doubt)
        result = self.expression()
        if self.peek().kind != "eof":
            raise self.failure(f"unexpected {self.peek().text!r}")
        if result.kind != "vector":
            raise self.failure(
                f"the query returns a {_KIND_NAMES[result.kind]}, not an instant vector"
            )

    def edited(self) -> str:
        text = self.text
        for start, end, replacement in sorted(self.edits, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text

    # -- tokens ------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        tokens = self.lexed.tokens
        return tokens[min(self.position + ahead, len(tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.position += 1
        return token

    def at_op(self, text: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text == text

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "ident" and token.text.lower() in words

    def expect_op(self, text: str) -> Token:
        if not self.at_op(text):
            raise self.failure(f"expected {text!r}, found {self.peek().text!r}")
        return self.advance()

    def expect(self, kind: Literal["ident", "duration", "string"]) -> Token:
        if self.peek().kind != kind:
            raise self.failure(f"expected {_KIND_NAMES[kind]}, found {self.peek().text!r}")
        return self.advance()

    def failure(self, reason: str) -> NotBatchable:
        return NotBatchable(f"{reason} (at offset {self.peek().start})")

    # -- expressions -------------------------------------------------------------------

    def binary_operator(self) -> str | None:
        token = self.peek()
        if token.kind == "op" and token.text in PRECEDENCE:
            return token.text
        if token.kind == "ident" and token.text.lower() in PRECEDENCE:
            return token.text.lower()
        return None

    def expression(self, min_precedence: int = 0) -> _Type:
        left = self.unary()
        while (operator := self.binary_operator()) is not None:
            precedence = PRECEDENCE[operator]
            if precedence < min_precedence:
                break
            self.advance()
            matching = self.vector_matching()
            # ^ is right-associative; everything else is left-associative.
            right = self.expression(precedence if operator == "^" else precedence + 1)
            left = self.combine(operator, left, right, matching)
        return left

    def unary(self) -> _Type:
        if self.at_op("-") or self.at_op("+"):
            self.advance()
            operand = self.expression(PRECEDENCE["^"])
            if operand.kind not in ("scalar", "vector"):
                raise self.failure("a sign before a range vector or a string")
            return operand
        result = self.primary()
        if self.at_op("["):
            raise self.failure("a subquery")
        if self.at_op("@") or self.at_keyword("offset"):
            raise self.failure("an @ or offset modifier on something other than a selector")
        return result

    def vector_matching(self) -> _LabelList | None:
        if self.at_keyword("bool"):
            self.advance()
        if not self.at_keyword("on", "ignoring"):
            return None
        keyword = self.advance().text.lower()
        matching = self.label_list(keyword)
        if self.at_keyword("group_left", "group_right"):
            raise self.failure("group_left/group_right are not batched")
        return matching

    def combine(
        self, operator: str, left: _Type, right: _Type, matching: _LabelList | None
    ) -> _Type:
        if {left.kind, right.kind} - {"scalar", "vector"}:
            raise self.failure(f"a range vector or string as an operand of {operator}")
        set_operator = operator in SET_OPERATORS
        if left.kind == "scalar" or right.kind == "scalar":
            if set_operator or matching is not None:
                raise self.failure(f"{operator} with a scalar operand and vector matching")
            return left if left.kind == "vector" else right
        if left.revision_label != right.revision_label:
            raise self.failure(
                f"the two sides of {operator} differ in whether they keep the revision label, "
                "so matching by revision would pair series the single query does not"
            )
        if matching is None:
            return left
        if matching.keyword == "ignoring":
            if matching.has_revision:
                raise self.failure("ignoring(revision) would match series of different revisions")
            return left
        if not matching.has_revision:
            self.add_label(matching)
        if set_operator:
            return left
        # One-to-one matching with on(...) keeps only the listed labels.
        return _Type("vector", left.revision_label and matching.has_revision)

    def primary(self) -> _Type:
        token = self.peek()
        if token.kind == "number":
            self.advance()
            return _SCALAR
        if token.kind == "string":
            self.advance()
            self.check_string(token)
            return _STRING
        if token.kind == "op" and token.text == "(":
            self.advance()
            inner = self.expression()
            self.expect_op(")")
            if self.at_op("[") or self.at_keyword("offset") or self.at_op("@"):
                raise self.failure("subqueries and modifiers on a parenthesised expression")
            return inner
        if token.kind == "op" and token.text == "{":
            return self.selector()
        if token.kind != "ident":
            raise self.failure(f"unexpected {token.text!r}")
        word = token.text.lower()
        if word in ("inf", "nan"):
            self.advance()
            return _SCALAR
        if word in AGGREGATIONS:
            return self.aggregation()
        if word in OTHER_AGGREGATIONS:
            raise self.failure(f"the aggregation {word} is not batched")
        if word in KEYWORDS:
            raise self.failure(f"unexpected {token.text!r}")
        if self.peek(1).kind == "op" and self.peek(1).text == "(":
            return self.call()
        return self.selector()

    def aggregation(self) -> _Type:
        keyword = self.advance()
        grouping = self.grouping()
        self.expect_op("(")
        argument = self.expression()
        if self.at_op(","):
            raise self.failure(f"{keyword.text} with a parameter")
        self.expect_op(")")
        if grouping is None:
            grouping = self.grouping()
        elif self.at_keyword("by", "without"):
            raise self.failure("two groupings on one aggregation")
        if argument.kind != "vector":
            raise self.failure(f"{keyword.text} of a {argument.kind}")
        if grouping is None:
            self.edits.append((keyword.end, keyword.end, f" by ({REVISION})"))
            return _Type("vector", revision_label=False)
        if grouping.keyword == "without":
            if grouping.has_revision:
                raise self.failure("without(revision) would aggregate across revisions")
            return argument
        if not grouping.has_revision:
            self.add_label(grouping)
            return _Type("vector", revision_label=False)
        return argument

    def grouping(self) -> _LabelList | None:
        if not self.at_keyword("by", "without"):
            return None
        keyword = self.advance().text.lower()
        return self.label_list(keyword)

    def label_list(self, keyword: str) -> _LabelList:
        opening = self.expect_op("(")
        labels: list[str] = []
        insert_at = opening.end
        while not self.at_op(")"):
            label = self.expect("ident")
            if ":" in label.text:
                raise self.failure(f"{label.text!r} is not a label name")
            labels.append(label.text)
            insert_at = label.end
            if not self.at_op(","):
                break
            self.advance()
        self.expect_op(")")
        return _LabelList(keyword, tuple(labels), insert_at)

    def add_label(self, labels: _LabelList) -> None:
        text = f", {REVISION}" if labels.labels else REVISION
        self.edits.append((labels.insert_at, labels.insert_at, text))

    def call(self) -> _Type:
        name = self.advance().text
        self.expect_op("(")
        arguments: list[_Type] = []
        while not self.at_op(")"):
            arguments.append(self.expression())
            if not self.at_op(","):
                break
            self.advance()
        self.expect_op(")")
        kinds = tuple(argument.kind for argument in arguments)
        if name in RANGE_FUNCTIONS and kinds == ("matrix",):
            return _Type("vector", arguments[0].revision_label)
        if name == "quantile_over_time" and kinds == ("scalar", "matrix"):
            return _Type("vector", arguments[1].revision_label)
        if name == "histogram_quantile" and kinds == ("scalar", "vector"):
            return arguments[1]
        if name in SCALAR_PARAMETERS and kinds and kinds[0] == "vector":
            least, most = SCALAR_PARAMETERS[name]
            rest = kinds[1:]
            if least <= len(rest) <= most and all(kind == "scalar" for kind in rest):
                return arguments[0]
        shown = ", ".join(kinds)
        raise self.failure(f"{name}({shown}) is not known to keep revisions apart")

    def selector(self) -> _Type:
        if self.peek().kind == "ident":
            self.advance()  # the metric name
        revision_matchers = self.matchers() if self.at_op("{") else []
        if len(revision_matchers) != 1:
            raise self.failure('a selector without exactly one matcher revision="{{revision}}"')
        operator, value = revision_matchers[0]
        if operator.text != "=" or not self.is_exactly_the_revision(value):
            raise self.failure('a revision matcher other than revision="{{revision}}"')
        self.edits.append((operator.start, operator.end, "=~"))
        kind: Literal["vector", "matrix"] = "vector"
        if self.at_op("["):
            self.advance()
            self.expect("duration")
            if self.at_op(":"):
                raise self.failure("a subquery")
            self.expect_op("]")
            kind = "matrix"
        if self.at_keyword("offset"):
            self.advance()
            if self.at_op("-"):
                self.advance()
            self.expect("duration")
        if self.at_op("@") or self.at_op("["):
            raise self.failure("an @ modifier or a range after offset")
        return _Type(kind, revision_label=True)

    def matchers(self) -> list[tuple[Token, Token]]:
        """The label matchers in braces; returns (operator, value) of those on revision."""
        revision_matchers: list[tuple[Token, Token]] = []
        self.expect_op("{")
        while not self.at_op("}"):
            label = self.expect("ident")
            operator = self.peek()
            if operator.kind != "op" or operator.text not in ("=", "!=", "=~", "!~"):
                raise self.failure(f"expected a label matcher after {label.text!r}")
            self.advance()
            value = self.expect("string")
            if label.text == REVISION:
                revision_matchers.append((operator, value))
            else:
                self.check_string(value)
            if not self.at_op(","):
                break
            self.advance()
        self.expect_op("}")
        return revision_matchers

    def check_string(self, token: Token) -> None:
        if any(p.name == REVISION for p in self.placeholders_in(token)):
            raise self.failure('{{revision}} used elsewhere than in revision="{{revision}}"')

    def is_exactly_the_revision(self, string: Token) -> bool:
        """Whether the string literal holds ``{{revision}}`` and nothing else."""
        match self.placeholders_in(string):
            case [only]:
                return (
                    only.name == REVISION
                    and only.start == string.start + 1
                    and only.end == string.end - 1
                )
            case _:
                return False

    def placeholders_in(self, string: Token) -> list[Placeholder]:
        return [p for p in self.lexed.placeholders if string.start < p.start < string.end]
