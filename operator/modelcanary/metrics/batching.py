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

Looks on the look grid (issue 15) ask at an instant ``at``: every canary with
the same look period looks at the same instants, but their passes run one after
another (``--max-concurrent-passes``), far more than the 50 ms window apart. So
an answer for (batched query, instant) is kept, and a later request at that
instant whose revision it asked for is served from it. The first request for a
(batched query, instant) also asks for every revision asked under that query at
the previous instant: the canaries still in analysis will ask next. Prometheus
evaluates a query at a given instant the same whenever it is asked (up to
samples that arrive late, which the judge copes with as with any scrape), so a
kept answer is what the request's own query would have returned. Only answers
split soundly are kept; an outage, a rejection or a distrusted batch are not.
The online check is shared per instant too.

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
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from modelcanary.analysis.samples import Sample
from modelcanary.metrics import QueryResult, Series, SeriesProvider
from modelcanary.promql.rewrite import REVISION, is_batchable_revision, revision_regex, rewrite
from modelcanary.promql.templates import TemplateError, TemplateValues, render

MAX_REVISIONS_PER_QUERY: Final = 50
"""Keeps the batched query's URL short enough for proxies in front of Prometheus."""
ANSWERS_KEPT: Final = 256
"""(batched query, instant) answers kept; a few instants of every shape in use."""

