"""A real model server: a small fixed model behind HTTP, with metrics and fault injection.

The operator judges a canary by what Prometheus says about it, so the test
data plane needs servers whose metrics come from real requests: a bad
candidate must be bad because its requests really fail, really take longer or
really score differently, not because a test wrote a number into a fake. Each
process serves one revision of a logistic-regression model and exports:

* ``model_requests_total{code, segment}``: every ``/predict`` answer, by HTTP
  status and segment;
* ``model_request_duration_seconds{segment}``: the time spent answering
  ``/predict``, in buckets no more than a third apart from 2 ms to 50 ms,
  so that bucket counts alone show a 30% slowdown of a few milliseconds;
* ``model_prediction_score{segment}``: the scores returned, in buckets of 0.1.

The server adds no ``namespace`` or ``revision`` labels: Prometheus attaches
them as target labels, exactly as it would from pod labels in a cluster.

Every prediction belongs to a segment (``SEGMENTS``: us, eu, apac), because
the operator can judge a candidate per slice of traffic and a real fault is
often confined to one: a bad feature pipeline for one region, say. A request
body names its segment (``{"features": [...], "segment": "eu"}``) or the
server draws one from fixed weights with its seeded generator. A name outside
``SEGMENTS`` is a 400; a request whose segment cannot be told (an unknown
name, a body that is not a JSON object) is counted under ``segment="unknown"``,
so that a client cannot grow the label's values without bound. The series of
the known segments exist from the start, at zero, so that a judge reading
counters per segment sees a segment's first error as an increase, not as a
new series.

Faults are set with flags at start and through ``/admin/faults`` at run time,
so a test can turn a healthy candidate bad halfway through a rollout:

* ``error_rate``: that fraction of predictions answers HTTP 500;
* ``added_latency_seconds`` and ``latency_multiplier``: each prediction sleeps
  ``base * latency_multiplier + added_latency_seconds``, where the base is a
  few milliseconds of jitter (a real model takes time too);
* ``score_shift``: added to every score before clipping to [0, 1], so the
  score distribution drifts the way a badly trained model's would;
* ``segments``: per-segment overrides of the four above, e.g.
  ``{"segments": {"eu": {"error_rate": 0.3}}}``: eu answers 30% errors, and
  every fault a segment does not name follows the top-level value. An update
  replaces each fault it names, ``segments`` included as a whole, so
  ``{"segments": {}}`` drops every override.

Only the standard library's threading HTTP server is used, with HTTP/1.1
keep-alive so that nginx can hold a pool of upstream connections open.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest

REVISION_HEADER = "X-Model-Revision"

# The sequential judge compares bucket counts, not quantiles: a slowdown is
# visible only as requests crossing a boundary. With boundaries 20-33% apart
# where the base service time lies (2-5 ms, and up to 6.5 ms after a 30%
# slowdown), a 30% slowdown moves a good share of requests into the next
# bucket without any added latency to spread them. Every earlier boundary is
# kept, so a query written against one (le="0.1", say) reads the same; 25
# boundaries and +Inf stay within 26 series.
DURATION_BUCKETS = (
    0.001,
    0.0015,
    0.002,
    0.0025,
    0.003,
    0.004,
    0.005,
    0.006,
    0.0075,
    0.01,
    0.0125,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
)
SCORE_BUCKETS = tuple(round(step * 0.1, 1) for step in range(11))

# The base service time of one prediction, drawn uniformly per request. Small
# enough that an added 50 ms stands out, large enough that the latency
# histogram is not a single spike at the lowest bucket.
BASE_LATENCY_SECONDS = (0.002, 0.005)

# The slices of traffic a request may belong to, and how often each turns up
# when a request does not say: unequal, so that a per-slice judge meets a
# small slice as well as a large one.
SEGMENTS = ("us", "eu", "apac")
SEGMENT_WEIGHTS = (0.5, 0.3, 0.2)
# The label value of a request whose segment the server could not tell.
UNKNOWN_SEGMENT = "unknown"

# Requests bodies beyond this are refused; predictions are a handful of floats.
MAX_BODY_BYTES = 1 << 20

# An idle keep-alive connection is dropped after this long. nginx's upstream
# pool lets its own connections idle for less (see e2e.dataplane.gateway), so
# nginx never reuses a connection this side has already closed.
IDLE_CONNECTION_TIMEOUT = 75.0


class LogisticModel:
    """A fixed logistic regression: ``sigmoid(w . x + b)``.

    The weights are constants, not trained here: what matters to the operator
    is a realistic score distribution, one that a ``score_shift`` visibly moves.
    """

    WEIGHTS: ClassVar[tuple[float, ...]] = (0.8, -0.5, 0.3, 1.2)
    BIAS: ClassVar[float] = -0.2

    @property
    def n_features(self) -> int:
        return len(self.WEIGHTS)

    def score(self, features: Sequence[float]) -> float:
        if len(features) != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {len(features)}")
        logit = self.BIAS + math.fsum(w * x for w, x in zip(self.WEIGHTS, features, strict=True))
        # Written this way round so that a very negative logit cannot overflow exp().
        if logit >= 0:
            return 1.0 / (1.0 + math.exp(-logit))
        odds = math.exp(logit)
        return odds / (1.0 + odds)

    def random_features(self, rng: random.Random) -> list[float]:
        return [rng.gauss(0.0, 1.0) for _ in range(self.n_features)]


# Every numeric fault, at the top level or in a segment, and the values it may take. Bounded so
# that a typo (an error rate of 30 instead of 0.3, a latency in milliseconds)
# is refused instead of silently breaking a test.
FAULT_RANGES: Mapping[str, tuple[float, float]] = {
    "error_rate": (0.0, 1.0),
    "added_latency_seconds": (0.0, 60.0),
    "latency_multiplier": (0.0, 1000.0),
    "score_shift": (-1.0, 1.0),
}


@dataclass
class Faults:
    """The faults a server injects; every field may change at run time.

    ``segments`` maps a segment to the faults it overrides; a fault it does not
    name follows the top-level value (see :meth:`for_segment`).
    """

    error_rate: float = 0.0
    added_latency_seconds: float = 0.0
    latency_multiplier: float = 1.0
    score_shift: float = 0.0
    segments: dict[str, dict[str, float]] = field(default_factory=dict)

    def validated(self) -> Faults:
        """``self`` if all values are in range and overrides name known segments and faults."""
        unknown = sorted(set(self.segments) - set(SEGMENTS))
        if unknown:
            raise ValueError(_unknown_segments(unknown))
        # (where the value is, which fault it is, the value)
        values = [(name, name, getattr(self, name)) for name in FAULT_RANGES]
        for segment, overrides in self.segments.items():
            where = f"segments.{segment}"
            unknown = sorted(set(overrides) - set(FAULT_RANGES))
            if unknown:
                raise ValueError(_unknown_faults(unknown, FAULT_RANGES, where=where))
            values += [(f"{where}.{name}", name, v) for name, v in overrides.items()]
        bad = [
            f"{path}={value}"
            for path, name, value in values
            if not FAULT_RANGES[name][0] <= value <= FAULT_RANGES[name][1]
        ]
        if bad:
            raise ValueError(f"out of range: {', '.join(bad)}")
        return self

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` applied; unknown names and non-numbers are errors.

        Each fault named is replaced, ``segments`` as a whole: overrides are
        not merged, so an update can also take one away.
        """
        known = set(asdict(self))
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(_unknown_faults(unknown, known))
        merged = asdict(self)
        for name, value in changes.items():
            if name == "segments":
                merged[name] = _parse_segments(value)
            else:
                merged[name] = _number(name, value)
        return Faults(**merged).validated()

    def for_segment(self, segment: str) -> Faults:
        """The faults a request of ``segment`` meets: the top level, then its overrides."""
        values = {name: getattr(self, name) for name in FAULT_RANGES}
        values.update(self.segments.get(segment, {}))
        return Faults(**values)


