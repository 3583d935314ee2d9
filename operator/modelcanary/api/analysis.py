"""The analysis part of a ModelDeployment's spec: where to ask, what to ask, how to judge.

A metric is one of two kinds of evidence:

* a **threshold** metric (``query`` with ``min``/``max`` or bounds relative to
  stable): one number per revision, held against bounds every interval. It is
  the Argo Rollouts and Flagger model and stays for what it is good at, such
  as a hard ceiling on latency or a business metric with a known limit;
* a **count** metric (``errors``, ``latency`` or ``distribution``): the raw
  counters of each revision, which the sequential judge turns into requests per
  interval and compares candidate against stable with an anytime-valid test.
  The false-rollback budget ``alpha`` is shared by all count metrics (and their
  slices) of one canary, so looking every interval cannot spend more of it.

Every query is a template. Its placeholders are checked here, at admission
(CEL for the names, the models for the rest), because a typo such as
``{{revison}}`` can never heal by waiting and must not reach Prometheus.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from modelcanary.api.base import ApiModel, Duration, cel, validations
from modelcanary.api.holds import (
    NO_DATA_LIMIT_WITHOUT_HOLD,
    NoDataLimit,
    NoDataPolicy,
    Outage,
    QueryError,
)
from modelcanary.promql.templates import PLACEHOLDERS, TemplateError
from modelcanary.promql.templates import validate as validate_template

MAX_METRICS = 16
MAX_SLICES = 32

_KNOWN = "|".join(PLACEHOLDERS)
# One regular expression over the whole text: outside placeholders anything goes but
# "{{", and every "{{" starts a known placeholder that is closed. (A findAll() naming
# the offending placeholder would be friendlier, but its estimated cost over 16
# metrics of 4096 characters is far beyond the API server's CEL budget; the models,
# run by the operator and `modelcanary lint`, name it.)
_TEMPLATE_RULE = rf"^([^{{]|\\{{[^{{]|\\{{$|\\{{\\{{\\s*({_KNOWN})\\s*\\}}\\}})*$"
_TEMPLATE_RULES = validations(
    cel(
        f"self.matches('{_TEMPLATE_RULE}')",
        "unknown or unclosed placeholder: a template may use "
        + ", ".join("{{" + name + "}}" for name in PLACEHOLDERS)
        + ', each inside a quoted string, e.g. revision="{{revision}}"',
    )
)


def _checked_template(template: str) -> str:
    try:
        validate_template(template)
    except TemplateError as error:
        raise ValueError(str(error)) from None
    return template


Query = Annotated[
    str,
    Field(min_length=1, max_length=4096, json_schema_extra=_TEMPLATE_RULES),
    AfterValidator(_checked_template),
]
"""A PromQL template: placeholders {{namespace}}, {{name}}, {{revision}}, {{model}} and
{{version}}, each inside a quoted string, replaced with escaped values."""


class SecretKeySelector(ApiModel):
    """A key of a Secret in the ModelDeployment's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """The Secret's name."""

    key: Annotated[str, Field(min_length=1, max_length=253)]
    """The key within the Secret."""


class HeaderFromSecret(ApiModel):
    """An HTTP header sent to Prometheus, its value read from a Secret."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9-]+$")]
    """The header's name, e.g. Authorization or X-Scope-OrgID."""

    secret_key_ref: SecretKeySelector
    """Where the header's value is kept."""


class PrometheusConnection(ApiModel):
    """The Prometheus that judges the canary."""

    address: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")]
    """Base URL, e.g. http://prometheus.monitoring:9090."""

    timeout: Duration = "5s"
    """Per-query timeout."""

    headers: Annotated[list[HeaderFromSecret], Field(max_length=8)] | None = None
    """Extra headers (tokens, tenant ids) read from Secrets."""

    insecure_skip_verify: bool = False
    """Do not verify Prometheus's TLS certificate (testing only)."""

    ca_secret_ref: SecretKeySelector | None = None
    """A CA bundle (PEM) in a Secret, to verify Prometheus's certificate."""


class MinSamples(ApiModel):
    """Too little traffic is no data, never a pass."""

    query: Query
    """PromQL returning the candidate's sample count over the evaluation window."""

    value: Annotated[int, Field(ge=1)]
    """The least count that makes an evaluation meaningful. Count metrics may still
    fail below it: their test is valid at any sample size."""


