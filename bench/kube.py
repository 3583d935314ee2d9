"""What every scale bench shares: the API client, a process's CPU and memory, polling.

The client is plain JSON over HTTPS as the cluster's admin, with no caching
and no client library in between, so that what the bench itself asks is
cheap and never mistaken for a controller's requests (the audit log tells
them apart by user, see ``bench.audit``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

T = TypeVar("T")


class Client:
    """JSON over one kept-alive HTTPS connection per thread, as the cluster's admin."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.host, port = cluster["server"].removeprefix("https://").split(":")
        self.port = int(port)
        self.tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.tls.load_cert_chain(user["client-certificate"], user["client-key"])
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection: http.client.HTTPSConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.tls, timeout=60
            )
            self._local.connection = connection
        return connection

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "Content-Type": content_type}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
                continue
            return response.status, json.loads(payload or b"null")
        raise AssertionError("unreachable")

    def must(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        code, answer = self.request(method, path, body, content_type or "application/json")
        if code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {code}: {answer}")
        return answer


class Census(Generic[T]):
    """Every object of one collection, kept current by a LIST and then a WATCH: the
    bench's own informer, so that waiting for N objects to turn Healthy costs the
    API server one event per change, as a controller's watch does.

    The bench used to LIST the whole collection every second instead. At
    N=10,000 that kept kube-apiserver at a full core serialising it and the
    bench at most of the other parsing it (on a two-core machine), and slowed
    whichever controller was being measured; at N=1,000 it cost a tenth of that
    in every ramp. ``summary`` keeps what the bench reads of each object (its
    phase, say), not the object.
    """

    def __init__(
        self,
        client: Client,
        path: str,
        summary: Callable[[dict[str, Any]], T],
        *,
        watch_seconds: int = 300,
    ) -> None:
        self.client, self.path, self.summary = client, path, summary
        self.watch_seconds = watch_seconds
        self.relists = 0
        self.watches = 0
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()
        self._listed = threading.Event()
        self._stop = threading.Event()
        self._connection: http.client.HTTPSConnection | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"census {path}", daemon=True)

    def __enter__(self) -> Census[T]:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> Census[T]:
        """Returns once the first LIST is in."""
        self._thread.start()
        if not self._listed.wait(timeout=60):
            raise TimeoutError(f"no first LIST of {self.path} in 60 s: {self._error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):  # unblocks the read of the watch
                connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)

    def values(self) -> list[T]:
        """The summaries now; raises what stopped the watch, if it stopped."""
        if self._error is not None:
            raise RuntimeError(f"the census of {self.path} failed: {self._error!r}")
        with self._lock:
            return list(self._items.values())

    def _run(self) -> None:
        try:
            version = self._list()
            while not self._stop.is_set():
                version = self._watch(version) or self._list()
        except BaseException as error:
            if not self._stop.is_set():
                self._error = error

    def _list(self) -> str:
        items: dict[str, T] = {}
        token = ""
        while True:
            page = self.client.must("GET", f"{self.path}?limit=500{token}")
            for item in page["items"]:
                items[_key(item)] = self.summary(item)
            metadata = page["metadata"]
            if not metadata.get("continue"):
                break
            token = f"&continue={metadata['continue']}"
        with self._lock:
            self._items = items
        self.relists += 1
        self._listed.set()
        return str(metadata["resourceVersion"])

    def _watch(self, version: str) -> str | None:
        """Follow events from ``version``; the version to go on from, or None when the
        API server has forgotten it (410 Gone: list again)."""
        query = (
            f"?watch=1&allowWatchBookmarks=true&resourceVersion={version}"
            f"&timeoutSeconds={self.watch_seconds}"
        )
        connection = http.client.HTTPSConnection(
            self.client.host,
            self.client.port,
            context=self.client.tls,
            timeout=self.watch_seconds + 30,
        )
        self._connection = connection
        self.watches += 1
        try:
            connection.request("GET", self.path + query, headers={"Accept": "application/json"})
            response = connection.getresponse()
            if response.status == 410:
                return None
            if response.status >= 300:
                raise RuntimeError(f"watch {self.path}: HTTP {response.status}")
            for line in response:
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise RuntimeError(f"watch {self.path}: {obj}")
                version = str(obj["metadata"]["resourceVersion"])
                if kind == "BOOKMARK":
                    continue
                with self._lock:
                    if kind == "DELETED":
                        self._items.pop(_key(obj), None)
                    else:
                        self._items[_key(obj)] = self.summary(obj)
        except OSError:
            # Stopped, or the stream broke: list again (a fresh start if not stopped).
            return version if self._stop.is_set() else None
        finally:
            connection.close()
        return version


def _key(item: dict[str, Any]) -> str:
    metadata = item["metadata"]
    return f"{metadata.get('namespace', '')}/{metadata['name']}"


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak resident set) from /proc, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # fields[0] is the state, field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float, what: str) -> float:
    """Poll ``check``; returns the monotonic time at which it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def spread(count: int, total: int) -> list[int]:
    """``count`` distinct indices in ``range(total)``, evenly spread and each shifted by
    its rank within the stride, so that they also fall in every residue class.

    Objects ``i`` live in namespace ``i % namespaces``: a plain stride of 20
    over 1,000 objects in 10 namespaces would pick all 50 in the first one.
    """
    if count > total:
        raise ValueError(f"cannot pick {count} of {total}")
    if count == 0:
        return []
    stride = max(1, total // count)
    picked = [(k * stride + k % stride) % total for k in range(count)]
    taken = set(picked)
    if len(taken) < count:  # wrapped onto a taken index: fill from the free ones
        free = (i for i in range(total) if i not in taken)
        picked = sorted(taken) + [next(free) for _ in range(count - len(taken))]
    return picked


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-scale-") as scratch:
        yield Path(scratch)
