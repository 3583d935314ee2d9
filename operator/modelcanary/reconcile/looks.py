"""A look at Prometheus for one canary: the analysis queries of one instant.

The queries come from the pure ``analysis.queries`` (what to ask for the
candidate and stable, by metric name); this edge finds the Prometheus a spec
names, asks whether it is online, and sends the queries through the batcher
that every ModelDeployment sharing that Prometheus shares, so that N canaries
judged at one instant cost O(query shapes) requests, not O(N). An unreachable
Prometheus is an observation (``prometheus_online=False``, which holds the
rollout), never an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import kr8s.asyncio

from modelcanary.analysis import queries
from modelcanary.analysis.samples import AnalysisObservation
from modelcanary.api.analysis import PrometheusConnection
from modelcanary.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from modelcanary.metrics.batching import QueryBatcher
from modelcanary.metrics.connection import ConnectionConfigError
from modelcanary.metrics.prometheus import PrometheusProvider
from modelcanary.promql.templates import TemplateValues

ProviderFactory = Callable[
    [kr8s.asyncio.Api, PrometheusConnection, str], Awaitable[PrometheusProvider]
]
"""Finds the Prometheus to query for ``spec.analysis.prometheus`` (``metrics.provider_for``)."""


class Looks:
    """Runs the analysis queries of every ModelDeployment one operator drives."""

    def __init__(self, api: kr8s.asyncio.Api, prometheus: ProviderFactory) -> None:
        self._api = api
        self._prometheus = prometheus
        self._batchers: dict[int, QueryBatcher] = {}

    def _batcher(self, provider: PrometheusProvider) -> QueryBatcher:
        # Providers are cached per Prometheus, so one batcher per provider lets
        # every ModelDeployment that shares a Prometheus share its batches.
        batcher = self._batchers.get(id(provider))
        if batcher is None or batcher.provider is not provider:
            batcher = self._batchers[id(provider)] = QueryBatcher(provider)
        return batcher

    async def observe(
        self,
        namespace: str,
        name: str,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        now: datetime,
        *,
        candidate_revision: str,
        stable_revision: str | None,
        count_metrics: bool = True,
        at: datetime | None = None,
    ) -> AnalysisObservation:
        """Run the analysis queries for ``candidate_revision`` and, where needed, stable.

        ``at`` is the look grid's instant to evaluate them at (the observation is of
        that instant); None evaluates them now. Looks of one instant share answers.
        """
        analysis = spec.analysis
        assert analysis is not None
        evaluated = at or now
        try:
            provider = await self._prometheus(self._api, analysis.prometheus, namespace)
        except ConnectionConfigError as error:
            return queries.failed_observation(analysis, evaluated, str(error))
        batcher = self._batcher(provider)
        if not await batcher.is_online(at):
            return AnalysisObservation(at=evaluated, prometheus_online=False)
        candidate = _values(namespace, name, candidate_revision, spec, status)
        stable = (
            _values(namespace, name, stable_revision, spec, status) if stable_revision else None
        )
        wanted = queries.plan(analysis, candidate, stable, count_metrics=count_metrics)
        # Every query at once: concurrent ModelDeployments' queries share batches.
        keys = list(wanted)
        results = await asyncio.gather(*(batcher.query(*wanted[key], at=at) for key in keys))
        answers = {key: result.answer() for key, result in zip(keys, results, strict=True)}
        return queries.observation(analysis, evaluated, answers, with_stable=stable is not None)


def _values(
    namespace: str,
    name: str,
    revision: str,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
) -> TemplateValues:
    """The template values of ``revision``: its model from the history, if it is not the
    spec's own."""
    model = spec.predictor.model
    entry = next((e for e in status.history if e.revision == revision), None)
    if entry is not None and revision != spec.predictor.revision():
        model = entry.predictor.model
    return TemplateValues(
        namespace=namespace, name=name, revision=revision, model=model.name, version=model.version
    )
