"""An instant query evaluated at a given instant: what the look grid's shared answers
(issue 15) ask Prometheus for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from modelcanary.metrics.prometheus import PrometheusProvider, time_param

pytestmark = pytest.mark.unit


def test_the_time_is_unix_seconds_to_the_millisecond() -> None:
    assert time_param(datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)) == "1795435205.000"
    assert time_param(datetime(2026, 11, 23, 12, 0, 5, 250_000, tzinfo=UTC)) == "1795435205.250"


def test_an_instant_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        time_param(datetime(2026, 11, 23, 12, 0, 5))  # naive: the case under test


def sent_params(at: datetime | None) -> dict[str, Any]:
    provider = PrometheusProvider("http://prometheus.invalid:9090", timeout=2.0)
    sent: dict[str, Any] = {}

    def custom_query(query: str, params: dict[str, Any], timeout: float) -> list[Any]:
        sent.update(params)
        return [{"metric": {}, "value": [0, "1"]}]

    provider._client.custom_query = custom_query
    try:
        result = asyncio.run(provider.query_series("up", at=at))
    finally:
        provider.close()
    assert result.error is None
    return sent


def test_a_query_at_an_instant_sends_its_time() -> None:
    at = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)
    assert sent_params(at) == {"timeout": "2", "time": "1795435205.000"}


def test_a_query_without_an_instant_is_evaluated_when_it_arrives() -> None:
    assert sent_params(None) == {"timeout": "2"}
