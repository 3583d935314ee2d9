"""Prometheus as a metric provider, through prometheus-api-client.

prometheus-api-client is synchronous (it uses requests), and the operator runs
every ModelDeployment's handlers on one asyncio loop, so a query that blocked
the loop for its timeout would stall all of them. Every call therefore runs on
a worker thread of one bounded pool shared by the whole process, and the wait
for it is cut off at the query timeout with ``asyncio.wait_for``. The same
timeout goes to the HTTP request, so a worker frees itself soon after its caller
gave up, and to Prometheus as the API's own ``timeout`` parameter, so the server
stops evaluating a query that nobody is waiting for.

The client makes one attempt per query, with no retries. Its default (three
retries with backoff on 5xx) would turn one slow answer into many seconds past
the timeout. The analysis loop asks again on the next interval, and the outage
policy is what decides how long to put up with failures.

Every failure becomes a failed Sample with a short reason that names what to
fix: the PromQL error for a rejected query, "connection refused", a TLS
verification message, or the timeout that passed. The client's own exception
text (a repr of the raw HTTP body) is not fit to show a user, so it is parsed
down to Prometheus's ``errorType`` and ``error``.

Each failure is also named for what will end it. Prometheus's own verdict on
the query (HTTP 400 ``bad_data``, 422 ``execution``) and an answer that cannot
be a number (a string, a range vector, a native histogram, JSON of the wrong
shape) are *errors*: asking again gets the same answer. Everything on the way
there (connection refused, a name that does not resolve, TLS, timeouts, 5xx,
a proxy's 401/403/404 or HTML page) is an *outage*: a restarted Prometheus, a
rotated token or a fixed ingress ends it without anyone touching the query.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import re
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Final

import requests
import urllib3.exceptions
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from modelcanary.analysis.failures import Failure
from modelcanary.analysis.samples import Sample
from modelcanary.metrics import QueryResult, Series

POOL_SIZE: Final = 32
"""Queries in flight at once, across every Prometheus this process talks to."""

ONLINE_QUERY: Final = "vector(1)"

_HTTP_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)\Z", re.DOTALL)
_QUERY_PARAMETER_PREFIX = 'invalid parameter "query": '
_REASON_LENGTH = 240


@functools.cache
def query_pool() -> ThreadPoolExecutor:
    """The process-wide pool that runs blocking Prometheus calls."""
    return ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="prometheus-query")


class PrometheusProvider:
    """Runs instant queries against one Prometheus (or a Prometheus-compatible API)."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
    ) -> None:
        """``verify`` is True (system CAs), False (no verification) or a CA bundle's path."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.address = address.rstrip("/")
        self.timeout = timeout
        session = requests.Session()
        session.verify = verify
        no_retries = Retry(total=0, status_forcelist=(), raise_on_status=False)
        self._client = PrometheusConnect(
            url=self.address,
            headers=dict(headers) if headers else None,
            session=session,
            retry=no_retries,
        )
        # Replaces the client's adapter: the same single attempt, with a connection
        # pool as large as the worker pool, so concurrent queries reuse connections.
        session.mount(self.address, HTTPAdapter(max_retries=no_retries, pool_maxsize=POOL_SIZE))

    def __repr__(self) -> str:
        return f"PrometheusProvider({self.address!r}, timeout={self.timeout:g})"

    async def run_query(self, query: str) -> Sample:
        return (await self.query_series(query)).sample()

    async def query_series(self, query: str, *, at: datetime | None = None) -> QueryResult:
        return await self._off_loop(functools.partial(self._query_blocking, query, at))

    async def run_queries(self, queries: Sequence[str]) -> list[Sample]:
        """Run ``queries`` concurrently; the Samples come back in the same order."""
        return list(await asyncio.gather(*(self.run_query(query) for query in queries)))

    async def is_online(self) -> bool:
        """Whether a trivial query succeeds within the timeout.

        A query rather than ``/-/ready``: it goes through the same path, headers
        and tenant as the real queries, and it also works for Thanos, Mimir or
        Cortex behind a path prefix, where ``/-/ready`` does not exist.
        """
        result = await self.query_series(ONLINE_QUERY)
        return result.error is None and [s.value for s in result.series] == [1.0]

    def close(self) -> None:
        self._client.close()

    async def _off_loop(self, job: Callable[[], QueryResult]) -> QueryResult:
        loop = asyncio.get_running_loop()
        started = threading.Event()

        def run() -> QueryResult:
            started.set()
            return job()

        try:
            # Cancelling a job that has not started yet removes it from the pool's queue.
            return await asyncio.wait_for(loop.run_in_executor(query_pool(), run), self.timeout)
        except TimeoutError:
            if started.is_set():
                return QueryResult.failed(
                    f"Prometheus at {self.address} did not answer within {self.timeout:g}s"
                )
            return QueryResult.failed(
                f"no query worker was free within {self.timeout:g}s: "
                f"more than {POOL_SIZE} Prometheus queries are in flight"
            )

    def _query_blocking(self, query: str, at: datetime | None = None) -> QueryResult:
        params = {"timeout": f"{self.timeout:g}"}
        if at is not None:
            params["time"] = time_param(at)
        try:
            data = self._client.custom_query(query, params=params, timeout=self.timeout)
        except PrometheusApiClientException as error:
            return _http_failure(str(error), self.address)
        except requests.JSONDecodeError:
            return QueryResult.failed(
                f"{self.address} answered with something that is not JSON: "
                "is it the address of a Prometheus API?"
            )
        except requests.RequestException as error:
            return QueryResult.failed(_request_failure(error, self.address, self.timeout))
        except (KeyError, TypeError) as error:
            return QueryResult.failed(
                f"{self.address} answered with JSON that is not a query result ({error!r})",
                kind=Failure.ERROR,
            )
        except Exception as error:  # the contract: query problems never raise
            return QueryResult.failed(f"query failed: {type(error).__name__}: {_short(error)}")
        return parse_result(data)


def parse_result(data: Any) -> QueryResult:
    """The ``data.result`` of an instant query, as prometheus-api-client returns it.

    The client drops ``resultType``: a vector is a list of objects, while a
    scalar (or string) is a bare ``[time, "value"]`` pair.
    """
    if not isinstance(data, list):
        return _unusable(f"Prometheus sent a result that is not a list: {data!r:.80}")
    if len(data) == 2 and not isinstance(data[0], dict):
        try:
            return QueryResult(series=(Series({}, float(data[1])),))
        except (TypeError, ValueError):
            return _unusable(f"the query returned the string {data[1]!r:.80}, not a number")
    series: list[Series] = []
    for item in data:
        if not isinstance(item, dict):
            return _unusable(f"Prometheus sent an unexpected result: {item!r:.80}")
        if "values" in item:
            return _unusable(
                "the query returned a range vector such as x[5m]; it must return an instant "
                "value, e.g. rate(x[5m])"
            )
        if "histogram" in item:
            return _unusable(
                "the query returned a native histogram; reduce it to a number, "
                "e.g. with histogram_quantile(0.99, ...)"
            )
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            return _unusable(f"Prometheus sent an unexpected series: {item!r:.80}")
        labels = item.get("metric") or {}
        series.append(Series({str(k): str(v) for k, v in labels.items()}, value))
    return QueryResult(series=tuple(series))


def _unusable(reason: str) -> QueryResult:
    """An answer that arrived but cannot be judged: the same query will get it again."""
    return QueryResult.failed(reason, kind=Failure.ERROR)


def time_param(at: datetime) -> str:
    """An instant query's ``time`` as Prometheus reads it: Unix seconds, to the millisecond
    (Prometheus keeps milliseconds; rounding is to the nearest, a grid instant is exact)."""
    if at.tzinfo is None:
        raise ValueError(f"{at} has no time zone: an evaluation instant must be absolute")
    return f"{at.timestamp():.3f}"


def _http_failure(message: str, address: str) -> QueryResult:
    """prometheus-api-client's ``HTTP Status Code N (b'body')`` turned into a reason."""
    match = _HTTP_STATUS.match(message)
    if match is None:
        return QueryResult.failed(f"query failed: {_short(message)}")
    status = int(match.group(1))
    error_type, detail = _api_error(match.group(2))
    if status == 400:
        return QueryResult.failed(
            f"Prometheus rejected the query ({error_type}): {detail}", rejected=True
        )
    if status == 422:
        return QueryResult.failed(
            f"Prometheus could not execute the query ({error_type}): {detail}", rejected=True
        )
    if status == 503 and error_type == "timeout":
        return QueryResult.failed(f"Prometheus timed out evaluating the query: {detail}")
    if status in (401, 403):
        return QueryResult.failed(
            f"Prometheus at {address} refused the request (HTTP {status}): "
            "check the credentials in the headers"
        )
    if status == 404:
        return QueryResult.failed(
            f"{address}/api/v1/query does not exist (HTTP 404): is the address right?"
        )
    answered = f"Prometheus at {address} answered HTTP {status}"
    return QueryResult.failed(f"{answered}: {detail}" if detail else answered)


