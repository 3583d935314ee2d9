"""Steady prediction traffic through the gateway, counted by revision and status.

A canary is only judged on traffic it actually serves: without requests the
candidate has no error rate and no latency, and the operator's queries return
nothing. The load generator keeps a steady request rate flowing through nginx
while a rollout runs, and records which revision answered each request (the
model server's ``X-Model-Revision`` header) and with what status, so a test
can compare the split it saw with the weights the operator set.

Requests are paced against a shared schedule rather than sent back to back, so
the rate does not depend on how fast the backends answer; a few worker threads,
each with one keep-alive connection, absorb slow responses. When the backends
are too slow to keep up, the backlog is dropped instead of sent in a burst.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from types import TracebackType

from e2e.modelserver.server import REVISION_HEADER

# A kept-alive connection that the server (or an nginx worker retiring after a
# reload) has closed fails on its next use in one of these ways; the request
# was not processed, so it is sent again once on a fresh connection.
_STALE_CONNECTION = (ConnectionError, http.client.BadStatusLine)
# Behind schedule by more than this, the generator skips ahead instead of
# sending the missed requests in a burst.
_MAX_BACKLOG_SECONDS = 1.0
# Only the first few failures per revision are timed: enough to tell when a bad
# candidate first *could* have been judged, at no cost over a long run.
_FAILURES_KEPT = 16

Counts = dict[tuple[str | None, int], int]
"""(revision from the response header or None, HTTP status) -> responses."""


class _Client:
    """One keep-alive connection to the gateway; not thread-safe, one per worker."""

    def __init__(self, url: str, path: str, body: bytes, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"expected an http:// URL, not {url!r}")
        self.path = (parts.path.rstrip("/") or "") + path
        self.body = body
        self.headers = {"Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection(
            parts.hostname, parts.port or 80, timeout=timeout
        )

    def post(self) -> tuple[str | None, int]:
        """Send one request; returns (revision, status) or raises on a transport failure."""
        for attempt in (1, 2):
            reused = self.connection.sock is not None
            try:
                self.connection.request("POST", self.path, body=self.body, headers=self.headers)
                response = self.connection.getresponse()
                response.read()
            except _STALE_CONNECTION:
                self.connection.close()
                if reused and attempt == 1:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self.connection.close()
                raise
            if response.will_close:
                self.connection.close()
            return response.getheader(REVISION_HEADER), response.status
        raise AssertionError("unreachable: the second attempt returns or raises")

    def close(self) -> None:
        self.connection.close()


class LoadGenerator:
    """``rps`` POSTs per second to ``url + path`` from ``concurrency`` threads."""

    def __init__(
        self,
        url: str,
        rps: float,
        *,
        concurrency: int = 4,
        path: str = "/predict",
        body: bytes = b"",
        timeout: float = 30,
    ) -> None:
        if rps < 0 or concurrency < 1:
            raise ValueError("rps must be >= 0 and concurrency >= 1")
        self.url = url
        self.path = path
        self.body = body
        self.timeout = timeout
        self.concurrency = concurrency
        self._rps = float(rps)
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._counts: Counter[tuple[str | None, int]] = Counter()
        self._transport_errors = 0
        self._last_error: BaseException | None = None
        self._first_seen: dict[str | None, float] = {}
        self._failed_at: dict[str | None, list[float]] = {}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # Validates the URL now rather than in a background thread.
        _Client(url, path, body, timeout).close()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        if self._threads:
            raise RuntimeError("this LoadGenerator has been started already")
        with self._lock:
            self._next_at = time.monotonic()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"loadgen-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop sending; requests in flight finish (or time out) first."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive:
            raise TimeoutError(f"load generator threads {alive} did not stop")

    def is_running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def __enter__(self) -> LoadGenerator:
        return self.start() if not self._threads else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- rate -----------------------------------------------------------------------------

    @property
    def rps(self) -> float:
        with self._lock:
            return self._rps

    def set_rate(self, rps: float) -> None:
        """Change the request rate from now on; 0 pauses the traffic."""
        if rps < 0:
            raise ValueError("rps must be >= 0")
        with self._lock:
            self._rps = float(rps)
            self._next_at = time.monotonic()

    # -- results --------------------------------------------------------------------------

    def counts(self) -> Counts:
        """Responses so far by (revision, HTTP status); revision is None when absent
        (e.g. nginx's own 503 or 502)."""
        with self._lock:
            return dict(self._counts)

    def by_revision(self) -> dict[str | None, int]:
        totals: Counter[str | None] = Counter()
        for (revision, _), count in self.counts().items():
            totals[revision] += count
        return dict(totals)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def transport_errors(self) -> int:
        """Requests that got no HTTP response at all (refused, reset, timed out)."""
        with self._lock:
            return self._transport_errors

    @property
    def last_error(self) -> BaseException | None:
        with self._lock:
            return self._last_error

    def first_seen(self, revision: str | None) -> float | None:
        """``time.monotonic()`` of the first response from ``revision`` since the last reset."""
        with self._lock:
            return self._first_seen.get(revision)

    def failure_at(self, revision: str | None, n: int) -> float | None:
        """``time.monotonic()`` of the ``n``-th (1-based) failed response (5xx) from
        ``revision`` since the last reset; None before there were that many."""
        if not 1 <= n <= _FAILURES_KEPT:
            raise ValueError(f"n must be within 1..{_FAILURES_KEPT}")
        with self._lock:
            failed = self._failed_at.get(revision, [])
            return failed[n - 1] if len(failed) >= n else None

    def reset(self) -> Counts:
        """Start counting afresh; returns the counts up to now."""
        with self._lock:
            counts = dict(self._counts)
            self._counts.clear()
            self._first_seen.clear()
            self._failed_at.clear()
            self._transport_errors = 0
            self._last_error = None
            return counts

    # -- workers --------------------------------------------------------------------------

    def _claim_slot(self) -> float | None:
        with self._lock:
            if self._rps <= 0:
                return None
            now = time.monotonic()
            if self._next_at < now - _MAX_BACKLOG_SECONDS:
                self._next_at = now
            slot = self._next_at
            self._next_at += 1.0 / self._rps
            return slot

    def _work(self) -> None:
        client = _Client(self.url, self.path, self.body, self.timeout)
        try:
            while not self._stopping.is_set():
                slot = self._claim_slot()
                if slot is None:
                    self._stopping.wait(0.05)
                    continue
                delay = slot - time.monotonic()
                if delay > 0 and self._stopping.wait(delay):
                    break
                self._send(client)
        finally:
            client.close()

    def _send(self, client: _Client) -> None:
        try:
            revision, status = client.post()
        except (OSError, http.client.HTTPException) as error:
            with self._lock:
                self._transport_errors += 1
                self._last_error = error
            # A refused connection fails at once; do not spin on it.
            self._stopping.wait(0.05)
            return
        now = time.monotonic()
        with self._lock:
            self._counts[(revision, status)] += 1
            self._first_seen.setdefault(revision, now)
            if status >= 500:
                failed = self._failed_at.setdefault(revision, [])
                if len(failed) < _FAILURES_KEPT:
                    failed.append(now)


def burst(
    url: str, requests: int, *, concurrency: int = 4, path: str = "/predict", body: bytes = b""
) -> Counts:
    """Send exactly ``requests`` POSTs as fast as they are answered; returns their counts.

    Transport failures raise: a test that wants an exact number of requests
    should not silently get fewer.
    """
    remaining = iter(range(requests))
    lock = threading.Lock()
    counts: Counter[tuple[str | None, int]] = Counter()
    errors: list[BaseException] = []

    def take(numbers: Iterator[int]) -> bool:
        with lock:
            return next(numbers, None) is not None and not errors

    def work() -> None:
        client = _Client(url, path, body, timeout=30)
        try:
            while take(remaining):
                result = client.post()
                with lock:
                    counts[result] += 1
        except (OSError, http.client.HTTPException) as error:
            with lock:
                errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, concurrency))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return dict(counts)
