"""Each ModelDeployment's own series on /metrics, held as one small record per object.

Why not prometheus-client's labelled Gauges: every label set is a child object with
its own lock and value, and a scrape turns every child into a sample. With a phase
and an analysis outcome one-hot (a series per possible value, 0 for all but one),
that was 16 series per object: at 10,000 objects 160,000 lines, 13 MB, 100 MiB of
memory and 1.6 to 3 s of the GIL for each scrape (docs/scale.md). Here a pass stores
one frozen record per object (and nothing when it is unchanged, which is every pass
at rest), and a scrape turns records into samples.

Enumerations (phase, the evaluation's outcome, a metric's verdict) are info-style,
as Argo Rollouts' ``rollout_info{phase}`` is: one series, value 1, labelled with the
current value. An alert on ``modelcanary_phase{phase="RolledBack"} == 1`` reads the
same as before; only the 0 series are gone.

Each family is its own collector, so ``/metrics?name[]=modelcanary_phase`` (the scale
bench's restart poll) builds that family alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from modelcanary.api.modeldeployment import ModelDeploymentStatus

ObjectKey = tuple[str, str]
"""(namespace, name) of a ModelDeployment."""


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One analysis metric's latest result, as its series show it."""

    metric: str
    verdict: str
    values: tuple[tuple[str, float], ...]
    """(revision_role, value) for the candidate and stable, where known."""
    evidence: tuple[tuple[str, float], ...]
    """(kind, value): the e-value and the threshold, where known."""
    effect: tuple[tuple[str, float], ...]
    """(bound, value): the estimate and the interval's ends, where known."""


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """What the series of one ModelDeployment say."""

    phase: str
    canary_weight: float
    outcome: str | None
    """The latest evaluation's outcome; None while no canary is judged (no series)."""
    rows: tuple[MetricRow, ...]
    """The latest canary's metrics, kept at rest until the next canary has results."""
    drill_last_success: float | None


def _known(pairs: Iterable[tuple[str, float | None]]) -> tuple[tuple[str, float], ...]:
    return tuple((label, value) for label, value in pairs if value is not None)


def record_of(status: ModelDeploymentStatus, before: ObjectRecord | None) -> ObjectRecord:
    """The record for ``status``; ``before`` lends its rows when no canary has results."""
    rows_by_metric: dict[str, MetricRow] = {}
    for result in status.analysis.results if status.analysis else []:
        # One series per metric: a later row of the same metric wins, as a gauge's set did.
        rows_by_metric[result.metric] = MetricRow(
            metric=result.metric,
            verdict=result.verdict.value,
            values=_known((("candidate", result.candidate), ("stable", result.stable))),
            evidence=_known((("e-value", result.e_value), ("threshold", result.threshold))),
            effect=_known(
                (
                    ("estimate", result.effect),
                    ("low", result.effect_low),
                    ("high", result.effect_high),
                )
            ),
        )
    rows = tuple(rows_by_metric.values())
    if not rows and before is not None:
        rows = before.rows
    # From the recorded history, so the figure survives an operator restart.
    succeeded = [d.finished_at for d in status.drill_history if d.succeeded and d.finished_at]
    last_success = max(succeeded).timestamp() if succeeded else None
    if last_success is None and before is not None:
        last_success = before.drill_last_success
    return ObjectRecord(
        phase=status.phase.value,
        canary_weight=float(status.canary_weight),
        outcome=status.analysis.outcome if status.analysis else None,
        rows=rows,
        drill_last_success=last_success,
    )


