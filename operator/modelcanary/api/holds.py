"""What the analysis does when it cannot judge: no data, a query error, an outage.

Each of the three holds the steps, and each is ended by something different:
traffic ends no data, a person fixing the query ends a query error, Prometheus
coming back ends an outage. So each has its own policy, and the same shape
(``holdFor``, then ``then``) where a limit makes sense. ``noData`` keeps its
plain ``hold``/``fail``/``pass`` value so that existing manifests stay valid and
behave as before; its limit is the separate, optional ``noDataLimit``.
"""

from __future__ import annotations

import enum

from pydantic import ConfigDict, model_validator

from modelcanary.api.base import ApiModel, Duration, cel, validations


class NoDataPolicy(enum.StrEnum):
    """What an evaluation without data counts as."""

    HOLD = "hold"
    FAIL = "fail"
    PASS = "pass"


class HoldAction(enum.StrEnum):
    """What to do once a hold (an outage, a query error, no data) has lasted its holdFor."""

    HOLD = "hold"
    PAUSE = "pause"
    ROLLBACK = "rollback"


class Outage(ApiModel):
    """Prometheus unreachable, timing out or answering 5xx: hold, never count it as a
    failure; waiting may fix it."""

    hold_for: Duration = "5m"
    """How long to hold still before applying `then`."""

    then: HoldAction = HoldAction.PAUSE
    """After holdFor: keep holding, pause for a person, or roll back."""


class QueryError(ApiModel):
    """A query Prometheus rejects (bad PromQL, an unknown function, HTTP 400/422) or
    whose answer cannot be judged (several series, a string): waiting will not fix it.
    Never a pass and never a failure of the candidate."""

    hold_for: Duration = "0s"
    """How long to hold still before applying `then`; 0s applies it at the first error.
    A longer hold tolerates errors that come and go, such as a duplicate series while
    pods are replaced."""

    then: HoldAction = HoldAction.PAUSE
    """After holdFor: keep holding, pause for a person to fix the query and resume (or
    abort), or roll back."""


class NoDataLimit(ApiModel):
    """How long noData: hold may hold, e.g. for a candidate that never gets traffic."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.then != 'hold'",
                "then: hold would hold forever, which is what leaving noDataLimit out does;"
                " use pause or rollback",
                ".then",
            )
        )
    )

    hold_for: Duration
    """How long evaluations may have no data before applying `then`."""

    then: HoldAction = HoldAction.PAUSE
    """After holdFor: pause for a person, or roll back."""

    @model_validator(mode="after")
    def _ends_the_hold(self) -> NoDataLimit:
        if self.then is HoldAction.HOLD:
            raise ValueError(
                "then: hold would hold forever, which is what leaving noDataLimit out does;"
                " use pause or rollback"
            )
        return self


NO_DATA_LIMIT_WITHOUT_HOLD = (
    "noDataLimit applies only with noData: hold (fail and pass decide at the first "
    "evaluation without data)"
)
