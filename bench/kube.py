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
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml


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
