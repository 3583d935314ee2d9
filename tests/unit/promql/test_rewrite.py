"""Which query shapes batch, how they are rewritten, and why the others are not.

The tests pin the exact batched text for the shapes that batch, and the reason
for a sample of shapes that must not. tests/unit/metrics/test_batching.py runs the
rewritten queries through the batcher, and
tests/integration/test_prometheus_provider.py proves against the real Prometheus
that batched answers equal single ones.
"""

from __future__ import annotations

import re

import pytest

from modelcanary.promql.rewrite import is_batchable_revision, revision_regex, rewrite

pytestmark = pytest.mark.unit

ERROR_RATE = (
    'sum(rate(model_requests_total{namespace="{{namespace}}",revision="{{revision}}",'
    'code=~"5.."}[1m]))\n/ sum(rate(model_requests_total{namespace="{{namespace}}",'
    'revision="{{revision}}"}[1m]))'
)
P99 = (
    "histogram_quantile(0.99, sum by (le) "
    '(rate(model_request_duration_seconds_bucket{revision="{{revision}}"}[1m])))'
)


@pytest.mark.parametrize(
    ("template", "batched"),
    [
        pytest.param(
            ERROR_RATE,
            'sum by (revision)(rate(model_requests_total{namespace="{{namespace}}",'
            'revision=~"{{revision}}",code=~"5.."}[1m]))\n'
            '/ sum by (revision)(rate(model_requests_total{namespace="{{namespace}}",'
            'revision=~"{{revision}}"}[1m]))',
            id="ratio-of-sums",
        ),
        pytest.param(
            P99,
            "histogram_quantile(0.99, sum by (le, revision) "
            '(rate(model_request_duration_seconds_bucket{revision=~"{{revision}}"}[1m])))',
            id="histogram-quantile",
        ),
        pytest.param(
            'sum(increase(model_requests_total{revision="{{revision}}"}[1m]))',
            'sum by (revision)(increase(model_requests_total{revision=~"{{revision}}"}[1m]))',
            id="min-samples",
        ),
        pytest.param(
            'sum(rate(x{revision="{{revision}}"}[1m])) by (code)',
            'sum(rate(x{revision=~"{{revision}}"}[1m])) by (code, revision)',
            id="trailing-by",
        ),
        pytest.param(
            'avg by () (x{revision="{{revision}}"})',
            'avg by (revision) (x{revision=~"{{revision}}"})',
            id="empty-by",
        ),
        pytest.param(
            'max by (revision) (x{revision="{{revision}}"})',
            'max by (revision) (x{revision=~"{{revision}}"})',
            id="already-by-revision",
        ),
        pytest.param(
            'min without (instance) (x{revision="{{revision}}"})',
            'min without (instance) (x{revision=~"{{revision}}"})',
            id="without-keeps-revision",
        ),
        pytest.param(
            'COUNT(x{revision="{{ revision }}"}) * 100',
            'COUNT by (revision)(x{revision=~"{{ revision }}"}) * 100',
            id="keyword-case-and-scalar",
        ),
        pytest.param(
            'x{revision="{{revision}}"}',
            'x{revision=~"{{revision}}"}',
            id="bare-selector",
        ),
        pytest.param(
            'max_over_time(x{job="a",revision="{{revision}}"}[5m] offset 1m) > 0.5',
            'max_over_time(x{job="a",revision=~"{{revision}}"}[5m] offset 1m) > 0.5',
            id="offset-and-comparison",
        ),
        pytest.param(
            'sum(rate(a{revision="{{revision}}"}[1m])) / on() '
            'sum(rate(b{revision="{{revision}}"}[1m]))',
            'sum by (revision)(rate(a{revision=~"{{revision}}"}[1m])) / on(revision) '
            'sum by (revision)(rate(b{revision=~"{{revision}}"}[1m]))',
            id="on-empty",
        ),
        pytest.param(
            'sum by (code) (a{revision="{{revision}}"}) / on(code) '
            'sum by (code) (b{revision="{{revision}}"})',
            'sum by (code, revision) (a{revision=~"{{revision}}"}) / on(code, revision) '
            'sum by (code, revision) (b{revision=~"{{revision}}"})',
            id="on-labels",
        ),
        pytest.param(
            'rate(a{revision="{{revision}}"}[1m]) / ignoring(code) '
            'rate(b{revision="{{revision}}"}[1m])',
            'rate(a{revision=~"{{revision}}"}[1m]) / ignoring(code) '
            'rate(b{revision=~"{{revision}}"}[1m])',
            id="ignoring",
        ),
        pytest.param(
            'sum(a{revision="{{revision}}"}) and sum(b{revision="{{revision}}"}) > bool 0',
            'sum by (revision)(a{revision=~"{{revision}}"}) and '
            'sum by (revision)(b{revision=~"{{revision}}"}) > bool 0',
            id="set-operator",
        ),
        pytest.param(
            'clamp_max(round(-sum(a{revision="{{revision}}"}) ^ 2, 0.1), 10)',
            'clamp_max(round(-sum by (revision)(a{revision=~"{{revision}}"}) ^ 2, 0.1), 10)',
            id="series-functions",
        ),
        pytest.param(
            "quantile_over_time(0.9, x{revision='{{revision}}'}[5m]) # p90 of {{revision}}",
            "quantile_over_time(0.9, x{revision=~'{{revision}}'}[5m]) # p90 of {{revision}}",
            id="single-quotes-and-comment",
        ),
    ],
)
def test_batchable_shapes_are_rewritten(template: str, batched: str) -> None:
    plan = rewrite(template)
    assert plan.reason is None
    assert plan.batched == batched


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        pytest.param(
            'sum(rate(x{revision="{{revision}}"}[1m])) / sum(rate(x[1m]))',
            "without exactly one matcher",
            id="selector-without-revision",
        ),
        pytest.param(
            'x{revision="{{revision}}", revision!="x"}',
            "without exactly one matcher",
            id="two-revision-matchers",
        ),
        pytest.param('x{revision=~"{{revision}}"}', "other than", id="regex-revision"),
        pytest.param('x{revision="{{revision}}-b"}', "other than", id="revision-with-suffix"),
        pytest.param('x{revision="abc"}', "other than", id="literal-revision"),
        pytest.param(
            'x{revision="{{revision}}", pod=~".*{{revision}}.*"}',
            "elsewhere",
            id="revision-in-another-matcher",
        ),
        pytest.param(
            'sum(x{revision="{{revision}}"}) or vector(0)', "vector(scalar)", id="or-vector"
        ),
        pytest.param(
            'scalar(sum(x{revision="{{revision}}"}))', "scalar(vector)", id="scalar-function"
        ),
        pytest.param(
            'absent(x{revision="{{revision}}"})', "absent(vector)", id="absent-makes-labels"
        ),
        pytest.param(
            'label_replace(x{revision="{{revision}}"}, "revision", "x", "", "")',
            "label_replace",
            id="label-replace",
        ),
        pytest.param('topk(1, x{revision="{{revision}}"})', "topk", id="topk"),
        pytest.param('stddev(x{revision="{{revision}}"})', "stddev", id="stddev"),
        pytest.param(
            'sum without (revision) (x{revision="{{revision}}"})',
            "without(revision)",
            id="without-revision",
        ),
        pytest.param(
            'sum by (revision) (a{revision="{{revision}}"}) / sum(b{revision="{{revision}}"})',
            "differ in whether they keep the revision label",
            id="mixed-revision-label",
        ),
        pytest.param(
            'a{revision="{{revision}}"} / on() sum(b{revision="{{revision}}"})',
            "differ in whether they keep the revision label",
            id="series-against-sum",
        ),
        pytest.param(
            'a{revision="{{revision}}"} / ignoring(revision) b{revision="{{revision}}"}',
            "ignoring(revision)",
            id="ignoring-revision",
        ),
        pytest.param(
            'a{revision="{{revision}}"} * on(instance) group_left b{revision="{{revision}}"}',
            "group_left",
            id="group-left",
        ),
        pytest.param(
            'max_over_time(sum(x{revision="{{revision}}"})[5m:1m])',
            "subquer",
            id="subquery",
        ),
        pytest.param('x{revision="{{revision}}"} @ 100', "@ modifier", id="at-modifier"),
        pytest.param('x{revision="{{revision}}"}[5m]', "range vector", id="range-result"),
        pytest.param("sum(rate(x[1m]))", "without exactly one matcher", id="no-revision-at-all"),
        pytest.param("1 + 1", "returns a scalar", id="scalar-query"),
        pytest.param(
            '{{model}}_total{revision="{{revision}}"}', "outside a string", id="code-placeholder"
        ),
        pytest.param('sum(rate(x{revision="{{revision}}"}[1m])', "expected ')'", id="unclosed"),
        pytest.param('x{"revision"="{{revision}}"}', "expected a name", id="quoted-label"),
        pytest.param(
            'x{revision="{{revision}}"} + time()', "time() is not known", id="time-function"
        ),
    ],
)
def test_unbatchable_shapes_run_singly(template: str, reason: str) -> None:
    plan = rewrite(template)
    assert plan.batched is None
    assert plan.reason is not None
    assert reason in plan.reason


def test_revision_regex_escapes_regex_syntax() -> None:
    assert revision_regex(["6f9c0a1b2c", "v1.2", "a+b"]) == r"6f9c0a1b2c|v1\.2|a\+b"
    pattern = re.compile(r"\A(?:" + revision_regex(["v1.2", "x"]) + r")\Z")
    assert pattern.match("v1.2")
    assert not pattern.match("v1x2")


@pytest.mark.parametrize(
    ("revision", "batchable"),
    [("6f9c0a1b2c", True), ("v1.2-rc_1", True), ("", False), ("a|b", False), ('a"', False)],
)
def test_only_plain_revisions_are_batched(revision: str, batchable: bool) -> None:
    assert is_batchable_revision(revision) is batchable
