"""One query for many revisions, where the query's shape proves that sound.

Many ModelDeployments share one Prometheus and, often, one query template. For
a template such as

    sum(rate(model_requests_total{revision="{{revision}}",code=~"5.."}[1m]))
      / sum(rate(model_requests_total{revision="{{revision}}"}[1m]))

the query for revisions r1..rn can be written once:

    sum by (revision)(rate(model_requests_total{revision=~"r1|...|rn",code=~"5.."}[1m]))
      / sum by (revision)(rate(model_requests_total{revision=~"r1|...|rn"}[1m]))

and its answer split by the ``revision`` label. That is one query per interval
instead of one per revision. This module decides whether a template may be
batched and writes the batched template; :mod:`modelcanary.metrics.batching`
runs the queries and splits the answers.

A wrong batch would judge one model on another model's data, so a template is
batched only when a parser of a small, well-understood part of PromQL can show
that the batched answer, restricted to ``revision="r"``, is exactly the single
query's answer for r with the label ``revision="r"`` added. Anything that parser
does not know is run singly. The argument, node by node:

* Every selector carries exactly the matcher ``revision="{{revision}}"``, which
  becomes ``revision=~"r1|...|rn"``. Every series read belongs to one requested
  revision and carries it as a label. A selector without that matcher would read
  the same series for every revision, so it makes the template unbatchable.
* Per-series functions (rate, *_over_time, abs, round, ...) keep labels.
* ``sum/avg/min/max/count`` get ``revision`` added to ``by (...)``, or get
  ``by (revision)`` when they had no grouping. Each group then lies within one
  revision, and restricted to revision r the groups are the single query's
  groups. ``without (...)`` keeps ``revision`` already, unless it is listed.
* ``histogram_quantile`` groups by every label but ``le``, so the revision is kept.
* A binary operation between two vectors matches series by label set, so
  ``revision`` must be part of the match. Both sides must agree on whether the
  single query's series carry the revision label (an aggregation without it
  drops it). Otherwise matching by revision would pair series that the single
  query leaves unpaired. ``on (...)`` gets ``revision`` added. ``ignoring`` must
  not list it, and ``group_left``/``group_right`` are not batched.
* Scalars are number literals only. ``scalar()``, ``vector()``, ``absent()``,
  ``label_replace()``, subqueries, ``@`` and every other function or aggregation
  make a template unbatchable.

The parser reads the tokens of the shared lexer (:mod:`modelcanary.promql.lexer`),
so it sees strings, comments and placeholders exactly where the renderer does. A
template the lexer has any doubt about (an unterminated string, a stray character,
a placeholder outside a string) is run singly, and Prometheus says what is wrong.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from modelcanary.promql.batch_parser import REVISION, NotBatchable, Parser
from modelcanary.promql.lexer import MalformedPlaceholder, lex

__all__ = [
    "REVISION",
    "NotBatchable",
    "Rewrite",
    "is_batchable_revision",
    "revision_regex",
    "rewrite",
]

# Revisions are short hashes; anything else is legal but is simply run singly.
_BATCHABLE_REVISION = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class Rewrite:
    """A template and, when its shape allows, the template of its batched query."""

    template: str
    batched: str | None
    """The template with ``revision=~"{{revision}}"`` matchers and revision groupings; render
    it with the revision alternation as the revision. None when the template runs singly."""

    reason: str | None = None
    """Why the template runs singly."""


@functools.lru_cache(maxsize=1024)
def rewrite(template: str) -> Rewrite:
    """The batched form of ``template``, or the reason there is none."""
    try:
        parser = Parser(template, lex(template))
        parser.parse()
    except (NotBatchable, MalformedPlaceholder) as reason:
        return Rewrite(template, None, str(reason))
    except Exception as error:  # a parser bug must cost batching, never a wrong batch
        return Rewrite(template, None, f"internal parser error: {error!r}")
    return Rewrite(template, parser.edited())


def revision_regex(revisions: Sequence[str]) -> str:
    """An RE2 alternation that matches exactly ``revisions`` (Prometheus anchors it)."""
    return "|".join(_quote_meta(revision) for revision in revisions)


def is_batchable_revision(revision: str) -> bool:
    return bool(_BATCHABLE_REVISION.match(revision))


def _quote_meta(text: str) -> str:
    # Go's regexp.QuoteMeta.
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)