def _unknown_faults(names: Sequence[str], known: Iterable[str], *, where: str = "") -> str:
    prefix = f"{where}: " if where else ""
    return f"{prefix}unknown faults: {', '.join(names)}; known: {sorted(known)}"


def _unknown_segments(names: Sequence[str]) -> str:
    return f"segments: unknown segments: {', '.join(names)}; known: {', '.join(SEGMENTS)}"


def _number(path: str, value: object) -> float:
    # bool is an int in Python, but `"error_rate": true` is a client bug.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{path} must be finite")
    return float(value)


def _parse_segments(value: object) -> dict[str, dict[str, float]]:
    """Per-segment overrides from JSON, type-checked; ranges are :meth:`Faults.validated`'s.

    A segment with no overrides is dropped, so ``{"eu": {}}`` reads back as no
    override at all rather than as an empty one.
    """
    if not isinstance(value, Mapping):
        example = '{"eu": {"error_rate": 0.3}}'
        raise ValueError(f"segments must be an object like {example}, not {value!r}")
    unknown = sorted(str(name) for name in set(value) - set(SEGMENTS))
    if unknown:
        raise ValueError(_unknown_segments(unknown))
    parsed: dict[str, dict[str, float]] = {}
    for segment, overrides in value.items():
        where = f"segments.{segment}"
        if not isinstance(overrides, Mapping):
            raise ValueError(f"{where} must be an object of faults, not {overrides!r}")
        unknown = sorted(str(name) for name in set(overrides) - set(FAULT_RANGES))
        if unknown:
            raise ValueError(_unknown_faults(unknown, FAULT_RANGES, where=where))
        if overrides:
            parsed[segment] = {
                name: _number(f"{where}.{name}", number) for name, number in overrides.items()
            }
    return parsed