GroupKey = tuple[str, str]
"""The batched template, and its text rendered without a revision."""


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
        self._pending: list[
            tuple[str, TemplateValues, datetime | None, asyncio.Future[QueryResult]]
        ] = []
        self._answered: OrderedDict[tuple[GroupKey, datetime], dict[str, tuple[Series, ...]]]
        self._answered = OrderedDict()
        self._last_asked: OrderedDict[GroupKey, tuple[datetime, set[str]]] = OrderedDict()
        self._online: OrderedDict[datetime, asyncio.Future[bool]] = OrderedDict()
        self._collecting = False
        self._flushes: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def run(
        self, requests: Sequence[tuple[str, TemplateValues]], *, at: datetime | None = None
    ) -> list[QueryResult]:
        """One result per request, in order, with every series, evaluated at ``at`` (None:
        when Prometheus receives them). Never raises for query problems.

        A template that cannot be rendered is a rejected query: Prometheus never
        saw it, and no retry can help.
        """
        results: list[QueryResult | None] = [None] * len(requests)
        singles: list[tuple[int, str]] = []
        groups: dict[GroupKey, _Group] = {}
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

        jobs = [self._run_singles(singles, results, at)]
        for key, group in groups.items():
            revisions = self._to_ask(key, group, at, results)
            for start in range(0, len(revisions), self.max_revisions):
                chunk = revisions[start : start + self.max_revisions]
                jobs.append(self._run_batch(group, chunk, results, at, key))
        await asyncio.gather(*jobs)
        return [
            result if result is not None else QueryResult.failed("no result (internal error)")
            for result in results
        ]

    def _to_ask(
        self, key: GroupKey, group: _Group, at: datetime | None, results: list[QueryResult | None]
    ) -> list[str]:
        """The revisions to ask for in ``group``'s batched query; those already answered
        at ``at`` get their kept answer. The requests' own revisions come first, then
        those asked at the previous instant, so the first chunk serves the requests."""
        if at is None:
            return sorted(group.members)
        kept = self._answered.get((key, at), {})
        for revision, members in group.members.items():
            if revision in kept:
                for index, _ in members:
                    results[index] = QueryResult(series=kept[revision])
        own = sorted(revision for revision in group.members if revision not in kept)
        extra: list[str] = []
        last_at, last_asked = self._last_asked.get(key, (at, set()))
        if last_at < at:  # the first request at a new instant
            extra = sorted(last_asked - kept.keys() - set(own))
            self._last_asked[key] = (at, set(group.members))
        elif last_at == at:
            last_asked.update(group.members)
        # else a late request for an older instant: it guesses nothing, records nothing
        if key in self._last_asked:
            self._last_asked.move_to_end(key)
        else:
            self._last_asked[key] = (at, set(group.members))
        while len(self._last_asked) > ANSWERS_KEPT:
            self._last_asked.popitem(last=False)
        return own + extra if own else []

    def _keep(self, key: GroupKey, at: datetime, split: dict[str, tuple[Series, ...]]) -> None:
        self._answered.setdefault((key, at), {}).update(split)
        self._answered.move_to_end((key, at))
        while len(self._answered) > ANSWERS_KEPT:
            self._answered.popitem(last=False)

    async def is_online(self, at: datetime | None = None) -> bool:
        """The provider's online check, one per instant ``at`` however many looks ask."""
        if at is None:
            return await self.provider.is_online()
        check = self._online.get(at)
        if check is None:
            check = asyncio.ensure_future(self.provider.is_online())
            self._online[at] = check
            while len(self._online) > ANSWERS_KEPT:
                self._online.popitem(last=False)
        return await asyncio.shield(check)

    async def query(
        self, template: str, values: TemplateValues, *, at: datetime | None = None
    ) -> QueryResult:
        """One request, batched with the others that arrive within ``window``.

        For callers that cannot gather their requests into one :meth:`run`, such
        as a timer per ModelDeployment.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[QueryResult] = loop.create_future()
        self._pending.append((template, values, at, future))
        if not self._collecting:
            self._collecting = True
            flush = loop.create_task(self._flush_after_window())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await future

    async def sample(
        self, template: str, values: TemplateValues, *, at: datetime | None = None
    ) -> Sample:
        """:meth:`query` as one number: no series is no data, several are an error."""
        return (await self.query(template, values, at=at)).sample()

    async def _flush_after_window(self) -> None:
        await asyncio.sleep(self.window)
        pending, self._pending, self._collecting = self._pending, [], False
        by_instant: dict[datetime | None, list[int]] = defaultdict(list)
        for position, (_, _, at, _) in enumerate(pending):
            by_instant[at].append(position)
        await asyncio.gather(
            *(self._answer(pending, positions, at) for at, positions in by_instant.items())
        )

    async def _answer(
        self,
        pending: list[tuple[str, TemplateValues, datetime | None, asyncio.Future[QueryResult]]],
        positions: list[int],
        at: datetime | None,
    ) -> None:
        futures = [pending[position][3] for position in positions]
        try:
            results = await self.run(
                [(pending[position][0], pending[position][1]) for position in positions], at=at
            )
        except Exception as error:
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():  # a caller that was cancelled has gone
                future.set_result(result)

    async def _run_singles(
        self,
        requests: Sequence[tuple[int, str]],
        results: list[QueryResult | None],
        at: datetime | None,
    ) -> None:
        by_query: dict[str, list[int]] = defaultdict(list)
        for index, query in requests:
            by_query[query].append(index)
        queries = list(by_query)
        answers = await asyncio.gather(
            *(self.provider.query_series(query, at=at) for query in queries)
        )
        for query, answer in zip(queries, answers, strict=True):
            for index in by_query[query]:
                results[index] = answer

    async def _run_batch(
        self,
        group: _Group,
        revisions: list[str],
        results: list[QueryResult | None],
        at: datetime | None,
        key: GroupKey,
    ) -> None:
        members = [member for revision in revisions for member in group.members.get(revision, [])]
        if len(revisions) == 1:
            await self._run_singles(members, results, at)
            return
        values = dataclasses.replace(group.values, revision=revision_regex(revisions))
        answer = await self.provider.query_series(render(group.batched, values), at=at)
        if answer.error is not None:
            if answer.rejected:
                await self._run_singles(members, results, at)
                return
            for index, _ in members:
                results[index] = answer
            return
        split = _split(answer.series, revisions)
        if split is None:
            await self._run_singles(members, results, at)
            return
        if at is not None:
            self._keep(key, at, split)
        for revision in revisions:
            own = QueryResult(series=split[revision])
            for index, _ in group.members.get(revision, []):
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
