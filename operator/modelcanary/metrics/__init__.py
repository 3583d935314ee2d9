"""Metric providers: where a PromQL query meets the network.

The interface is Flagger's, and deliberately tiny: run one query and get one
:class:`~modelcanary.analysis.samples.Sample`, or ask whether the backend is
online. A provider never raises for a query problem. A bad query, a timeout and
an unreachable server all come back as failed Samples, because the analysis
policies decide what a failure means (never a failure of the candidate). An
exception here would skip them. The provider is also where the two kinds of
failure are told apart (:class:`~modelcanary.analysis.failures.Failure`): only
it sees the HTTP status and the shape of the answer, so only it can say whether
Prometheus rejected the query (an error, which waiting will not fix) or could
not answer (an outage, which it may).

Batching needs one thing more than a number, the label set of each series, so
that one grouped query can be split back per revision. That is the
:class:`SeriesProvider` extension, and :meth:`QueryResult.sample` is the single
place where series become a Sample, so a batched answer and a single one are
reduced by the same rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from modelcanary.analysis.counts import Answer, Series
from modelcanary.analysis.failures import Failure
from modelcanary.analysis.queries import format_labels, sample_of
from modelcanary.analysis.samples import Sample


class MetricProvider(Protocol):
    async def run_query(self, query: str) -> Sample:
        """The query's single number, no data, or an error. Never raises for query problems."""
        ...

    async def is_online(self) -> bool:
        """Whether queries can run at all right now."""
        ...


@dataclass(frozen=True)
class QueryResult:
    """Every series a query returned, or why it returned nothing usable."""

    series: tuple[Series, ...] = ()
    error: str | None = None
    rejected: bool = False
    """Prometheus refused this query itself (bad PromQL, an execution limit), as opposed to
    being unreachable or slow. Only then can a differently shaped query do better."""
    kind: Failure = Failure.OUTAGE
    """When ``error`` is set: an outage (waiting may fix it) or an error (it will not).
    A rejected query is always an error."""

    @classmethod
    def failed(
        cls, reason: str, *, rejected: bool = False, kind: Failure = Failure.OUTAGE
    ) -> QueryResult:
        return cls(error=reason, rejected=rejected, kind=Failure.ERROR if rejected else kind)

    def answer(self) -> Answer:
        """The result as the analysis core reads it."""
        return Answer(series=self.series, error=self.error, kind=self.kind)

    def sample(self) -> Sample:
        """One series is a value; none is no data; several is an error, since a
        bound can only be held against one number."""
        return sample_of(self.answer())


class SeriesProvider(MetricProvider, Protocol):
    async def query_series(self, query: str, *, at: datetime | None = None) -> QueryResult:
        """Every series of the query's answer, evaluated at ``at`` (None: when Prometheus
        receives it). Never raises for query problems.

        ``at`` lets every look of one instant of the look grid ask the same question
        whenever its pass runs, so that one answer can serve them all (issue 15).
        """
        ...


async def run_queries(provider: MetricProvider, queries: Sequence[str]) -> list[Sample]:
    """Run ``queries`` concurrently; the Samples come back in the same order."""
    return list(await asyncio.gather(*(provider.run_query(query) for query in queries)))


__all__ = [
    "Failure",
    "MetricProvider",
    "QueryResult",
    "Series",
    "SeriesProvider",
    "format_labels",
    "run_queries",
]
