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
Passes run concurrently, so a request may come while the query that will answer
it is still in flight: a batched query at an instant is registered, for each
revision it asks, as a future of its outcome, and a concurrent request for one
of those revisions at that instant waits on it instead of asking again (an
outage is its answer too; a rejected or distrusted batch sends it to ask singly
itself). The online check is shared per instant too.

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

Split = dict[str, tuple[Series, ...]]
"""A soundly split batched answer: revision -> its series."""
Shared = Split | QueryResult | None
"""A batched query's outcome for the requests waiting on it: its split answer, the
outage every asker gets, or None (rejected, distrusted, given up: ask yourself)."""


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
        self._answered: OrderedDict[tuple[GroupKey, datetime], Split] = OrderedDict()
        self._in_flight: dict[tuple[GroupKey, datetime], dict[str, asyncio.Future[Shared]]] = {}
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
        asked: list[tuple[GroupKey, list[str], asyncio.Future[Shared]]] = []
        for key, group in groups.items():
            revisions, waits = self._to_ask(key, group, at, results)
            for revision, waited in waits.items():
                jobs.append(self._wait_for(waited, revision, group.members[revision], results, at))
            for start in range(0, len(revisions), self.max_revisions):
                chunk = revisions[start : start + self.max_revisions]
                shared = self._share(key, at, chunk)
                if shared is not None:
                    asked.append((key, chunk, shared))
                jobs.append(self._run_batch(group, chunk, results, at, key=key, shared=shared))
        try:
            await asyncio.gather(*jobs)
        finally:  # a batch that never ran (cancelled) must not keep its waiters waiting
            for key, chunk, shared in asked:
                self._settle(key, at, chunk, shared, None)
        return [
            result if result is not None else QueryResult.failed("no result (internal error)")
            for result in results
        ]

    def _to_ask(
        self, key: GroupKey, group: _Group, at: datetime | None, results: list[QueryResult | None]
    ) -> tuple[list[str], dict[str, asyncio.Future[Shared]]]:
        """The revisions to ask for in ``group``'s batched query, and those to wait for
        (a query in flight at ``at`` asks for them); those already answered at ``at``
        get their kept answer. The requests' own revisions come first, then those
        asked at the previous instant, so the first chunk serves the requests."""
        if at is None:
            return sorted(group.members), {}
        kept = self._answered.get((key, at), {})
        for revision, members in group.members.items():
            if revision in kept:
                for index, _ in members:
                    results[index] = QueryResult(series=kept[revision])
        in_flight = self._in_flight.get((key, at), {})
        waits = {r: in_flight[r] for r in group.members if r not in kept and r in in_flight}
        own = sorted(r for r in group.members if r not in kept and r not in in_flight)
        extra: list[str] = []
        last_at, last_asked = self._last_asked.get(key, (at, set()))
        if last_at < at:  # the first request at a new instant
            extra = sorted(last_asked - kept.keys() - in_flight.keys() - set(own))
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
        return (own + extra if own else []), waits

    def _share(
        self, key: GroupKey, at: datetime | None, revisions: list[str]
    ) -> asyncio.Future[Shared] | None:
        """The outcome of the batched query about to ask for ``revisions`` at ``at``,
        registered so that concurrent requests for them wait on it (None: no instant)."""
        if at is None:
            return None
        shared: asyncio.Future[Shared] = asyncio.get_running_loop().create_future()
        in_flight = self._in_flight.setdefault((key, at), {})
        for revision in revisions:
            in_flight[revision] = shared
        return shared

    def _settle(
        self,
        key: GroupKey,
        at: datetime | None,
        revisions: list[str],
        shared: asyncio.Future[Shared] | None,
        outcome: Shared,
    ) -> None:
        """Gives the waiters ``outcome`` (unless already given) and unregisters the query:
        from now on its answer, if kept, serves from :attr:`_answered`."""
        if shared is None or at is None:
            return
        if not shared.done():
            shared.set_result(outcome)
        in_flight = self._in_flight.get((key, at), {})
        for revision in revisions:
            if in_flight.get(revision) is shared:
                del in_flight[revision]
        if not in_flight:
            self._in_flight.pop((key, at), None)

    async def _wait_for(
        self,
        shared: asyncio.Future[Shared],
        revision: str,
        members: list[tuple[int, str]],
        results: list[QueryResult | None],
        at: datetime | None,
    ) -> None:
        """Serves ``members``, the requests for ``revision``, from a query in flight."""
        outcome = await asyncio.shield(shared)  # a waiter that leaves cancels no one else
        if isinstance(outcome, QueryResult):
            answer = outcome
        elif outcome is not None:
            answer = QueryResult(series=outcome[revision])
        else:
            await self._run_singles(members, results, at)
            return
        for index, _ in members:
            results[index] = answer

    def _keep(self, key: GroupKey, at: datetime, split: Split) -> None:
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
        *,
        key: GroupKey,
        shared: asyncio.Future[Shared] | None,
    ) -> None:
        """Asks for ``revisions`` in one batched query; its outcome settles ``shared``
        as soon as it is known, so that concurrent requests waiting on it go on."""
        members = [member for revision in revisions for member in group.members.get(revision, [])]
        if len(revisions) == 1:
            self._settle(key, at, revisions, shared, None)  # a single answer is not kept
            await self._run_singles(members, results, at)
            return
        values = dataclasses.replace(group.values, revision=revision_regex(revisions))
        answer = await self.provider.query_series(render(group.batched, values), at=at)
        if answer.error is not None:
            if answer.rejected:
                self._settle(key, at, revisions, shared, None)
                await self._run_singles(members, results, at)
                return
            self._settle(key, at, revisions, shared, answer)
            for index, _ in members:
                results[index] = answer
            return
        split = _split(answer.series, revisions)
        if split is None:
            self._settle(key, at, revisions, shared, None)
            await self._run_singles(members, results, at)
            return
        if at is not None:
            self._keep(key, at, split)
        self._settle(key, at, revisions, shared, split)
        for revision in revisions:
            own = QueryResult(series=split[revision])
            for index, _ in group.members.get(revision, []):
                results[index] = own


def _split(series: Sequence[Series], revisions: Sequence[str]) -> Split | None:
    """The batched answer per revision, or None if any series belongs to no requested one."""
    found: dict[str, list[Series]] = {revision: [] for revision in revisions}
    for one in series:
        revision = one.labels.get(REVISION)
        if revision not in found:
            return None
        found[revision].append(one)
    return {revision: tuple(found[revision]) for revision in revisions}
