"""One query for many revisions: the batcher that runs them and splits the answers.

Many ModelDeployments share one Prometheus and, often, one query template, so
the queries of many revisions can be asked as one: ``sum by (revision)(...
{revision=~"r1|r2|r3"} ...)``, with the answer split by the ``revision`` label.
Whether a template may be batched at all, and the argument that its batched
answer restricted to one revision is exactly that revision's own answer, is
:mod:`modelcanary.promql.rewrite`. This module runs the queries.

The answer is checked as well: a series whose ``revision`` is missing or was not
asked for means the argument failed somewhere. The batch is then distrusted and
every revision is queried singly. So is a batch that Prometheus rejects (too many
samples, a matching error that only one revision has), since the single queries
may still succeed. An outage (unreachable, timeout, 5xx) is not retried singly:
more queries would only add load to a Prometheus that is already struggling.

Each request gets a :class:`~modelcanary.metrics.QueryResult`, every series with
its labels, so that a caller can read an answer of several series (histogram
buckets by ``le``, one series per slice). A revision's part of a batched answer
keeps its series as Prometheus returned them, so they also carry the ``revision``
label, even where the single query would have aggregated it away. A caller that
compares label sets should leave ``revision`` out. :meth:`QueryBatcher.sample`
is for a caller that wants one number, and it reduces the result by the same
rules as a single query's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from modelcanary.analysis.samples import Sample
from modelcanary.metrics import QueryResult, Series, SeriesProvider
from modelcanary.promql.rewrite import REVISION, is_batchable_revision, revision_regex, rewrite
from modelcanary.promql.templates import TemplateError, TemplateValues, render

MAX_REVISIONS_PER_QUERY: Final = 50
"""Keeps the batched query's URL short enough for proxies in front of Prometheus."""


@dataclass
class _Group:
    """Requests whose batched query differs only in the revision."""

    batched: str
    values: TemplateValues
    members: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    """revision -> (request index, the request's own single query)."""


class QueryBatcher:
    """Runs many (template, values) requests with as few queries as is sound."""

    def __init__(
        self,
        provider: SeriesProvider,
        *,
        max_revisions: int = MAX_REVISIONS_PER_QUERY,
        window: float = 0.05,
    ) -> None:
        """``window`` is how long :meth:`query` waits for other callers to join a batch."""
        if max_revisions < 2:
            raise ValueError("a batch needs room for at least two revisions")
        self.provider = provider
        self.max_revisions = max_revisions
        self.window = window
        self._pending: list[tuple[str, TemplateValues, asyncio.Future[QueryResult]]] = []
        self._collecting = False
        self._flushes: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def run(self, requests: Sequence[tuple[str, TemplateValues]]) -> list[QueryResult]:
        """One result per request, in order, with every series. Never raises for query problems.

        A template that cannot be rendered is a rejected query: Prometheus never
        saw it, and no retry can help.
        """
        results: list[QueryResult | None] = [None] * len(requests)
        singles: list[tuple[int, str]] = []
        groups: dict[tuple[str, str], _Group] = {}
        for index, (template, values) in enumerate(requests):
            try:
                query = render(template, values)
            except TemplateError as error:
                results[index] = QueryResult.failed(
                    f"invalid query template: {error}", rejected=True
                )
                continue
            plan = rewrite(template)
            if plan.batched is None or not is_batchable_revision(values.revision):
                singles.append((index, query))
                continue
            # The batched template rendered without a revision names the group: equal
            # text means equal values for every other placeholder the template uses.
            key = (plan.batched, render(plan.batched, dataclasses.replace(values, revision="")))
            group = groups.setdefault(key, _Group(plan.batched, values))
            group.members[values.revision].append((index, query))

        jobs = [self._run_singles(singles, results)]
        for group in groups.values():
            revisions = sorted(group.members)
            for start in range(0, len(revisions), self.max_revisions):
                jobs.append(
                    self._run_batch(group, revisions[start : start + self.max_revisions], results)
                )
        await asyncio.gather(*jobs)
        return [
            result if result is not None else QueryResult.failed("no result (internal error)")
            for result in results
        ]

    async def query(self, template: str, values: TemplateValues) -> QueryResult:
        """One request, batched with the others that arrive within ``window``.

        For callers that cannot gather their requests into one :meth:`run`, such
        as a timer per ModelDeployment.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[QueryResult] = loop.create_future()
        self._pending.append((template, values, future))
        if not self._collecting:
            self._collecting = True
            flush = loop.create_task(self._flush_after_window())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await future

    async def sample(self, template: str, values: TemplateValues) -> Sample:
        """:meth:`query` as one number: no series is no data, several are an error."""
        return (await self.query(template, values)).sample()

    async def _flush_after_window(self) -> None:
        await asyncio.sleep(self.window)
        pending, self._pending, self._collecting = self._pending, [], False
        try:
            results = await self.run([(template, values) for template, values, _ in pending])
        except Exception as error:
            for _, _, future in pending:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, _, future), result in zip(pending, results, strict=True):
            if not future.done():  # a caller that was cancelled has gone
                future.set_result(result)

    async def _run_singles(
        self, requests: Sequence[tuple[int, str]], results: list[QueryResult | None]
    ) -> None:
        by_query: dict[str, list[int]] = defaultdict(list)
        for index, query in requests:
            by_query[query].append(index)
        queries = list(by_query)
        answers = await asyncio.gather(*(self.provider.query_series(query) for query in queries))
        for query, answer in zip(queries, answers, strict=True):
            for index in by_query[query]:
                results[index] = answer

    async def _run_batch(
        self, group: _Group, revisions: list[str], results: list[QueryResult | None]
    ) -> None:
        members = [member for revision in revisions for member in group.members[revision]]
        if len(revisions) == 1:
            await self._run_singles(members, results)
            return
        values = dataclasses.replace(group.values, revision=revision_regex(revisions))
        answer = await self.provider.query_series(render(group.batched, values))
        if answer.error is not None:
            if answer.rejected:
                await self._run_singles(members, results)
                return
            for index, _ in members:
                results[index] = answer
            return
        split = _split(answer.series, revisions)
        if split is None:
            await self._run_singles(members, results)
            return
        for revision in revisions:
            own = QueryResult(series=split[revision])
            for index, _ in group.members[revision]:
                results[index] = own


def _split(
    series: Sequence[Series], revisions: Sequence[str]
) -> dict[str, tuple[Series, ...]] | None:
    """The batched answer per revision, or None if any series belongs to no requested one."""
    found: dict[str, list[Series]] = {revision: [] for revision in revisions}
    for one in series:
        revision = one.labels.get(REVISION)
        if revision not in found:
            return None
        found[revision].append(one)
    return {revision: tuple(found[revision]) for revision in revisions}
