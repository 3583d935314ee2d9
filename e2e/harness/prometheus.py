"""A real Prometheus server (Debian's package) scraping loopback targets every second.

Targets come and go during a test run (a model server per revision, a tiny
exporter per test), so they are declared through file-based service discovery:
adding one is an atomic file write that Prometheus picks up by itself, with no
reload and no restart. Each target carries labels such as ``namespace`` and
``revision``, which is how the operator's queries tell revisions apart.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.harness.processes import ManagedProcess, free_port

SCRAPE_INTERVAL = "1s"
_JOB = "modelcanary-test"


@dataclass(frozen=True)
class ScrapeTarget:
    name: str
    address: str  # host:port
    labels: dict[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"


def find_prometheus() -> Path:
    override = os.environ.get("MODELCANARY_PROMETHEUS")
    found = override or shutil.which("prometheus")
    if not found:
        raise FileNotFoundError(
            "prometheus is not installed: `make test` installs Debian's package, "
            "or run `apt-get install prometheus`"
        )
    return Path(found)


class PrometheusServer:
    def __init__(
        self, workdir: Path, *, binary: Path | None = None, detached: bool = False
    ) -> None:
        self.workdir = workdir
        self.binary = binary or find_prometheus()
        self.detached = detached
        self.port = 0
        self.targets_dir = workdir / "targets"
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60, *, port: int | None = None) -> PrometheusServer:
        """Start (or start again, on the same ``port`` and data, after :meth:`stop`)."""
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        self.port = port or free_port()
        self.process = ManagedProcess(
            "prometheus",
            [
                str(self.binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            self.workdir / "logs" / "prometheus.log",
            die_with_parent=not self.detached,
        ).start()
        try:
            self.process.wait_ready(self._ready, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": "900ms",
                "evaluation_interval": SCRAPE_INTERVAL,
            },
            "scrape_configs": [
                {
                    "job_name": _JOB,
                    "file_sd_configs": [
                        {"files": [str(self.targets_dir / "*.json")], "refresh_interval": "1s"}
                    ],
                }
            ],
        }

    def _ready(self) -> bool:
        with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    # -- targets -------------------------------------------------------------------

    def add_target(self, target: ScrapeTarget) -> None:
        labels = dict(target.labels)
        if target.metrics_path != "/metrics":
            # A discovered target may set its own path through this reserved label.
            labels["__metrics_path__"] = target.metrics_path
        document = [{"targets": [target.address], "labels": labels}]
        # Written whole and renamed into place, so discovery never reads half a file.
        scratch = self.targets_dir / f".{target.name}.json.tmp"
        scratch.write_text(json.dumps(document))
        scratch.replace(self.targets_dir / f"{target.name}.json")

    def remove_target(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    def active_targets(self) -> list[dict[str, Any]]:
        data = self.api("/api/v1/targets", {"state": "active"})
        targets: list[dict[str, Any]] = data["activeTargets"]
        return targets

    def wait_until_scraped(self, address: str, timeout: float = 30) -> None:
        """Wait until ``address`` is discovered and its last scrape succeeded."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            for target in self.active_targets():
                if target["labels"].get("instance") == address:
                    last = target
                    if target["health"] == "up":
                        return
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus did not scrape {address} within {timeout:.0f}s: {last}")

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as response:  # noqa: S310
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus API {path} failed: {body}")
        return body["data"]