class ModelService:
    """Everything one server process shares between its request threads."""

    def __init__(
        self, revision: str, version: str, faults: Faults, *, seed: int | None = None
    ) -> None:
        self.revision = revision
        self.version = version
        self.model = LogisticModel()
        self._faults = faults.validated()
        self._faults_lock = threading.Lock()
        # One seeded generator per server, so a run with the same revision
        # draws the same features and the same injected errors in the same order.
        self._rng = random.Random(zlib.crc32(revision.encode()) if seed is None else seed)  # noqa: S311
        self._rng_lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "model_requests",
            "Prediction requests answered, by HTTP status code and segment.",
            ["code", "segment"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "model_request_duration_seconds",
            "Time spent answering a prediction request, by segment.",
            ["segment"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.scores = Histogram(
            "model_prediction_score",
            "Scores returned by the model, by segment.",
            ["segment"],
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )
        # Zero series for every known segment and the two codes a healthy or
        # faulty prediction answers, so that a segment's first error (or first
        # request) is an increase of a series seen before, not a new series
        # a judge comparing two looks could take for its starting point.
        for segment in SEGMENTS:
            self.duration.labels(segment=segment)
            self.scores.labels(segment=segment)
            for code in ("200", "500"):
                self.requests.labels(code=code, segment=segment)

    @property
    def faults(self) -> Faults:
        with self._faults_lock:
            return Faults(**asdict(self._faults))

    def update_faults(self, changes: Mapping[str, Any]) -> Faults:
        with self._faults_lock:
            self._faults = self._faults.updated(changes)
            return Faults(**asdict(self._faults))

    def draw_segment(self) -> str:
        """The segment of a request that names none, from the seeded generator."""
        with self._rng_lock:
            return self._rng.choices(SEGMENTS, weights=SEGMENT_WEIGHTS)[0]

    def draw(self) -> tuple[float, float, list[float]]:
        """One request's randomness: base latency, the error draw, and spare features."""
        with self._rng_lock:
            base = self._rng.uniform(*BASE_LATENCY_SECONDS)
            error_draw = self._rng.random()
            features = self.model.random_features(self._rng)
        return base, error_draw, features

    def predict(
        self, features: Sequence[float] | None, segment: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Answer one prediction, faults included; returns (HTTP status, JSON body).

        ``segment`` None draws one. The body names the segment the request
        was answered (and is to be counted) as.
        """
        if segment is None:
            segment = self.draw_segment()
        faults = self.faults.for_segment(segment)
        base, error_draw, spare = self.draw()
        time.sleep(base * faults.latency_multiplier + faults.added_latency_seconds)
        identity = {"revision": self.revision, "version": self.version, "segment": segment}
        if error_draw < faults.error_rate:
            return 500, {"error": "injected fault", **identity}
        try:
            raw = self.model.score(spare if features is None else features)
        except ValueError as error:
            return 400, {"error": str(error), **identity}
        score = min(1.0, max(0.0, raw + faults.score_shift))
        self.scores.labels(segment=segment).observe(score)
        return 200, {"score": score, **identity}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so connections stay open between requests; every response
    # therefore carries a Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = "modelserver"
    sys_version = ""
    timeout = IDLE_CONNECTION_TIMEOUT
    # Headers and body leave in two writes; with Nagle's algorithm the body
    # would wait for the peer's delayed ACK, adding ~40 ms to every response.
    disable_nagle_algorithm = True
    service: ClassVar[ModelService]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # One line per request would drown the log under load. Errors the
        # stdlib reports (malformed requests) still reach stderr via log_error.
        pass

    # -- routing ----------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/ready":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._send(200, generate_latest(self.service.registry), CONTENT_TYPE_LATEST)
        elif path == "/admin/faults":
            self._send_json(200, asdict(self.service.faults))
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = self._read_body()
        except ValueError as error:
            self._send_json(400, {"error": str(error)}, close=True)
            return
        if path == "/predict":
            self._predict(body)
        elif path == "/admin/faults":
            self._set_faults(body)
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    # -- endpoints --------------------------------------------------------------------

    def _predict(self, body: bytes) -> None:
        started = time.perf_counter()
        service = self.service
        try:
            document = _parse_document(body)
            named = _parse_segment(document)
        except ValueError as error:
            segment = UNKNOWN_SEGMENT
            status, payload = 400, {"error": str(error), "segment": segment}
        else:
            # Settled before the features are read, so a request with bad
            # features is still counted in the segment it belongs to.
            segment = service.draw_segment() if named is None else named
            try:
                features = _parse_features(document)
            except ValueError as error:
                status, payload = 400, {"error": str(error), "segment": segment}
            else:
                status, payload = service.predict(features, segment)
        service.duration.labels(segment=segment).observe(time.perf_counter() - started)
        service.requests.labels(code=str(status), segment=segment).inc()
        self._send_json(status, payload, headers={REVISION_HEADER: service.revision})

    def _set_faults(self, body: bytes) -> None:
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of faults")
            faults = self.service.update_faults(changes)
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            self._send_json(400, {"error": str(error)})
            return
        self._send_json(200, asdict(faults))

    # -- plumbing ---------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ValueError("chunked request bodies are not supported; send Content-Length")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ValueError(f"Content-Length must be between 0 and {MAX_BODY_BYTES}")
        return self.rfile.read(length) if length else b""

    def _send_json(
        self,
        status: int,
        payload: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, "application/json", headers=headers, close=close)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            # After a body we could not read, the stream is out of step.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


def _parse_document(body: bytes) -> Mapping[str, Any]:
    """The request body as a JSON object; an empty body is an empty object."""
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as error:
        raise ValueError(f"body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError('expected a JSON object like {"features": [0.1, 2.0, ...]}')
    return document


def _parse_segment(document: Mapping[str, Any]) -> str | None:
    """The segment the request names, or None when the server should draw one."""
    segment = document.get("segment")
    if segment is None or segment in SEGMENTS:
        return segment
    raise ValueError(f"unknown segment {segment!r}; known: {', '.join(SEGMENTS)}")


def _parse_features(document: Mapping[str, Any]) -> list[float] | None:
    """The request's features, or None when the server should draw its own."""
    features = document.get("features")
    if features is None:
        return None
    if not isinstance(features, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        for x in features
    ):
        raise ValueError("features must be a list of finite numbers")
    return [float(x) for x in features]


class ModelHTTPServer(ThreadingHTTPServer):
    # The default backlog of 5 refuses connections when a load burst opens
    # many at once; the kernel clamps this to somaxconn anyway.
    request_queue_size = 256
    daemon_threads = True
    allow_reuse_address = True


def build_server(host: str, port: int, service: ModelService) -> ModelHTTPServer:
    handler = type("ModelHandler", (_Handler,), {"service": service})
    return ModelHTTPServer((host, port), handler)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.modelserver", description="Serve one revision of a small real model."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--revision", required=True)
    parser.add_argument("--model-version", required=True)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--added-latency", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--latency-multiplier", type=float, default=1.0)
    parser.add_argument("--score-shift", type=float, default=0.0)
    parser.add_argument(
        "--segment-faults",
        default="{}",
        metavar="JSON",
        help='per-segment overrides of the faults above, e.g. \'{"eu": {"error_rate": 0.3}}\'',
    )
    parser.add_argument("--seed", type=int, default=None, help="default: derived from revision")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("modelserver")
    try:
        try:
            segments = json.loads(args.segment_faults)
        except ValueError as error:
            raise ValueError(f"--segment-faults is not JSON: {error}") from None
        faults = Faults().updated(
            {
                "error_rate": args.error_rate,
                "added_latency_seconds": args.added_latency,
                "latency_multiplier": args.latency_multiplier,
                "score_shift": args.score_shift,
                "segments": segments,
            }
        )
    except ValueError as error:
        print(f"invalid faults: {error}", file=sys.stderr)
        return 2
    # The *_created series only add noise to every scrape of a short-lived server.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    service = ModelService(args.revision, args.model_version, faults, seed=args.seed)
    server = build_server(args.host, args.port, service)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so never from its own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    log.info(
        "serving revision %s (version %s) on %s:%d with %s",
        args.revision,
        args.model_version,
        args.host,
        server.server_port,
        asdict(faults),
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    log.info("stopped")
    return 0