Tolerance = Annotated[float, Field(ge=0, le=10)]


class ErrorCounts(ApiModel):
    """Failed and total requests: is the candidate's error rate higher than stable's?"""

    failed: Query
    """PromQL for the revision's failed requests so far: a raw counter, e.g.
    sum(model_requests_total{revision="{{revision}}",code=~"5.."}); no rate()."""

    total: Query
    """PromQL for all of the revision's requests so far, as a raw counter."""

    tolerance: Tolerance = 0.0
    """How much higher the candidate's odds of an error may be before it counts as worse:
    0.1 tolerates 10% more. 0 tests for any increase."""


class LatencyBuckets(ApiModel):
    """A request-duration histogram: is the candidate slower than stable?"""

    buckets: Query
    """PromQL for the revision's cumulative bucket counters by le, e.g.
    sum by (le) (request_duration_seconds_bucket{revision="{{revision}}"}); no rate()."""

    tolerance: Tolerance = 0.1
    """How much higher the candidate's odds of being slower than any bucket bound may be
    before it counts as slower: 0.1 tolerates 10% more requests over each bound."""


class DistributionBuckets(ApiModel):
    """A histogram of predictions or inputs: do candidate and stable differ in distribution?"""

    buckets: Query
    """PromQL for the revision's cumulative bucket counters by le, e.g.
    sum by (le) (model_prediction_score_bucket{revision="{{revision}}"}); no rate()."""

    tolerance: Tolerance = 0.0
    """How much the odds of landing in any one bucket may move, either way, before it
    counts as a shift: 0.25 tolerates 25%. A retrained model is expected to move its
    scores somewhat; 0 tests for any change."""


class SliceBy(ApiModel):
    """Judge each value of a label separately (a country, a customer segment)."""

    label: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
    """The label that names the slice; the metric's queries must group by it."""

    max: Annotated[int, Field(ge=1, le=MAX_SLICES)] = 10
    """How many slice values are judged. Each gets an equal share of the metric's alpha,
    whether or not it ever shows up; values beyond this many are reported, not judged."""


_BOUNDS = ("min", "max", "minRelativeToStable", "maxRelativeToStable")
_KINDS = ("query", "errors", "latency", "distribution")
_ONE_KIND = "a metric sets exactly one of query, errors, latency or distribution"
_NO_BOUND = (
    "a query metric needs at least one bound: min, max, minRelativeToStable or maxRelativeToStable"
)
_BOUNDS_ON_COUNTS = "bounds belong to query metrics; count metrics are judged against stable"
_SLICE_ON_QUERY = "slice applies to count metrics (errors, latency, distribution)"


def _has_any(fields: tuple[str, ...]) -> str:
    return " || ".join(f"has(self.{name})" for name in fields)