def _api_error(body_repr: str) -> tuple[str, str]:
    """``errorType`` and ``error`` from the repr of an HTTP error body; for a body
    that is not a Prometheus API error (a proxy's page), its text."""
    try:
        body = ast.literal_eval(body_repr)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "error", _short(body_repr)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        document = json.loads(text)
    except ValueError:
        return "error", _short(text)
    if not isinstance(document, dict) or "error" not in document:
        return "error", _short(text)
    detail = str(document["error"]).removeprefix(_QUERY_PARAMETER_PREFIX)
    return str(document.get("errorType") or "error"), _short(detail)


def _request_failure(error: BaseException, address: str, timeout: float) -> str:
    causes = list(_causes(error))

    def caused_by(*kinds: type[BaseException]) -> BaseException | None:
        return next((cause for cause in causes if isinstance(cause, kinds)), None)

    if caused_by(ConnectionRefusedError):
        return f"cannot reach Prometheus at {address}: connection refused"
    if caused_by(socket.gaierror):
        return f"cannot reach Prometheus at {address}: the host name does not resolve"
    tls = caused_by(ssl.SSLError)
    if tls is not None or caused_by(requests.exceptions.SSLError):
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or tls
        return f"TLS with Prometheus at {address} failed: {_short(detail or error)}"
    if caused_by(urllib3.exceptions.ReadTimeoutError, requests.ReadTimeout):
        return f"Prometheus at {address} did not answer within {timeout:g}s"
    # urllib3's NewConnectionError subclasses ConnectTimeoutError without being a timeout.
    connect_timeouts = (urllib3.exceptions.ConnectTimeoutError, requests.ConnectTimeout)
    if any(
        isinstance(c, connect_timeouts) and not isinstance(c, urllib3.exceptions.NewConnectionError)
        for c in causes
    ):
        return f"cannot reach Prometheus at {address}: no connection within {timeout:g}s"
    if caused_by(ConnectionResetError, urllib3.exceptions.ProtocolError):
        return f"Prometheus at {address} closed the connection before answering"
    return f"cannot reach Prometheus at {address}: {_short(causes[-1])}"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and everything it wraps: requests and urllib3 nest the real
    cause in ``args``, ``reason``, ``__cause__`` and ``__context__``."""
    seen: set[int] = set()
    queue: deque[BaseException] = deque([error])
    while queue:
        current = queue.popleft()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped: list[object] = [current.__cause__, current.__context__, *current.args]
        wrapped.append(getattr(current, "reason", None))
        queue.extend(item for item in wrapped if isinstance(item, BaseException))


def _short(text: object) -> str:
    flat = " ".join(str(text).split())
    if len(flat) > _REASON_LENGTH:
        return flat[: _REASON_LENGTH - 1] + "…"
    return flat