class ObjectRecords:
    """The records of every ModelDeployment this process has passed, by (namespace, name).

    Written by passes on the event loop, read by the metrics server's thread: the lock
    makes a scrape see a whole dict, copied (about 0.1 ms at 10,000 objects).
    """

    def __init__(self) -> None:
        self._records: dict[ObjectKey, ObjectRecord] = {}
        self._lock = threading.Lock()

    def record(self, key: ObjectKey, status: ModelDeploymentStatus) -> None:
        before = self._records.get(key)
        record = record_of(status, before)
        if record != before:
            with self._lock:
                self._records[key] = record

    def forget(self, key: ObjectKey) -> None:
        with self._lock:
            self._records.pop(key, None)

    def snapshot(self) -> list[tuple[ObjectKey, ObjectRecord]]:
        with self._lock:
            return list(self._records.items())


Samples = Callable[[ObjectRecord], Iterator[tuple[list[str], float]]]
"""A family's samples of one record: its own label values (after namespace, name) and value."""


class ObjectFamily(Collector):
    """One gauge family over every record."""

    def __init__(
        self,
        records: ObjectRecords,
        name: str,
        documentation: str,
        labels: list[str],
        samples: Samples,
    ) -> None:
        self._records = records
        self._name = name
        self._documentation = documentation
        self._labels = ["namespace", "name", *labels]
        self._samples = samples

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self._name, self._documentation, labels=self._labels)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labels)
        for (namespace, name), record in self._records.snapshot():
            for labels, value in self._samples(record):
                family.add_metric([namespace, name, *labels], value)
        return [family]


def _phase(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    yield [record.phase], 1.0


def _weight(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    yield [], record.canary_weight


def _outcome(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    if record.outcome is not None:
        yield [record.outcome], 1.0


def _values(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    for row in record.rows:
        for role, value in row.values:
            yield [row.metric, role], value


def _verdicts(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    for row in record.rows:
        yield [row.metric, row.verdict], 1.0


def _evidence(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    for row in record.rows:
        for kind, value in row.evidence:
            yield [row.metric, kind], value


def _effect(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    for row in record.rows:
        for bound, value in row.effect:
            yield [row.metric, bound], value


def _drill_last_success(record: ObjectRecord) -> Iterator[tuple[list[str], float]]:
    if record.drill_last_success is not None:
        yield [], record.drill_last_success


def _families() -> tuple[tuple[str, str, list[str], Samples], ...]:
    """Each family: its name, its help, its labels after namespace and name, its samples."""
    return (
        (
            "modelcanary_phase",
            "1, labelled with the ModelDeployment's current phase (one series per object).",
            ["phase"],
            _phase,
        ),
        (
            "modelcanary_canary_weight_percent",
            "Percent of traffic the router confirmed for the candidate.",
            [],
            _weight,
        ),
        (
            "modelcanary_analysis_value",
            "The latest value of each analysis metric, for the candidate and for stable.",
            ["metric", "revision_role"],
            _values,
        ),
        (
            "modelcanary_analysis_verdict",
            "1, labelled with each analysis metric's latest verdict (Pass, Fail, NoData, "
            "Error, Outage).",
            ["metric", "verdict"],
            _verdicts,
        ),
        (
            "modelcanary_analysis_outcome",
            "1, labelled with the latest evaluation's outcome (Pass, Fail, NoData, Error, "
            "Outage); no series while no canary is judged. Error is a query that waiting "
            "will not fix.",
            ["outcome"],
            _outcome,
        ),
        (
            "modelcanary_analysis_evidence",
            "A count metric's evidence against the candidate (its e-value) and the e-value "
            "at which it fails.",
            ["metric", "kind"],
            _evidence,
        ),
        (
            "modelcanary_analysis_effect",
            "A count metric's estimated odds ratio, candidate to stable, and its interval's ends.",
            ["metric", "bound"],
            _effect,
        ),
        (
            "modelcanary_drill_last_success_timestamp",
            "Unix time at which the latest successful rollback drill of the ModelDeployment ended.",
            [],
            _drill_last_success,
        ),
    )


def register(records: ObjectRecords, registry: CollectorRegistry) -> None:
    for name, documentation, labels, samples in _families():
        registry.register(ObjectFamily(records, name, documentation, labels, samples))