class Metric(ApiModel):
    """One check: a threshold on a query's value, or a count metric for the sequential judge."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[" + ", ".join(f"has(self.{kind})" for kind in _KINDS) + "]"
                ".filter(x, x).size() == 1",
                _ONE_KIND,
            ),
            cel(f"!has(self.query) || {_has_any(_BOUNDS)}", _NO_BOUND),
            cel(f"has(self.query) || !({_has_any(_BOUNDS)})", _BOUNDS_ON_COUNTS),
            cel("!has(self.query) || !has(self.slice)", _SLICE_ON_QUERY, ".slice"),
            cel(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not exceed max",
                ".min",
            ),
            cel(
                "!has(self.minRelativeToStable) || !has(self.maxRelativeToStable)"
                " || self.minRelativeToStable <= self.maxRelativeToStable",
                "minRelativeToStable must not exceed maxRelativeToStable",
                ".minRelativeToStable",
            ),
        )
    )

    name: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ]
    """A name for the check, unique within the ModelDeployment."""

    query: Query | None = None
    """A threshold metric: PromQL returning one number, held against the bounds."""

    min: float | None = None
    """The candidate's value must be at least this."""

    max: float | None = None
    """The candidate's value must be at most this."""

    min_relative_to_stable: Annotated[float, Field(ge=0)] | None = None
    """The candidate's value must be at least this multiple of the stable revision's value."""

    max_relative_to_stable: Annotated[float, Field(ge=0)] | None = None
    """The candidate's value must be at most this multiple of the stable revision's value."""

    errors: ErrorCounts | None = None
    """A count metric: failed and total requests, compared with stable."""

    latency: LatencyBuckets | None = None
    """A count metric: a request-duration histogram, compared with stable (one-sided)."""

    distribution: DistributionBuckets | None = None
    """A count metric: a histogram of scores or inputs, compared with stable (two-sided)."""

    slice: SliceBy | None = None
    """Judge a count metric per value of a label."""

    @property
    def kind(self) -> str:
        """query, errors, latency or distribution."""
        return next(kind for kind in _KINDS if getattr(self, kind) is not None)

    @property
    def is_count(self) -> bool:
        return self.query is None

    @model_validator(mode="after")
    def _one_kind_with_its_fields(self) -> Metric:
        if sum(getattr(self, kind) is not None for kind in _KINDS) != 1:
            raise ValueError(_ONE_KIND)
        bounds = (self.min, self.max, self.min_relative_to_stable, self.max_relative_to_stable)
        has_bound = any(bound is not None for bound in bounds)
        if self.query is not None and not has_bound:
            raise ValueError(_NO_BOUND)
        if self.query is None and has_bound:
            raise ValueError(_BOUNDS_ON_COUNTS)
        if self.query is not None and self.slice is not None:
            raise ValueError(_SLICE_ON_QUERY)
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        low, high = self.min_relative_to_stable, self.max_relative_to_stable
        if low is not None and high is not None and low > high:
            raise ValueError("minRelativeToStable must not exceed maxRelativeToStable")
        return self

    def queries(self) -> dict[str, str]:
        """Every query of the metric by its part: query, failed, total or buckets."""
        if self.query is not None:
            return {"query": self.query}
        if self.errors is not None:
            return {"failed": self.errors.failed, "total": self.errors.total}
        buckets = self.latency or self.distribution
        assert buckets is not None
        return {"buckets": buckets.buckets}


def _metric_list_schema() -> dict[str, Any]:
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class Analysis(ApiModel):
    """The Prometheus checks that gate every step and the bake."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.noDataLimit) || !has(self.noData) || self.noData == 'hold'",
                NO_DATA_LIMIT_WITHOUT_HOLD,
                ".noDataLimit",
            )
        )
    )

    interval: Duration = "15s"
    """How often the checks run. Keep it at least twice the scrape interval: the count
    metrics compare what both revisions did between two looks."""

    prometheus: PrometheusConnection
    """Where to run the queries."""

    alpha: Annotated[float, Field(gt=0, le=0.2)] = 0.01
    """The false-rollback budget of one canary: the chance that count metrics roll back a
    candidate that is no worse than stable, however long it runs and however often it is
    looked at. Shared equally by the count metrics, and within one by its slices."""

    failure_limit: Annotated[int, Field(ge=0, le=100)] = 0
    """Failed threshold evaluations tolerated; one more rolls the candidate back. A count
    metric's failure is already a statistical decision and rolls back at once."""

    no_data: NoDataPolicy = NoDataPolicy.HOLD
    """Empty results, NaN, +-Inf or too few samples: hold, fail or pass."""

    no_data_limit: NoDataLimit | None = None
    """With noData: hold, how long to hold before pausing or rolling back; without it,
    no data holds for as long as it lasts."""

    outage: Outage = Field(default_factory=Outage)
    """What to do while Prometheus is unreachable, timing out or answering 5xx."""

    query_error: QueryError = Field(default_factory=QueryError)
    """What to do when a query fails in a way waiting will not fix (the Error outcome):
    by default, pause for a person at once. Never promotes."""

    min_samples: MinSamples | None = None
    """The traffic needed before an evaluation counts."""

    metrics: Annotated[
        list[Metric],
        Field(max_length=MAX_METRICS, json_schema_extra=_metric_list_schema()),
    ] = Field(default_factory=list)
    """The checks; their names are unique."""

    @model_validator(mode="after")
    def _unique_metric_names(self) -> Analysis:
        names = [metric.name for metric in self.metrics]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _no_data_limit_needs_hold(self) -> Analysis:
        if self.no_data_limit is not None and self.no_data is not NoDataPolicy.HOLD:
            raise ValueError(NO_DATA_LIMIT_WITHOUT_HOLD)
        return self

    @property
    def count_metrics(self) -> list[Metric]:
        return [metric for metric in self.metrics if metric.is_count]
