"""One evaluation with count metrics: precedence, the alpha split, the query plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelcanary.analysis import queries
from modelcanary.analysis.counts import Answer, Series
from modelcanary.analysis.failures import Failure
from modelcanary.analysis.queries import QueryKey
from modelcanary.analysis.samples import AnalysisObservation, CountArms, MetricObservation, Sample
from modelcanary.analysis.verdicts import Outcome, evaluate
from modelcanary.api.analysis import Analysis
from modelcanary.api.judging import Verdict
from modelcanary.promql.templates import TemplateValues
from tests.unit.analysis.counters import Q, errors, histogram

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def analysis(*metrics: dict[str, Any], **fields: Any) -> Analysis:
    return Analysis.model_validate(
        {"prometheus": {"address": "http://p:9090"}, "metrics": list(metrics), **fields}
    )


ERRORS = {"name": "errors", "errors": {"failed": Q, "total": Q}}
LATENCY = {"name": "latency", "latency": {"buckets": Q}}
P99 = {"name": "p99", "query": Q, "max": 1.0, "maxRelativeToStable": 2.0}


def failing_errors() -> tuple[list[Any], CountArms]:
    """Evidence after one look, and a second look in which the candidate fails badly."""
    spec = analysis(ERRORS)
    first = evaluate(
        spec,
        AnalysisObservation(
            NOW, True, counts={"errors": CountArms(errors({}, {}), errors({"": 0}, {"": 1000}))}
        ),
    )
    bad = CountArms(errors({"": 40}, {"": 50}), errors({"": 0}, {"": 1450}))
    return list(first.judgements), bad


def test_alpha_is_split_between_count_metrics() -> None:
    spec = analysis(ERRORS, LATENCY, alpha=0.02)
    arms = CountArms(errors({}, {}), errors({"": 0}, {"": 10}))
    observation = AnalysisObservation(NOW, True, counts={"errors": arms})
    result = next(r for r in evaluate(spec, observation).results if r.metric == "errors")
    assert result.threshold == pytest.approx(1 / 0.01)


def test_a_count_failure_is_definitive_even_beside_another_metrics_query_error() -> None:
    judgements, bad = failing_errors()
    spec = analysis(ERRORS, P99)
    observation = AnalysisObservation(
        NOW,
        True,
        metrics=(MetricObservation("p99", Sample.failed("timeout"), Sample.of(0.1)),),
        counts={"errors": bad},
    )
    evaluation = evaluate(spec, observation, judgements)
    assert evaluation.outcome is Outcome.FAIL
    assert evaluation.definitive
    assert evaluation.reason.startswith("errors: candidate 80.0% failed")


def test_counts_that_are_not_counters_are_the_error_outcome_not_an_outage() -> None:
    """The count judge's Error (an answer that cannot be read as counters) and a query
    Prometheus rejected are one notion: an Error outcome, which waiting will not fix."""
    spec = analysis(ERRORS)
    rates = CountArms(errors({"": 0.5}, {"": 12.25}), errors({"": 0}, {"": 10}))
    evaluation = evaluate(spec, AnalysisObservation(NOW, True, counts={"errors": rates}))
    assert evaluation.outcome is Outcome.ERROR
    assert "raw counters" in evaluation.reason
    timed_out = {"failed": Answer.failed("timed out"), "total": Answer.failed("timed out")}
    slow = CountArms(timed_out, errors({"": 0}, {"": 10}))
    outage = evaluate(spec, AnalysisObservation(NOW, True, counts={"errors": slow}))
    assert outage.outcome is Outcome.OUTAGE


def test_too_few_samples_hold_a_pass_but_not_a_failure() -> None:
    judgements, bad = failing_errors()
    guard = {"minSamples": {"query": Q, "value": 1000}}
    spec = analysis(ERRORS, **guard)
    starved = AnalysisObservation(NOW, True, samples=Sample.of(50), counts={"errors": bad})
    assert evaluate(spec, starved, judgements).outcome is Outcome.FAIL
    fine = CountArms(errors({"": 0}, {"": 50}), errors({"": 0}, {"": 1450}))
    held = evaluate(
        spec,
        AnalysisObservation(NOW, True, samples=Sample.of(50), counts={"errors": fine}),
        judgements,
    )
    assert held.outcome is Outcome.NO_DATA
    row = next(r for r in held.results if r.metric == "errors")
    assert row.verdict is Verdict.NO_DATA
    assert row.message.startswith("too little traffic: 50 < 1000 samples; no evidence of harm")


def test_without_count_metrics_their_evidence_is_kept_as_it_was() -> None:
    judgements, _bad = failing_errors()
    spec = analysis(ERRORS, P99)
    observation = AnalysisObservation(
        NOW, True, metrics=(MetricObservation("p99", Sample.of(0.1), Sample.of(0.1)),)
    )
    evaluation = evaluate(spec, observation, judgements, count_metrics=False)
    assert evaluation.outcome is Outcome.PASS
    assert list(evaluation.judgements) == judgements
    assert [r.metric for r in evaluation.results] == ["p99"]


def test_no_stable_revision_is_no_data_for_a_count_metric() -> None:
    spec = analysis(ERRORS)
    observation = AnalysisObservation(
        NOW, True, counts={"errors": CountArms(errors({"": 0}, {"": 10}), None)}
    )
    row = evaluate(spec, observation).results[0]
    assert (row.verdict, row.message) == (Verdict.NO_DATA, "no stable revision to compare with")


def values(revision: str) -> TemplateValues:
    return TemplateValues(namespace="ml", name="fraud", revision=revision, model="m", version="1")


def test_the_plan_names_every_query_by_metric_role_and_part() -> None:
    spec = analysis(
        ERRORS,
        LATENCY,
        P99,
        {"name": "abs", "query": Q, "max": 1},
        minSamples={"query": Q, "value": 5},
    )
    plan = queries.plan(spec, values("cand"), values("stab"))
    assert set(plan) == {
        QueryKey("errors", "candidate", "failed"),
        QueryKey("errors", "candidate", "total"),
        QueryKey("errors", "stable", "failed"),
        QueryKey("errors", "stable", "total"),
        QueryKey("latency", "candidate", "buckets"),
        QueryKey("latency", "stable", "buckets"),
        QueryKey("p99", "candidate", "query"),
        QueryKey("p99", "stable", "query"),
        QueryKey("abs", "candidate", "query"),
        QueryKey(queries.MIN_SAMPLES, "candidate", "samples"),
    }
    assert plan[QueryKey("latency", "stable", "buckets")][1].revision == "stab"
    live = queries.plan(spec, values("cand"), values("stab"), count_metrics=False)
    assert {key.metric for key in live} == {"p99", "abs", queries.MIN_SAMPLES}


def test_answers_go_back_to_their_metric_by_key() -> None:
    spec = analysis(ERRORS, P99)
    one = Answer((Series({}, 0.5),))
    answers = {
        QueryKey("p99", "candidate", "query"): one,
        QueryKey("p99", "stable", "query"): Answer((Series({}, 0.25),)),
        QueryKey("errors", "candidate", "failed"): Answer(),
        QueryKey("errors", "candidate", "total"): Answer((Series({}, 9.0),)),
        QueryKey("errors", "stable", "failed"): Answer(),
        QueryKey("errors", "stable", "total"): Answer((Series({}, 90.0),)),
    }
    observation = queries.observation(spec, NOW, answers, with_stable=True)
    assert observation.metrics == (MetricObservation("p99", Sample.of(0.5), Sample.of(0.25)),)
    arms = observation.counts["errors"]
    assert arms.stable is not None
    assert arms.stable["total"].series[0].value == 90


def test_a_threshold_query_with_several_series_is_an_error_that_says_how_to_fix_it() -> None:
    answer = Answer((Series({"code": "500"}, 1.0), Series({"code": "503"}, 2.0)))
    sample = queries.sample_of(answer)
    assert sample.error is not None
    assert 'returned 2: {code="500"}, {code="503"}; aggregate it' in sample.error
    assert sample.kind is Failure.ERROR  # the same query returns the same series again


def test_a_connection_problem_fails_every_query_with_its_reason() -> None:
    spec = analysis(ERRORS, P99)
    observation = queries.failed_observation(spec, NOW, "secret prom-token not found")
    evaluation = evaluate(spec, observation)
    # An outage, not an error: a Secret created late ends it without a spec change.
    assert evaluation.outcome is Outcome.OUTAGE
    assert all("secret prom-token not found" in r.message for r in evaluation.results)


def test_a_weight_change_closes_a_latency_interval_before_its_ten_seconds() -> None:
    spec = analysis({"name": "latency", "latency": {"buckets": Q}})
    stable = [0.002 + 0.003 * i / 499 for i in range(500)]
    first = AnalysisObservation(
        NOW, True, counts={"latency": CountArms(histogram({"": []}), histogram({"": stable}))}
    )
    judgements = list(evaluate(spec, first).judgements)
    later = CountArms(histogram({"": [0.004] * 10}), histogram({"": stable + [0.003] * 90}))
    second = AnalysisObservation(NOW + timedelta(seconds=1), True, counts={"latency": later})

    def compared(boundary: bool) -> float:
        state = evaluate(spec, second, judgements, boundary=boundary).judgements[0]
        return max(e.judged[1] if e.judged else 0.0 for e in state.slices[0].events)

    assert compared(boundary=False) == 0  # still gathering its 10 s
    assert compared(boundary=True) == 10  # the new weight ends the interval
